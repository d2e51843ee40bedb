"""Which vector index to build for a corpus of a given size, chosen by measurement.

The thresholds below come from ``python -m bench ann`` on real m3e-small embeddings of
the 17,010 real results, scaled up to 100k / 500k / 1M vectors (``bench/ann.py`` says
how), with the 371 real needs as held-out queries; the figures are in
``bench/RESULTS.md``. The rule: exact search while it costs less than encoding the
need; above that the index with the best measured queries/s at recall@10 ~0.98 (HNSW
beat IVF-Flat at every size; IVF-PQ without re-ranking stayed below recall 0.58 and
is only used when the raw vectors no longer fit in memory).

All indexes use inner product on L2-normalised vectors, which equals cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]

FLAT_MAX_VECTORS = 50_000
"""Up to here exact search (IndexFlatIP) is used: recall 1.0 and no build. Its cost is
linear in n: single-query p50 64 ms at 17k and 368 ms at 100k under load ~10 (ratio 5.8
for 5.9x the vectors), ~47 ms at 500k on an idle core (issue 7), so ~5 ms at 50k and
~9 ms at 100k idle, where HNSW answers in <2 ms at recall@10 0.990 (efSearch 256, 100k).
The API's latency budget (p50 <= 30 ms at 100k, most of it encoding the need) leaves
no room for 9 ms of search, so exact search stops at 50k; below that its cost is a few
milliseconds and an HNSW build (minutes) is not worth it."""

HNSW_M = 32
"""HNSW links per node. Measured on the 17,010 real vectors: at efSearch 128, M=32
reaches recall@10 0.991 against 0.987 for M=16, for +6% memory (37.6 vs 35.6 MiB) and
+12% build time."""

HNSW_EF_CONSTRUCTION = 200
"""At 500k, efConstruction 200 lifts recall@10 at efSearch 512 from 0.963 (efConstruction
80) to 0.987, and builds in 260 s on a quiet machine (RESULTS.md, ``_500k_efc200``)."""

HNSW_EF_SEARCH_BY_SIZE: tuple[tuple[int, int], ...] = (
    (200_000, 256),
    (1_000_000, 768),
)
"""(max vectors, efSearch), from the sweeps in RESULTS.md: at 100k efSearch 256 gives
recall@10 0.990 (128 gives 0.966); at 500k with efConstruction 200, efSearch 512 gives
0.987 at 24.9x and 768 gives 0.991 at 15.5x the exact-search queries per second, so 768
keeps a margin towards 1M. Sizes between are covered by the next measured size up;
1M itself was not measured. Above 1M efSearch doubles per 10x of vectors
(extrapolated, not measured)."""

HNSW_MAX_BYTES = 16 * 2**30
"""Above this raw fp32 footprint (vectors x dim x 4 bytes) HNSW no longer fits a modest
server next to the model; IVF-PQ compresses each vector to ``dim / 8`` bytes instead."""

IVF_PQ_NPROBE = 64


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS index structure and its parameters.

    ``params`` keys: ``M``, ``ef_construction``, ``ef_search`` (hnsw); ``nlist``,
    ``nprobe`` (ivf, ivfpq); ``pq_m`` (ivfpq: sub-quantisers of 8 bits each).
    """

    kind: IndexKind = "flat"
    params: dict[str, int] = field(default_factory=dict)


def choose_index_spec(n_vectors: int, dim: int) -> IndexSpec:
    """The default index for ``n_vectors`` vectors of dimension ``dim``.

    Args:
        n_vectors: Number of vectors in the corpus.
        dim: Their dimension.

    Returns:
        ``flat`` up to :data:`FLAT_MAX_VECTORS`; ``hnsw`` (M=32) with an efSearch that
        grows with the corpus up to :data:`HNSW_MAX_BYTES` of raw vectors; ``ivfpq``
        beyond that.

    Raises:
        ValueError: If ``n_vectors`` is negative or ``dim`` is not positive.
    """
    if n_vectors < 0:
        raise ValueError(f"n_vectors must be >= 0, got {n_vectors}")
    if dim <= 0:
        raise ValueError(f"dim must be > 0, got {dim}")
    if n_vectors <= FLAT_MAX_VECTORS:
        return IndexSpec("flat")
    if n_vectors * dim * 4 <= HNSW_MAX_BYTES:
        return IndexSpec(
            "hnsw",
            {
                "M": HNSW_M,
                "ef_construction": HNSW_EF_CONSTRUCTION,
                "ef_search": _ef_search(n_vectors),
            },
        )
    return IndexSpec(
        "ivfpq",
        {"nlist": _ivf_nlist(n_vectors), "nprobe": IVF_PQ_NPROBE, "pq_m": _pq_m(dim)},
    )


def _ef_search(n_vectors: int) -> int:
    for max_vectors, ef in HNSW_EF_SEARCH_BY_SIZE:
        if n_vectors <= max_vectors:
            return ef
    last_max, last_ef = HNSW_EF_SEARCH_BY_SIZE[-1]
    # Unmeasured territory: double efSearch per 10x more vectors.
    return int(last_ef * 2 ** math.ceil(math.log10(n_vectors / last_max)))


def _ivf_nlist(n_vectors: int) -> int:
    # ~4 * sqrt(n) lists, a power of two: the usual balance of coarse and fine search.
    return int(2 ** round(math.log2(4 * math.sqrt(n_vectors))))


def _pq_m(dim: int) -> int:
    # 8 dimensions per sub-quantiser (dim / 8 bytes per vector); must divide dim.
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m
