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
    """Load research results from ``path`` (``.jsonl``/``.json`` lines, ``.csv`` or ``.parquet``).

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
    result: LoadResult[R] = LoadResult()
    for item in iter_records(path, model):
        if isinstance(item, Reject):
            if on_error == "raise":
                raise RecordError(item)
            result.rejects.append(item)
        else:
            result.records.append(item)
    return result


def iter_records(path: str | Path, model: type[R]) -> Iterator[R | Reject]:
    """Every row of ``path`` as a record or a :class:`Reject`, in file order, streamed.

    Memory holds only the ids seen so far (for the duplicate-id rule), so batch jobs read
    files of any size through the same validation as :func:`load_records`.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    seen: dict[str, int] = {}
    for line_no, raw, row_or_error in _rows(path):
        if isinstance(row_or_error, Reject):
            yield row_or_error
            continue
        try:
            record = model.model_validate(_normalise(row_or_error, model))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"]) or "<row>"
            yield Reject(str(path), line_no, loc, first["msg"], raw)
            continue
        record_id = getattr(record, "id")
        if record_id in seen:
            yield Reject(str(path), line_no, "id",
                         f"duplicate id '{record_id}' (first seen on line {seen[record_id]})", raw)
            continue
        seen[record_id] = line_no
        yield record


def write_rejects(rejects: list[Reject], path: str | Path, append: bool = False) -> None:
    """Write rejected rows as JSONL: location, reason and the raw row, so none is lost."""
    with Path(path).open("a" if append else "w", encoding="utf-8") as handle:
        for reject in rejects:
            handle.write(json.dumps(reject.__dict__, ensure_ascii=False) + "\n")


def _rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | Reject]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        yield from _jsonl_rows(path)


def _parquet_rows(path: Path, batch_rows: int = 4096) -> Iterator[tuple[int, str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    row_no = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            row_no += 1
            raw = json.dumps(row, ensure_ascii=False, default=str)
            # As for CSV: an empty cell means "not given", not an empty value.
            yield row_no, raw, {k: v for k, v in row.items() if v is not None and v != ""}


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
