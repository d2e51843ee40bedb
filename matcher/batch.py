"""The offline batch job: match a whole file of needs (or results) in chunks, resumably.

Ranking is the Matcher's: each chunk goes through ``Matcher.match_batch`` (or
``match_needs_batch`` in the reverse direction); this module only streams, checkpoints and
counts.

Checkpoint protocol, per chunk, in this order:

1. the chunk's match rows are appended to the output and fsync'ed (``writer.commit()``),
2. its rejected rows are appended to the rejects file and fsync'ed,
3. the progress file ``<out>.progress.json`` is replaced atomically (write, fsync, rename)
   with the new committed offsets and the number of raw input rows done.

A crash between 1 and 3 leaves rows past the committed offsets; ``--resume`` truncates the
output and the rejects file back to the offsets of the last progress file and restarts at the
first input row not done. So each need is written exactly once, whenever the job is killed.
"""

from __future__ import annotations

from indexes.persistence import sha256_file

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from matcher.batch_io import (
    Direction,
    InputChunk,
    RejectWriter,
    columns,
    file_format,
    open_writer,
    output_exists,
    read_chunks,
    write_run_file,
)
from matcher.matcher import Matcher
from matcher.records import EnterpriseNeed, ResearchResult

PROGRESS_VERSION = 1
DEFAULT_CHUNK_SIZE = 256
NO_TIER = "none"


class BatchError(RuntimeError):
    """The job cannot start or resume as asked; the message says what to do instead."""


# ----- matching one chunk (shared by every executor) -----------------------------------------


def match_chunk(
    matcher: Matcher, records: Sequence[Any], top_k: int, direction: Direction, config: str = "default"
) -> list[dict[str, Any]]:
    """Output rows for one chunk of query records, in input order then rank.

    This is the only place the batch job calls the Matcher, so every executor (local, Ray)
    writes identical rows for the same chunk.
    """
    if not records:
        return []
    rows: list[dict[str, Any]] = []
    if direction == "needs-to-results":
        for need, matches in zip(records, matcher.match_batch(records, top_k=top_k, config=config)):
            rows.extend(
                {"need_id": need.id, "result_id": m.result_id, "rank": m.rank, "score": m.score,
                 "tier": m.tier, "reasons": list(m.reasons)}
                for m in matches
            )
    else:
        for result, needs in zip(records, matcher.match_needs_batch(records, top_k=top_k)):
            rows.extend(
                {"result_id": result.id, "need_id": n.need_id, "rank": n.rank, "score": n.score,
                 "tier": None, "reasons": []}
                for n in needs
            )
    return rows


@dataclass
class ChunkOutput:
    """What an executor returns for one input chunk."""

    chunk: InputChunk[Any]
    rows: list[dict[str, Any]]


class Executor(Protocol):
    """Maps input chunks to output rows, yielding results in input order."""

    def map(self, chunks: Iterator[InputChunk[Any]]) -> Iterator[ChunkOutput]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Matches chunks one after another in this process (the Matcher batches inside a chunk)."""

    def __init__(self, matcher: Matcher, top_k: int, direction: Direction, config: str = "default") -> None:
        self.matcher = matcher
        self.top_k = top_k
        self.direction = direction
        self.config = config

    def map(self, chunks: Iterator[InputChunk[Any]]) -> Iterator[ChunkOutput]:
        for chunk in chunks:
            yield ChunkOutput(chunk, match_chunk(self.matcher, chunk.records, self.top_k,
                                                 self.direction, self.config))

    def close(self) -> None:
        return None


# ----- job identity and progress -------------------------------------------------------------


@dataclass
class Progress:
    """The checkpoint: what is committed, and the counts of the summary."""

    job: dict[str, Any]
    rows_done: int = 0
    chunks_done: int = 0
    out_offset: int = 0
    rejects_offset: int = 0
    needs_done: int = 0
    matches_written: int = 0
    rejected: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    finished: bool = False
    version: int = PROGRESS_VERSION


def progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def default_rejects_path(out: Path) -> Path:
    return out.with_name(out.name + ".rejects.jsonl")


def save_progress(path: Path, progress: Progress) -> None:
    """Replace the progress file atomically: a crash leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(asdict(progress), handle, ensure_ascii=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_progress(path: Path) -> Progress:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != PROGRESS_VERSION:
        raise BatchError(f"{path} has progress version {data.get('version')}, expected {PROGRESS_VERSION}")
    return Progress(**data)


def job_identity(
    input_path: Path, index_dir: Path, top_k: int, direction: Direction, config: str
) -> dict[str, Any]:
    """What must not change between a crash and ``--resume``: input, index and settings."""
    # The snapshot's manifest changes whenever the index is rebuilt or checkpointed.
    manifest = index_dir / "snapshot" / "manifest.json"
    if not manifest.is_file():
        manifest = index_dir / "manifest.json"
    return {
        "input": str(input_path.resolve()),
        "input_sha256": sha256_file(input_path),
        "index_dir": str(index_dir.resolve()),
        "index_manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
        "top_k": top_k,
        "direction": direction,
        "config": config,
    }


# ----- the job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchJob:
    """One batch run's parameters."""

    index_dir: Path
    input_path: Path
    out: Path
    top_k: int = 10
    direction: Direction = "needs-to-results"
    run_file: Path | None = None
    resume: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    config: str = "default"
    rejects: Path | None = None


@dataclass
class Summary:
    """The end-of-job report."""

    needs_done: int
    matches_written: int
    rejected: int
    tiers: dict[str, int]
    seconds: float
    throughput: float
    out: str
    rejects: str | None
    run_file: str | None
    resumed_from_row: int
    already_finished: bool = False

    def lines(self, noun: str = "needs") -> list[str]:
        tiers = ", ".join(f"{k} {v}" for k, v in sorted(self.tiers.items())) or "-"
        out = [
            f"{noun} done: {self.needs_done}",
            f"matches written: {self.matches_written} -> {self.out}",
            f"tier distribution: {tiers}",
            f"rejected rows: {self.rejected}" + (f" -> {self.rejects}" if self.rejects else ""),
            f"time: {self.seconds:.1f}s, throughput: {self.throughput:.1f} {noun}/s",
        ]
        if self.run_file:
            out.append(f"run file: {self.run_file}")
        if self.resumed_from_row:
            out.append(f"resumed after input row {self.resumed_from_row}")
        return out


def prepare(job: BatchJob) -> Progress:
    """Validate the paths and return the progress to start from.

    Raises:
        BatchError: the output exists and ``resume`` is off; the progress file belongs to
            another job; or resuming is asked but the output has no progress file.
        FileNotFoundError: the input or the index directory is missing.
        ValueError: an unsupported file extension or a bad ``top_k`` / ``chunk_size``.
    """
    file_format(job.input_path)
    file_format(job.out)
    if job.run_file is not None and job.run_file.suffix.lower() != ".json":
        raise ValueError(f"--run-file {job.run_file} must end in .json (a BEIR run is one JSON object)")
    if job.top_k < 1:
        raise ValueError(f"top_k of {job.top_k} must be at least 1")
    if job.chunk_size < 1:
        raise ValueError(f"chunk_size of {job.chunk_size} must be at least 1")
    if not job.input_path.is_file():
        raise FileNotFoundError(f"input file not found: {job.input_path}")
    if job.out.resolve() == job.input_path.resolve():
        raise BatchError(f"--out {job.out} is the input file; choose another path")
    identity = job_identity(job.input_path, job.index_dir, job.top_k, job.direction, job.config)
    pfile = progress_path(job.out)
    if not job.resume:
        rejects = job.rejects or default_rejects_path(job.out)
        existing = [str(p) for p in (job.out, pfile, rejects) if p.exists()]
        if output_exists(job.out) or existing:
            raise BatchError(
                f"{', '.join(existing) or job.out} already exists; refusing to overwrite it. Use "
                "--resume to finish an interrupted job, or remove the old output (with its "
                ".progress.json and .rejects.jsonl) or choose another --out"
            )
        return Progress(job=identity)
    if not pfile.exists():
        if output_exists(job.out):
            raise BatchError(
                f"--resume: {job.out} exists but has no progress file {pfile.name}, so it is not "
                "an interrupted batch output; remove it or choose another --out"
            )
        return Progress(job=identity)
    progress = load_progress(pfile)
    changed = [k for k, v in identity.items() if progress.job.get(k) != v]
    if changed:
        raise BatchError(
            f"--resume: {job.out} was written by another job ({', '.join(changed)} differ); "
            "rerun with the original input, index and options, or remove the output and its "
            f"{pfile.name} to start afresh"
        )
    return progress


ProgressHook = Callable[[int, int, int], None]  # rows done in this call, needs, matches


def run_batch(
    job: BatchJob,
    executor: Executor,
    *,
    on_chunk: ProgressHook | None = None,
    crash_after_chunks: int | None = None,
) -> Summary:
    """Run (or resume) ``job`` with ``executor``; returns the summary.

    Args:
        job: the paths and options.
        executor: matches chunks (see :class:`LocalExecutor`).
        on_chunk: called after each committed chunk with (raw rows, records, match rows).
        crash_after_chunks: testing aid; after committing this many chunks in this call,
            append the next chunk's rows without committing them and raise
            :class:`SimulatedCrash`, as a kill between write and checkpoint would leave it.

    Raises:
        BatchError, FileNotFoundError, ValueError: see :func:`prepare`.
    """
    progress = prepare(job)
    pfile = progress_path(job.out)
    rejects_path = job.rejects or default_rejects_path(job.out)
    if progress.finished:
        if job.run_file is not None and not job.run_file.exists():
            write_run_file(job.out, job.run_file, job.direction)
        return _summary(job, progress, rejects_path, 0.0, progress.rows_done, already_finished=True)
    resumed_from = progress.rows_done
    # The progress file exists before the first output byte: an output without one is foreign.
    save_progress(pfile, progress)
    model = EnterpriseNeed if job.direction == "needs-to-results" else ResearchResult
    writer = open_writer(job.out, progress.out_offset, job.direction)
    rejects: RejectWriter | None = None
    if progress.rejects_offset or rejects_path.exists():
        rejects = RejectWriter(rejects_path, progress.rejects_offset)
    started = time.perf_counter()
    base_elapsed = progress.elapsed_seconds
    tiers = Counter(progress.tiers)
    chunks = read_chunks(job.input_path, model, job.chunk_size, progress.rows_done, progress.chunks_done)
    written_this_call = 0
    try:
        for output in executor.map(chunks):
            writer.write(output.rows)
            if crash_after_chunks is not None and written_this_call == crash_after_chunks:
                raise SimulatedCrash(f"simulated crash after {written_this_call} committed chunks")
            progress.out_offset = writer.commit()
            if output.chunk.rejects:
                if rejects is None:
                    rejects = RejectWriter(rejects_path, 0)
                rejects.write(output.chunk.rejects)
                progress.rejects_offset = rejects.commit()
            tiers.update((r["tier"] or NO_TIER) for r in output.rows)
            progress.rows_done = output.chunk.end_row
            progress.chunks_done = output.chunk.index + 1
            progress.needs_done += len(output.chunk.records)
            progress.matches_written += len(output.rows)
            progress.rejected += len(output.chunk.rejects)
            progress.tiers = dict(tiers)
            progress.elapsed_seconds = base_elapsed + time.perf_counter() - started
            save_progress(pfile, progress)
            written_this_call += 1
            if on_chunk is not None:
                on_chunk(output.chunk.end_row - output.chunk.start_row, len(output.chunk.records),
                         len(output.rows))
        writer.finish()
    finally:
        writer.close()
        if rejects is not None:
            rejects.close()
        executor.close()
    if job.run_file is not None:
        write_run_file(job.out, job.run_file, job.direction)
    progress.elapsed_seconds = base_elapsed + time.perf_counter() - started
    progress.finished = True
    save_progress(pfile, progress)
    return _summary(job, progress, rejects_path, time.perf_counter() - started, resumed_from)


class SimulatedCrash(RuntimeError):
    """Raised by ``crash_after_chunks`` to test resuming; never raised in normal runs."""


def _summary(
    job: BatchJob, progress: Progress, rejects_path: Path, seconds: float, resumed_from: int,
    already_finished: bool = False,
) -> Summary:
    total = progress.elapsed_seconds
    return Summary(
        needs_done=progress.needs_done,
        matches_written=progress.matches_written,
        rejected=progress.rejected,
        tiers=dict(progress.tiers),
        seconds=total,
        throughput=progress.needs_done / total if total > 0 else 0.0,
        out=str(job.out),
        rejects=str(rejects_path) if progress.rejected else None,
        run_file=str(job.run_file) if job.run_file else None,
        resumed_from_row=resumed_from,
        already_finished=already_finished,
    )


__all__ = [
    "BatchError", "BatchJob", "ChunkOutput", "Executor", "LocalExecutor", "Progress", "SimulatedCrash",
    "Summary", "columns", "match_chunk", "prepare", "run_batch",
]
