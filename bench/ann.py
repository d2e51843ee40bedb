"""ANN benchmark: Flat vs HNSW vs IVF-Flat vs IVF-PQ on real m3e embeddings scaled up.

Base vectors: the 17,010 real results embedded by ``python -m bench embed`` (CSL
title+abstract and CCF joined title words, int8 m3e-small, L2-normalised). Queries: the
371 real needs of ``needs_ccf.jsonl``, never part of the base (held out).

Scale-up (:func:`scale_up`): every real vector is kept; each synthetic vector is

    v = normalise(a * x_i + (1 - a) * x_j + tau * (x_r - x_s))

with ``i`` uniform over the real vectors, ``j`` uniform among the 10 nearest real
neighbours of ``i`` (so the mix stays on the local manifold of real topics instead of
averaging unrelated documents), ``a ~ U(0, 1)``, ``r, s`` two further real vectors
drawn uniformly, and ``tau`` = 0.3. The perturbation is a difference of two real
embeddings rather than isotropic Gaussian noise because m3e embeddings are strongly
anisotropic (mean pairwise cosine 0.63): isotropic noise would push synthetic vectors
off the real span, away from every query, and make the search artificially easy.
tau = 0.3 was chosen so that the mean pairwise cosine of synthetic vectors (0.635)
matches the real one (0.630) and the median best cosine of a real need to 2,000
synthetic vectors (0.784) is close to its best cosine to the 17,010 real ones
(0.802). Seeded, so every run draws the same vectors.

All searches use inner product on normalised vectors, which equals cosine similarity.
Recall@10 is measured against exact search, tolerating ties: a returned id counts as
correct when its exact score is >= the exact 10th-best score (minus 1e-5), as in faiss
``contrib/evaluation.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench import machine, write_json
from bench.data import BenchDataMissing
from bench.encoder import EMBEDDINGS_PATH, QUERY_EMBEDDINGS_PATH

K = 10
TIE_EPS = 1e-5
NEIGHBOURS = 10
TAU = 0.3


def load_real() -> tuple[np.ndarray, np.ndarray]:
    """The real result embeddings and the held-out need embeddings.

    Raises:
        BenchDataMissing: If ``python -m bench embed`` has not been run.
    """
    if not EMBEDDINGS_PATH.is_file() or not QUERY_EMBEDDINGS_PATH.is_file():
        raise BenchDataMissing(
            f"{EMBEDDINGS_PATH} / {QUERY_EMBEDDINGS_PATH} missing: run `python -m bench embed` first"
        )
    base = np.load(EMBEDDINGS_PATH, allow_pickle=False).astype(np.float32)
    queries = np.load(QUERY_EMBEDDINGS_PATH, allow_pickle=False).astype(np.float32)
    return base, queries


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32)."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_neighbours(real: np.ndarray, k: int = NEIGHBOURS, chunk: int = 2048) -> np.ndarray:
    """Indices of the ``k`` nearest other real vectors of each real vector (by cosine)."""
    out = np.empty((len(real), k), dtype=np.int64)
    for start in range(0, len(real), chunk):
        sims = real[start : start + chunk] @ real.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        out[start : start + chunk] = top
    return out


def scale_up(real: np.ndarray, n: int, *, seed: int = 0, tau: float = TAU) -> np.ndarray:
    """``n`` vectors: all real vectors, then synthetic ones drawn as the module docstring says.

    Args:
        real: L2-normalised real vectors, shape (m, d).
        n: Total number of vectors wanted (``n <= m`` returns the first ``n`` real ones).
        seed: Seed of the generator (same seed, same vectors).
        tau: Weight of the real-difference perturbation.

    Returns:
        float32 array (n, d), rows L2-normalised.
    """
    m, d = real.shape
    if n <= m:
        return real[:n].copy()
    rng = np.random.default_rng(seed)
    neighbours = real_neighbours(real)
    out = np.empty((n, d), dtype=np.float32)
    out[:m] = real
    chunk = 100_000
    for start in range(m, n, chunk):
        size = min(chunk, n - start)
        i = rng.integers(0, m, size)
        j = neighbours[i, rng.integers(0, NEIGHBOURS, size)]
        a = rng.random(size, dtype=np.float32)[:, None]
        r = rng.integers(0, m, size)
        s = rng.integers(0, m, size)
        out[start : start + size] = normalise(
            a * real[i] + (1 - a) * real[j] + tau * (real[r] - real[s])
        )
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner-product scores and ids by numpy (the reference)."""
    scores = queries @ base.T
    ids = np.argpartition(-scores, k, axis=1)[:, :k]
    top = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(ids, order, axis=1)


def recall_at_k(
    found_ids: np.ndarray, base: np.ndarray, queries: np.ndarray, kth_scores: np.ndarray, k: int = K
) -> float:
    """Tie-tolerant recall@k: share of the top-k slots filled by ids scoring >= the exact k-th.

    Args:
        found_ids: (nq, >=k) ids returned by the index (-1 = nothing).
        base: The indexed vectors (to recompute exact scores of what was returned).
        queries: The query vectors.
        kth_scores: Exact k-th best score of each query.
        k: Cut-off.
    """
    hits = 0
    for q, ids in enumerate(found_ids[:, :k]):
        ids = np.unique(ids[ids >= 0])
        true = base[ids] @ queries[q]
        hits += min(k, int((true >= kth_scores[q] - TIE_EPS).sum()))
    return hits / (k * len(found_ids))


@dataclass
class Row:
    """One measured configuration."""

    n: int
    kind: str
    build: str
    search: str
    build_s: float
    bytes: int
    recall_at_10: float
    latency_ms_p50: float
    latency_ms_p95: float
    batch_qps: float
    extra: dict[str, Any] = field(default_factory=dict)


def _serialised_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def _measure_search(
    index: Any,
    base: np.ndarray,
    queries: np.ndarray,
    kth: np.ndarray,
    single_queries: int,
) -> tuple[float, float, float, float]:
    """recall@10 (batched result), p50/p95 single-query latency (ms), batched queries/s."""
    start = time.perf_counter()
    _, ids = index.search(queries, K)
    batch_s = time.perf_counter() - start
    lat = []
    for q in queries[:single_queries]:
        t = time.perf_counter()
        index.search(q[None, :], K)
        lat.append((time.perf_counter() - t) * 1000)
    return (
        recall_at_k(ids, base, queries, kth),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 95)),
        len(queries) / batch_s,
    )


def _emit(rows: list[Row], row: Row, name: str, payload: dict[str, Any]) -> None:
    rows.append(row)
    print(
        f"n={row.n} {row.kind} [{row.build}] [{row.search}] build={row.build_s:.1f}s "
        f"mem={row.bytes / 2**20:.1f}MiB recall@10={row.recall_at_10:.4f} "
        f"p50={row.latency_ms_p50:.2f}ms p95={row.latency_ms_p95:.2f}ms qps={row.batch_qps:.0f}",
        flush=True,
    )
    payload["rows"] = [asdict(r) for r in rows]
    write_json(name, payload)


def _ivf_nlist(n: int) -> int:
    # ~4*sqrt(n) rounded to a power of two, capped to keep k-means tractable on 2 cores.
    target = 4 * np.sqrt(n)
    return int(min(4096, max(64, 2 ** round(np.log2(target)))))


def run_ann(
    sizes: Sequence[int] | int = (17_010, 100_000),
    hnsw_m: Sequence[int] | int = (16, 32),
    ef_construction: int = 100,
    ef_search: Sequence[int] = (16, 32, 64, 128, 256),
    nprobe: Sequence[int] = (1, 4, 8, 16, 32, 64, 128),
    pq_m: int = 64,
    threads: int = 2,
    single_queries: int = 200,
    kinds: Sequence[str] | str = "flat,hnsw,ivf,ivfpq",
    ivf_nlist: int = 0,
    kmeans_iters: int = 10,
    tag: str = "",
) -> dict[str, Any]:
    """Build and sweep each index kind at each size; write ``/tmp/bench/ann<tag>.json``.

    Args:
        sizes: Corpus sizes (real vectors + scale-up).
        hnsw_m: HNSW ``M`` values (one build each).
        ef_construction: HNSW ``efConstruction``.
        ef_search: HNSW ``efSearch`` sweep.
        nprobe: IVF ``nprobe`` sweep.
        pq_m: Sub-quantisers of IVF-PQ (8 bits each: ``pq_m`` bytes per vector).
        threads: faiss OpenMP threads.
        single_queries: Queries timed one at a time for the latency figures.
        kinds: Comma-separated subset of flat, hnsw, ivf, ivfpq.
        ivf_nlist: IVF lists (0: ~4 sqrt(n), a power of two, at most 4096).
        kmeans_iters: k-means iterations of the IVF coarse quantiser (faiss default 25;
            10 keeps training tractable on 2 shared cores).
        tag: Suffix of the output file, so separate runs do not overwrite each other.
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    hnsw_m = [hnsw_m] if isinstance(hnsw_m, int) else list(hnsw_m)
    kind_set = set(kinds.split(",")) if isinstance(kinds, str) else set(kinds)
    real, queries = load_real()
    d = real.shape[1]
    name = f"ann{tag}"
    payload: dict[str, Any] = {
        "benchmark": "ann",
        "machine": machine(),
        "threads": threads,
        "queries": len(queries),
        "real_vectors": len(real),
        "scale_up": {"neighbours": NEIGHBOURS, "tau": TAU, "seed": 0},
        "sizes": {},
    }
    rows: list[Row] = []
    for n in sizes:
        start = time.perf_counter()
        base = scale_up(real, n)
        gen_s = time.perf_counter() - start
        start = time.perf_counter()
        exact_scores, _ = exact_topk(base, queries)
        kth = exact_scores[:, K - 1]
        stats = {
            "generate_s": round(gen_s, 1),
            "numpy_exact_s": round(time.perf_counter() - start, 2),
            "mean_top1_cosine": round(float(exact_scores[:, 0].mean()), 4),
            "mean_top10_cosine": round(float(kth.mean()), 4),
        }
        if n > len(real):
            # How close the synthetic vectors sit to the real ones, against real-to-real.
            sample = base[len(real) :][:2000]
            nn_syn = (sample @ real.T).max(axis=1)
            real_sample = real[:2000]
            sims = real_sample @ real.T
            sims[np.arange(2000), np.arange(2000)] = -np.inf
            stats["synthetic_to_nearest_real_cosine_median"] = round(float(np.median(nn_syn)), 4)
            stats["real_to_nearest_other_real_cosine_median"] = round(
                float(np.median(sims.max(axis=1))), 4
            )
            stats["synthetic_mean_pairwise_cosine"] = round(
                float((sample[:1000] @ sample[1000:].T).mean()), 4
            )
            stats["real_mean_pairwise_cosine"] = round(
                float((real[:1000] @ real[1000:2000].T).mean()), 4
            )
        payload["sizes"][str(n)] = stats
        print(f"n={n}: {stats}", flush=True)

        builders: list[tuple[str, str, Callable[[], Any], str, Sequence[Any]]] = []
        if "flat" in kind_set:
            builders.append(("flat", "IndexFlatIP", lambda: faiss.IndexFlatIP(d), "none", [None]))
        if "hnsw" in kind_set:
            for m in hnsw_m:

                def make_hnsw(m: int = m) -> Any:
                    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
                    index.hnsw.efConstruction = ef_construction
                    return index

                builders.append(
                    (
                        "hnsw",
                        f"HNSWFlat M={m} efConstruction={ef_construction}",
                        make_hnsw,
                        "efSearch",
                        ef_search,
                    )
                )
        nlist = ivf_nlist or _ivf_nlist(n)
        if "ivf" in kind_set:
            builders.append(
                (
                    "ivf",
                    f"IVF{nlist},Flat",
                    lambda nlist=nlist: faiss.index_factory(
                        d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT
                    ),
                    "nprobe",
                    nprobe,
                )
            )
        if "ivfpq" in kind_set:
            builders.append(
                (
                    "ivfpq",
                    f"IVF{nlist},PQ{pq_m}",
                    lambda nlist=nlist: faiss.index_factory(
                        d, f"IVF{nlist},PQ{pq_m}", faiss.METRIC_INNER_PRODUCT
                    ),
                    "nprobe",
                    nprobe,
                )
            )
        for kind, build_desc, make, param, values in builders:
            index = make()
            start = time.perf_counter()
            if not index.is_trained:
                faiss.extract_index_ivf(index).cp.niter = kmeans_iters
                # 40 points per centroid (faiss warns below 39) bounds k-means time.
                sample_n = min(n, 40 * nlist)
                sample = base[np.random.default_rng(1).choice(n, sample_n, replace=False)]
                index.train(sample)
            index.add(base)
            build_s = time.perf_counter() - start
            size = _serialised_bytes(index)
            for value in values:
                if param == "efSearch":
                    index.hnsw.efSearch = int(value)
                elif param == "nprobe":
                    if value > nlist:
                        continue
                    faiss.extract_index_ivf(index).nprobe = int(value)
                # Flat single-query scans are slow at large n: time fewer of them.
                singles = single_queries if kind != "flat" else min(single_queries, 50)
                rec, p50, p95, qps = _measure_search(index, base, queries, kth, singles)
                _emit(
                    rows,
                    Row(
                        n,
                        kind,
                        build_desc,
                        "" if value is None else f"{param}={value}",
                        round(build_s, 2),
                        size,
                        round(rec, 4),
                        round(p50, 3),
                        round(p95, 3),
                        round(qps, 1),
                    ),
                    name,
                    payload,
                )
            del index
        del base
    return payload
