"""Local multi-process executor of the batch job: chunks matched by worker processes.

Matching is CPU-bound Python (need analysis, signals, ranking) and holds the GIL, so one
process uses one core whatever the thread count. Each worker process loads the Matcher from
the index directory once and runs the same :func:`matcher.batch.match_chunk` as every other
executor, so the rows are identical; the parent keeps a bounded window of chunks in flight
and yields them in input order, so checkpoints stay contiguous.

Workers are spawned, not forked: the parent's torch and OpenMP thread pools do not survive a
fork, and a SQLite connection must not cross one. The index files are memory-mapped where
the index allows it, so workers share those pages through the page cache.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from matcher.batch import BatchError, ChunkOutput
from matcher.batch_io import Direction, InputChunk
from matcher.workers import EncoderFactory, MatcherWorker, default_encoder

IN_FLIGHT_PER_WORKER = 2  # one chunk running, one queued: workers never wait on the parent
_worker: MatcherWorker | None = None
_worker_args: tuple[Any, ...] = ()


def _start(index_dir: str, top_k: int, direction: Direction, config: str,
           encoder_factory: EncoderFactory, threads: int) -> None:
    """Initialise a worker process: its share of the cores, and what to load on first use."""
    global _worker_args
    import faiss

    _die_with_parent()
    # Workers split the cores between them instead of each taking all of them. torch is not
    # imported here (130 MB per worker): a batch over embedded needs never loads the model.
    faiss.omp_set_num_threads(threads)
    _worker_args = (index_dir, top_k, direction, config, encoder_factory)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when its parent dies.

    A killed batch job (``kill -9``, then ``--resume``) must not leave its workers behind
    holding gigabytes: they wait on the task queue forever otherwise (seen in the 500k run).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _match(records: list[Any]) -> list[dict[str, Any]]:
    global _worker
    # Loaded on the first chunk, not in the initialiser: an error (a mismatched encoder, a
    # missing index) then reaches the parent as this call's exception, with its message.
    if _worker is None:
        _worker = MatcherWorker(*_worker_args)
    return _worker.match(records)


class ProcessExecutor:
    """Spreads chunks over ``workers`` local processes; yields outputs in input order.

    Args:
        index_dir: the index directory.
        top_k, direction, config: as for :class:`matcher.batch.LocalExecutor`.
        workers: number of processes (at least 1).
        encoder_factory: builds each worker's encoder (default: from the settings); pickled
            to the workers, so it must be importable there.
    """

    def __init__(
        self,
        index_dir: str | Path,
        top_k: int,
        direction: Direction,
        config: str = "default",
        *,
        workers: int,
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers of {workers} must be at least 1")
        self.workers = workers
        threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_start,
            initargs=(str(Path(index_dir).resolve()), top_k, direction, config,
                      encoder_factory or default_encoder, threads),
        )

    def map(self, chunks: Iterator[InputChunk[Any]]) -> Iterator[ChunkOutput]:
        pending: deque[tuple[InputChunk[Any], Future[list[dict[str, Any]]]]] = deque()
        window = IN_FLIGHT_PER_WORKER * self.workers
        for chunk in chunks:
            pending.append((chunk, self._pool.submit(_match, list(chunk.records))))
            if len(pending) >= window:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    @staticmethod
    def _collect(chunk: InputChunk[Any], future: Future[list[dict[str, Any]]]) -> ChunkOutput:
        try:
            return ChunkOutput(chunk, future.result())
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise BatchError(f"a batch worker failed on input rows {chunk.start_row}–{chunk.end_row}: "
                             f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
