"""``techmatch batch``: match a whole file of needs (or results) offline, resumably.

Mounted by ``matcher/cli.py`` as ``app.command("batch")(batch)``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from indexes.persistence import IndexMismatchError
from matcher.batch import (
    DEFAULT_CHUNK_SIZE,
    BatchError,
    BatchJob,
    Executor,
    LocalExecutor,
    Summary,
    run_batch,
)
from matcher.batch_io import estimate_rows
from matcher.matcher import Matcher
from matcher.runtime import make_encoder
from matcher.scoring import CONFIGS
from matcher.settings import Settings
from models.lazy import EncoderChangedError
from models.sentence_transformer import ModelNotFoundError

DIRECTIONS = ("needs-to-results", "results-to-needs")
EXECUTORS = ("local", "ray")
LOG_EVERY_SECONDS = 10.0


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


class _Reporter:
    """A tqdm bar on a terminal; elsewhere (logs, CI) a line with rate and ETA every few seconds."""

    def __init__(self, total: int, noun: str, already_done: int = 0) -> None:
        self.total = total
        self.noun = noun
        self.done = self.base = already_done  # rate and ETA count only this run's rows
        self.started = time.perf_counter()
        self.last_line = self.started
        self.bar = tqdm(total=total, initial=already_done, unit=noun, desc="matching",
                        dynamic_ncols=True, disable=not sys.stderr.isatty())

    def __call__(self, rows: int, records: int, matches: int) -> None:
        self.done += rows
        self.bar.update(rows)
        now = time.perf_counter()
        if self.bar.disable and now - self.last_line >= LOG_EVERY_SECONDS:
            rate = (self.done - self.base) / max(now - self.started, 1e-9)
            eta = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
            typer.echo(f"matching: {self.done}/{self.total} {self.noun} ({rate:.1f}/s, "
                       f"ETA {eta:.0f}s)", err=True)
            self.last_line = now

    def close(self) -> None:
        self.bar.close()


def _local_executor(index_dir: Path, top_k: int, direction: str, config: str, workers: int | None) -> Executor:
    if workers is not None and workers > 1:
        from matcher.process_executor import ProcessExecutor

        typer.echo(f"matching in {workers} worker processes, each loading {index_dir}", err=True)
        return ProcessExecutor(index_dir, top_k, direction, config, workers=workers)  # type: ignore[arg-type]
    settings = Settings()
    started = time.perf_counter()
    try:
        encoder = make_encoder(settings, lazy=True)  # needs already embedded: no model load
        matcher = Matcher.load(index_dir, encoder)
    except (IndexMismatchError, FileNotFoundError, ModelNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"index {index_dir} loaded in {time.perf_counter() - started:.1f}s "
               f"({len(matcher.results)} results, {len(matcher.needs)} needs)", err=True)
    return LocalExecutor(matcher, top_k, direction, config)  # type: ignore[arg-type]


def _ray_executor(index_dir: Path, top_k: int, direction: str, config: str, workers: int | None) -> Executor:
    try:
        from matcher.ray_executor import RayExecutor
    except ImportError as exc:
        _fail(f"--executor ray needs Ray: pip install 'techmatch[distributed]' ({exc})")
    return RayExecutor(index_dir, top_k, direction, config,  # type: ignore[arg-type]
                       workers=workers)


def batch(
    index_dir: Annotated[Path, typer.Option(help="index directory built by `techmatch index build`")],
    needs: Annotated[Path, typer.Option(
        help="input records (.jsonl, .csv or .parquet): needs, or results with "
             "--direction results-to-needs")],
    out: Annotated[Path, typer.Option(help="matches, one row each (.jsonl, .csv or .parquet)")],
    top_k: Annotated[int, typer.Option(min=1, max=1000, help="matches per input record")] = 10,
    direction: Annotated[str, typer.Option(help="needs-to-results or results-to-needs")] = "needs-to-results",
    run_file: Annotated[Path | None, typer.Option(
        help="also write a BEIR run {query_id: {doc_id: score}} for `techmatch eval --run`")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="finish an interrupted job at --out")] = False,
    executor: Annotated[str, typer.Option(help="local, or ray (RAY_ADDRESS or a local Ray)")] = "local",
    workers: Annotated[int | None, typer.Option(
        min=1, max=1024, help="matching processes: local default 1 (in this process); ray default "
                              "one actor per cluster CPU")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, max=100_000,
                                            help="input rows per chunk (and per checkpoint)")] = DEFAULT_CHUNK_SIZE,
    config: Annotated[str, typer.Option(help="scoring configuration")] = "default",
    rejects: Annotated[Path | None, typer.Option(
        help="where to write rejected input rows (default: OUT.rejects.jsonl)")] = None,
) -> None:
    """Match every record of a file in chunks, with checkpoints; resumable after a crash."""
    if direction not in DIRECTIONS:
        _fail(f"--direction must be one of {', '.join(DIRECTIONS)}, got '{direction}'")
    if executor not in EXECUTORS:
        _fail(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    if config not in CONFIGS:
        _fail(f"--config must be one of {', '.join(CONFIGS)}, got '{config}'")
    job = BatchJob(index_dir=index_dir, input_path=needs, out=out, top_k=top_k,
                   direction=direction, run_file=run_file, resume=resume,  # type: ignore[arg-type]
                   chunk_size=chunk_size, config=config, rejects=rejects)
    noun = "needs" if direction == "needs-to-results" else "results"
    try:
        from matcher.batch import prepare

        prepared = prepare(job)  # fail fast, before loading an index that may take a while
    except (BatchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if prepared.finished:
        reporter: Any = None
        chosen: Executor = _NoWork()
    else:
        make = _ray_executor if executor == "ray" else _local_executor
        chosen = make(index_dir, top_k, direction, config, workers)
        total = estimate_rows(needs)
        if prepared.rows_done:
            typer.echo(f"resuming {out}: {prepared.rows_done} input rows already done", err=True)
        reporter = _Reporter(total, noun, prepared.rows_done)
    try:
        summary = run_batch(job, chosen, on_chunk=reporter)
    except (BatchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except (ModelNotFoundError, EncoderChangedError) as exc:  # a lazily loaded model
        _fail(f"{exc} (the chunks finished so far are kept: fix it and run again with --resume)")
    finally:
        if reporter is not None:
            reporter.close()
    _print_summary(summary, noun)


class _NoWork:
    def map(self, chunks: Any) -> Any:
        return iter(())

    def close(self) -> None:
        return None


def _print_summary(summary: Summary, noun: str) -> None:
    if summary.already_finished:
        typer.echo(f"{summary.out} is already complete; nothing to resume")
    for line in summary.lines(noun):
        typer.echo(line)
