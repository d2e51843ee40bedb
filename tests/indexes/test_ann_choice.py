"""Tests of the measured index choice."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexes.ann_choice import (
    FLAT_MAX_VECTORS,
    HNSW_EF_SEARCH_BY_SIZE,
    HNSW_MAX_BYTES,
    IndexSpec,
    choose_index_spec,
)


@pytest.mark.parametrize("n", [0, 1, 17_010, FLAT_MAX_VECTORS])
def test_small_corpora_use_exact_search(n: int) -> None:
    assert choose_index_spec(n, 512) == IndexSpec("flat")


def test_just_above_the_flat_threshold_uses_hnsw() -> None:
    spec = choose_index_spec(FLAT_MAX_VECTORS + 1, 512)
    assert spec.kind == "hnsw"
    assert set(spec.params) == {"M", "ef_construction", "ef_search"}


@pytest.mark.parametrize(
    ("n", "expected_ef"), [(max_n, ef) for max_n, ef in HNSW_EF_SEARCH_BY_SIZE]
)
def test_ef_search_is_the_measured_value_at_each_size(n: int, expected_ef: int) -> None:
    assert choose_index_spec(n, 512).params["ef_search"] == expected_ef


def test_ef_search_never_shrinks_as_the_corpus_grows() -> None:
    sizes = [FLAT_MAX_VECTORS + 1, 150_000, 250_000, 500_000, 1_000_000, 2_000_000, 7_000_000]
    efs = [choose_index_spec(n, 512).params["ef_search"] for n in sizes]
    assert efs == sorted(efs)
    assert efs[-1] > HNSW_EF_SEARCH_BY_SIZE[-1][1]  # extrapolated beyond the measurements


def test_huge_corpora_switch_to_compressed_ivfpq() -> None:
    n = HNSW_MAX_BYTES // (512 * 4) + 1
    spec = choose_index_spec(n, 512)
    assert spec.kind == "ivfpq"
    assert spec.params["pq_m"] == 64  # 8 bytes per 8 dimensions
    assert 512 % spec.params["pq_m"] == 0
    assert spec.params["nprobe"] <= spec.params["nlist"]
    # nlist ~ 4 sqrt(n), a power of two
    assert spec.params["nlist"] & (spec.params["nlist"] - 1) == 0
    assert 2 * np.sqrt(n) <= spec.params["nlist"] <= 8 * np.sqrt(n)


def test_pq_m_divides_an_odd_dimension() -> None:
    spec = choose_index_spec(HNSW_MAX_BYTES // (100 * 4) + 1, 100)
    assert spec.kind == "ivfpq"
    assert 100 % spec.params["pq_m"] == 0


@pytest.mark.parametrize(
    ("n", "dim", "message"),
    [(-1, 512, "n_vectors must be >= 0, got -1"), (10, 0, "dim must be > 0, got 0")],
)
def test_rejects_bad_input(n: int, dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_index_spec(n, dim)


def _recall_at_10(found: np.ndarray, base: np.ndarray, queries: np.ndarray) -> float:
    """Tie-tolerant recall against exact numpy search."""
    exact = queries @ base.T
    kth = -np.sort(-exact, axis=1)[:, 9]
    hits = 0
    for q, ids in enumerate(found):
        ids = np.unique(ids[ids >= 0])
        hits += min(10, int((exact[q, ids] >= kth[q] - 1e-5).sum()))
    return hits / (10 * len(queries))


@pytest.mark.slow
def test_chosen_hnsw_parameters_reach_high_recall_on_clustered_vectors() -> None:
    # Clustered unit vectors (like topic-clustered embeddings) just above the flat
    # threshold: the chosen HNSW must agree with exact search.
    rng = np.random.default_rng(0)
    dim, n = 32, FLAT_MAX_VECTORS + 1
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    base = centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(n, 100, replace=False)] + 0.1 * rng.standard_normal(
        (100, dim)
    ).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    spec = choose_index_spec(n, dim)
    assert spec.kind == "hnsw"
    index = faiss.IndexHNSWFlat(dim, spec.params["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec.params["ef_construction"]
    index.add(base)
    index.hnsw.efSearch = spec.params["ef_search"]
    _, found = index.search(queries, 10)
    assert _recall_at_10(found, base, queries) >= 0.98
