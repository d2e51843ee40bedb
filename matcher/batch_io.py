"""Chunked input and output of the batch job: JSONL, CSV and Parquet, chosen by file extension.

Input is read as a stream of *raw rows* (a JSONL line, a CSV record, a Parquet row), each of
which becomes a record or a :class:`~matcher.loaders.Reject`; the job cuts that stream into
chunks of raw rows, so chunk boundaries depend only on the file, and a resumed job can skip
exactly the rows it finished. Validation is the loaders' own (``loaders.iter_records``);
nothing here decides what a valid record is.

Output writers append committed chunks and report a *committed offset* (bytes for JSONL and
CSV, part files for Parquet); after a crash the job truncates the output back to the last
committed offset before appending again, so no match row is duplicated or lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from matcher import loaders
from matcher.loaders import Reject

R = TypeVar("R", bound=BaseModel)
Direction = Literal["needs-to-results", "results-to-needs"]
FORMATS: dict[str, str] = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
REASONS_SEPARATOR = " | "  # reasons in one CSV cell; a reason never contains it


def file_format(path: str | Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the file extension.

    Raises:
        ValueError: naming the extension and the ones allowed.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported file extension '{suffix}' of {path}; use one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def columns(direction: Direction) -> tuple[str, ...]:
    """Output columns: the query record's id first."""
    if direction == "needs-to-results":
        return ("need_id", "result_id", "rank", "score", "tier", "reasons")
    return ("result_id", "need_id", "rank", "score", "tier", "reasons")


# ----- input ---------------------------------------------------------------------------------


@dataclass
class InputChunk(Generic[R]):
    """Consecutive raw rows ``[start_row, end_row)`` of the input: their records and rejects."""

    index: int
    start_row: int
    end_row: int
    records: list[R] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def read_chunks(
    path: str | Path, model: type[R], chunk_size: int, skip_rows: int = 0, first_index: int = 0
) -> Iterator[InputChunk[R]]:
    """Cut the raw rows of ``path`` into chunks of ``chunk_size`` rows, after ``skip_rows``.

    Skipped rows are still validated (so a later duplicate of a skipped id is still rejected)
    but not returned. Memory holds one chunk plus the ids seen.

    Raises:
        ValueError: for a ``chunk_size`` below 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size of {chunk_size} must be at least 1")
    chunk: InputChunk[R] = InputChunk(first_index, skip_rows, skip_rows)
    for row_no, item in enumerate(loaders.iter_records(path, model)):
        if row_no < skip_rows:
            continue
        if isinstance(item, Reject):
            chunk.rejects.append(item)
        else:
            chunk.records.append(item)
        chunk.end_row = row_no + 1
        if chunk.end_row - chunk.start_row == chunk_size:
            yield chunk
            chunk = InputChunk(chunk.index + 1, chunk.end_row, chunk.end_row)
    if chunk.end_row > chunk.start_row:
        yield chunk


def estimate_rows(path: str | Path) -> int:
    """Raw rows in ``path``: exact for Parquet and JSONL, an upper bound for CSV (multi-line cells)."""
    path = Path(path)
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(0, lines - 1) if file_format(path) == "csv" else lines


# ----- output --------------------------------------------------------------------------------


class MatchWriter(Protocol):
    """Appends rows; ``commit`` makes them durable and returns the committed offset."""

    def write(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def commit(self) -> int: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def _truncate(path: Path, offset: int) -> None:
    if path.exists():
        with path.open("r+b") as handle:
            handle.truncate(offset)
    elif offset:
        raise FileNotFoundError(f"{path} should hold {offset} committed bytes but is missing")


class _ByteWriter:
    """Appends encoded lines to a file that is first truncated to its committed offset."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        _truncate(path, offset)
        self._handle = path.open("ab")
        self._handle.seek(offset)

    def _append(self, data: bytes) -> None:
        self._handle.write(data)

    def commit(self) -> int:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return self._handle.tell()

    def finish(self) -> None:
        self.commit()

    def close(self) -> None:
        self._handle.close()


class JsonlWriter(_ByteWriter):
    """One JSON object per match row."""

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._append("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


class CsvWriter(_ByteWriter):
    """A header, then one CSV record per match row; reasons joined by :data:`REASONS_SEPARATOR`."""

    def __init__(self, path: Path, offset: int, names: Sequence[str]) -> None:
        super().__init__(path, offset)
        self._names = tuple(names)
        if offset == 0:
            self._append(self._encode([dict(zip(self._names, self._names))]))

    def _encode(self, rows: Sequence[dict[str, Any]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_cell(row[name]) for name in self._names])
        return buffer.getvalue().encode("utf-8")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._append(self._encode(rows))


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return REASONS_SEPARATOR.join(value)
    return "" if value is None else value


def parquet_schema(direction: Direction) -> Any:
    """The Arrow schema of the output rows."""
    import pyarrow as pa

    first, second = columns(direction)[:2]
    return pa.schema([
        (first, pa.string()), (second, pa.string()), ("rank", pa.int32()), ("score", pa.float64()),
        ("tier", pa.string()), ("reasons", pa.list_(pa.string())),
    ])


class ParquetWriter:
    """Each committed chunk is one part file beside the output; ``finish`` merges them.

    A Parquet file ends with its footer and cannot be appended to, so the committed offset
    is the number of part files; parts past it (a crash between write and commit) are removed.
    """

    def __init__(self, path: Path, committed_parts: int, direction: Direction) -> None:
        self.path = path
        self.parts_dir = path.with_name(path.name + ".parts")
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._schema = parquet_schema(direction)
        self._count = committed_parts
        for part in self.parts_dir.glob("part-*.parquet"):
            if int(part.stem.split("-")[1]) >= committed_parts:
                part.unlink()
        for stale in self.parts_dir.glob("*.tmp"):
            stale.unlink()
        self._pending: list[dict[str, Any]] = []

    def _part(self, number: int) -> Path:
        return self.parts_dir / f"part-{number:06d}.parquet"

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._pending.extend(rows)

    def commit(self) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._pending, schema=self._schema)
        target = self._part(self._count)
        tmp = target.with_name(target.name + ".tmp")
        pq.write_table(table, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        self._pending = []
        self._count += 1
        return self._count

    def finish(self) -> None:
        """Merge the parts, one at a time, into the output file (atomically) and drop them."""
        import pyarrow.parquet as pq

        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, self._schema) as writer:
            for number in range(self._count):
                writer.write_table(pq.read_table(self._part(number), schema=self._schema))
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts_dir)

    def close(self) -> None:
        self._pending = []


def open_writer(path: Path, offset: int, direction: Direction) -> MatchWriter:
    """The writer for ``path``'s format, resuming at the committed ``offset``."""
    kind = file_format(path)
    if kind == "jsonl":
        return JsonlWriter(path, offset)
    if kind == "csv":
        return CsvWriter(path, offset, columns(direction))
    return ParquetWriter(path, offset, direction)


def output_exists(path: Path) -> bool:
    """Whether any trace of an output is at ``path`` (the file or its Parquet parts)."""
    return path.exists() or path.with_name(path.name + ".parts").exists()


class RejectWriter(_ByteWriter):
    """Rejected input rows as JSONL (the loaders' rejects format), truncated to its offset."""

    def write(self, rejects: Sequence[Reject]) -> None:
        self._append("".join(json.dumps(r.__dict__, ensure_ascii=False) + "\n"
                             for r in rejects).encode("utf-8"))


# ----- reading the output back, and the run file ---------------------------------------------


def read_output_rows(path: Path, batch_rows: int = 8192) -> Iterator[dict[str, Any]]:
    """The match rows of a finished output file, streamed (scores as floats, ranks as ints)."""
    kind = file_format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()
        return
    with path.open(encoding="utf-8", newline="") as handle:
        if kind == "jsonl":
            for line in handle:
                if line.strip():
                    yield json.loads(line)
            return
        for row in csv.DictReader(handle):
            yield {**row, "rank": int(row["rank"]), "score": float(row["score"]),
                   "tier": row["tier"] or None,
                   "reasons": row["reasons"].split(REASONS_SEPARATOR) if row["reasons"] else []}


def write_run_file(output: Path, run_path: Path, direction: Direction) -> int:
    """Write the BEIR run ``{query_id: {doc_id: score}}`` that ``techmatch eval --run`` reads.

    Streams the finished output (rows of one query are contiguous), so memory holds one
    query's matches. Written to a temporary file and renamed into place.

    Returns:
        The number of queries in the run.
    """
    query_key, doc_key = columns(direction)[:2]
    tmp = run_path.with_name(run_path.name + ".tmp")
    queries = 0
    current: str | None = None
    scores: dict[str, float] = {}

    def flush(handle: io.TextIOWrapper) -> None:
        nonlocal queries
        prefix = "{\n" if queries == 0 else ",\n"
        handle.write(f"{prefix}{json.dumps(current, ensure_ascii=False)}: "
                     f"{json.dumps(scores, ensure_ascii=False)}")
        queries += 1

    with tmp.open("w", encoding="utf-8") as handle:
        for row in read_output_rows(output):
            if row[query_key] != current:
                if current is not None:
                    flush(handle)
                current, scores = row[query_key], {}
            # A doc listed twice for one query keeps its best score, as eval's rankings_to_run does.
            scores[row[doc_key]] = max(float(row["score"]), scores.get(row[doc_key], float("-inf")))
        if current is not None:
            flush(handle)
        handle.write("\n}\n" if queries else "{}\n")
    os.replace(tmp, run_path)
    return queries
