"""Load records from JSONL, CSV or the BEIR layout, naming file, line and field of every bad row.

A row is rejected, never silently dropped: either loading stops at the first bad row
(``on_error="raise"``) or every bad row is collected with its reason (``on_error="report"``)
so that the caller can write a rejects file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from matcher.records import EnterpriseNeed, ResearchResult

OnError = Literal["raise", "report"]
R = TypeVar("R", bound=BaseModel)

# BEIR's metadata keys that map onto first-class record fields.
_BEIR_METADATA_FIELDS: dict[str, str] = {
    "keywords": "keywords",
    "discipline": "field",
    "field": "field",
    "industry": "industry",
    "region": "region",
    "owner": "owner",
    "company": "company",
    "maturity": "maturity",
    "transfer_modes": "transfer_modes",
    "budget": "budget",
}


@dataclass(frozen=True)
class Reject:
    """A row that could not become a record."""

    file: str
    line: int
    field: str
    message: str
    raw: str

    def describe(self) -> str:
        return f"{self.file}, line {self.line}, field '{self.field}': {self.message}"


class RecordError(ValueError):
    """A bad input row; the message names file, line and field."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(reject.describe())
        self.reject = reject


@dataclass
class LoadResult(Generic[R]):
    records: list[R] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def load_results(path: str | Path, on_error: OnError = "raise") -> LoadResult[ResearchResult]:
    """Load research results from ``path`` (``.jsonl``/``.json`` lines or ``.csv``).

    Raises:
        RecordError: on the first bad row when ``on_error="raise"``.
        FileNotFoundError: when ``path`` does not exist.
    """
    return load_records(path, ResearchResult, on_error)


def load_needs(path: str | Path, on_error: OnError = "raise") -> LoadResult[EnterpriseNeed]:
    """Load enterprise needs from ``path``; see :func:`load_results`."""
    return load_records(path, EnterpriseNeed, on_error)


def load_records(path: str | Path, model: type[R], on_error: OnError = "raise") -> LoadResult[R]:
    """Parse every row of ``path`` into ``model``, rejecting bad rows with their location."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    result: LoadResult[R] = LoadResult()
    seen: dict[str, int] = {}
    for line_no, raw, row_or_error in _rows(path):
        reject: Reject | None = None
        if isinstance(row_or_error, Reject):
            reject = row_or_error
        else:
            try:
                record = model.model_validate(_normalise(row_or_error, model))
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(part) for part in first["loc"]) or "<row>"
                reject = Reject(str(path), line_no, loc, first["msg"], raw)
            else:
                record_id = getattr(record, "id")
                if record_id in seen:
                    reject = Reject(
                        str(path), line_no, "id",
                        f"duplicate id '{record_id}' (first seen on line {seen[record_id]})", raw,
                    )
                else:
                    seen[record_id] = line_no
                    result.records.append(record)
        if reject is not None:
            if on_error == "raise":
                raise RecordError(reject)
            result.rejects.append(reject)
    return result


def write_rejects(rejects: list[Reject], path: str | Path, append: bool = False) -> None:
    """Write rejected rows as JSONL: location, reason and the raw row, so none is lost."""
    with Path(path).open("a" if append else "w", encoding="utf-8") as handle:
        for reject in rejects:
            handle.write(json.dumps(reject.__dict__, ensure_ascii=False) + "\n")


def _rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | Reject]]:
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(path)
    else:
        yield from _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | Reject]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, line, Reject(str(path), line_no, "<json>", f"invalid JSON: {exc.msg}", line)
                continue
            if not isinstance(row, dict):
                yield line_no, line, Reject(
                    str(path), line_no, "<json>", "expected a JSON object per line", line
                )
                continue
            yield line_no, line, row


def _csv_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | Reject]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            # line_num is the physical line where the row ends, which is what an editor shows.
            line_no = reader.line_num
            raw = json.dumps(row, ensure_ascii=False)
            if None in row:
                yield line_no, raw, Reject(str(path), line_no, "<csv>", "more cells than header columns", raw)
                continue
            yield line_no, raw, {k: v for k, v in row.items() if v not in (None, "")}


def _normalise(row: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Map BEIR (``_id``, ``text``, ``metadata``) and CSV spellings onto record fields."""
    row = dict(row)
    if "_id" in row and "id" not in row:
        row["id"] = row.pop("_id")
    if "text" in row and "description" not in row:
        row["description"] = row.pop("text")
    if isinstance(row.get("id"), int):
        row["id"] = str(row["id"])
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            metadata = {"raw": metadata}
        row["metadata"] = metadata
    if isinstance(metadata, dict):
        metadata = dict(metadata)
        for key, target in _BEIR_METADATA_FIELDS.items():
            if key in metadata and target in model.model_fields and target not in row:
                row[target] = metadata.pop(key)
        row["metadata"] = metadata
    return row
