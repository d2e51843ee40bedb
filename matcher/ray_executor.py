"""Ray executor of the batch job: chunks of needs matched on Ray workers (``techmatch[distributed]``).

Each worker is a Ray actor that loads the Matcher once from the index directory (which must be
readable at the same path on every node: a shared filesystem or a copy) and runs the same
:func:`matcher.batch.match_chunk` as the local executor, so the rows are identical. The driver
keeps a bounded window of chunks in flight and yields results in input order, so checkpoints
stay contiguous and memory stays bounded.

Cluster: ``RAY_ADDRESS`` (e.g. ``ray://head:10001`` or ``auto``) when set, else a local Ray
instance. Workers need techmatch installed (``pip install 'techmatch[distributed]'``) and see
the driver's ``TECHMATCH_*`` settings, passed as environment variables.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from matcher.batch import ChunkOutput
from matcher.batch_io import Direction, InputChunk
from matcher.matcher import ENCODE_CHUNK, encode_chunked
from matcher.workers import EncoderFactory, MatcherWorker, default_encoder
IN_FLIGHT_PER_WORKER = 2  # one chunk running, one queued: workers never wait on the driver
_FORWARDED_ENV_PREFIXES = ("TECHMATCH_", "HF_", "TRANSFORMERS_")


def forwarded_env() -> dict[str, str]:
    """Settings the workers must share with the driver (model, quantisation, cache, offline)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV_PREFIXES)}


class RayExecutor:
    """Spreads chunks over ``workers`` Ray actors; yields :class:`ChunkOutput` in input order.

    Args:
        index_dir: the index, at a path every worker can read.
        top_k, direction, config: as for the local executor.
        workers: number of actors (default: the cluster's CPUs, one CPU each).
        address: Ray address (default ``RAY_ADDRESS``, else a new local instance).
        encoder_factory: builds each worker's encoder (default: from the settings); it is
            pickled to the workers, so it must be importable there.
    """

    def __init__(
        self,
        index_dir: str | Path,
        top_k: int,
        direction: Direction,
        config: str = "default",
        *,
        workers: int | None = None,
        address: str | None = None,
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=True)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = workers or max(1, cpus)
        if count < 1:
            raise ValueError(f"workers of {count} must be at least 1")
        actor = ray.remote(num_cpus=1)(MatcherWorker)
        env = {"env_vars": forwarded_env()}
        self._actors = [
            actor.options(runtime_env=env).remote(str(Path(index_dir).resolve()), top_k, direction,
                                                  config, encoder_factory or default_encoder)
            for _ in range(count)
        ]
        # Fail here, with the worker's error, if an index or model cannot be loaded.
        ray.get([a.ready.remote() for a in self._actors])

    @property
    def workers(self) -> int:
        return len(self._actors)

    def map(self, chunks: Iterator[InputChunk[Any]]) -> Iterator[ChunkOutput]:
        pending: deque[tuple[InputChunk[Any], Any]] = deque()
        window = IN_FLIGHT_PER_WORKER * len(self._actors)
        for turn, chunk in enumerate(chunks):
            pending.append((chunk, self._actors[turn % len(self._actors)].match.remote(chunk.records)))
            if len(pending) >= window:
                done, ref = pending.popleft()
                yield ChunkOutput(done, ray.get(ref))
        while pending:
            done, ref = pending.popleft()
            yield ChunkOutput(done, ray.get(ref))

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


class EncoderWorker:
    """Holds one encoder; embeds the shards it is sent exactly as ``Matcher.build`` would."""

    def __init__(self, encoder_factory: EncoderFactory) -> None:
        self.encoder = encoder_factory()

    def encode(self, texts: Sequence[str], side: str) -> np.ndarray:
        encode = self.encoder.encode_documents if side == "documents" else self.encoder.encode_queries
        return encode_chunked(encode, texts, self.encoder.dimension)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint


def encode_sharded(
    texts: Sequence[str],
    *,
    side: str = "documents",
    shard_chunks: int = 8,
    workers: int | None = None,
    address: str | None = None,
    encoder_factory: EncoderFactory | None = None,
) -> tuple[np.ndarray, str]:
    """Embed ``texts`` in shards over Ray workers (for ``index build --executor ray``).

    Shards are whole multiples of the Matcher's encode chunk (``ENCODE_CHUNK`` texts) cut at
    the same offsets as a local build, so each forward batch holds the same texts as it would
    locally: even int8 dynamic quantisation, whose activation scale depends on the batch,
    then gives the same vectors.

    Args:
        texts: rendered texts (``render_result`` / ``render_need``).
        side: ``documents`` (results) or ``queries`` (needs).
        shard_chunks: encode chunks per shard.
        workers, address, encoder_factory: as for :class:`RayExecutor`.

    Returns:
        The vectors in input order, and the workers' encoder fingerprint.

    Raises:
        ValueError: for an unknown ``side`` or a ``shard_chunks`` below 1.
    """
    if side not in ("documents", "queries"):
        raise ValueError(f"side must be 'documents' or 'queries', got '{side}'")
    if shard_chunks < 1:
        raise ValueError(f"shard_chunks of {shard_chunks} must be at least 1")
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"))
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actor = ray.remote(num_cpus=1)(EncoderWorker)
    env = {"env_vars": forwarded_env()}
    actors = [actor.options(runtime_env=env).remote(encoder_factory or default_encoder)
              for _ in range(count)]
    try:
        fingerprint = ray.get(actors[0].fingerprint.remote())
        shard = shard_chunks * ENCODE_CHUNK
        refs = [actors[n % count].encode.remote(list(texts[start : start + shard]), side)
                for n, start in enumerate(range(0, len(texts), shard))]
        parts = ray.get(refs)
    finally:
        for a in actors:
            ray.kill(a)
    if not parts:
        return np.zeros((0, 0), np.float32), fingerprint
    return np.concatenate(parts), fingerprint
