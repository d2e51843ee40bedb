from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from indexes.ann_choice import IndexSpec
from indexes.vector import VectorIndex
from models.encoder import l2_normalise


def _random(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))


def _exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_exact_search_matches_numpy() -> None:
    vectors, queries = _random(500), _random(20, seed=1)
    index = VectorIndex(32)
    index.add([f"doc-{i}" for i in range(500)], vectors)
    hits = index.search(queries, 10)
    expected = _exact(vectors, queries, 10)
    for row, exp in zip(hits, expected):
        assert [doc for doc, _ in row] == [f"doc-{i}" for i in exp]
        assert all(a >= b for (_, a), (_, b) in itertools.pairwise(row))


def test_remove_and_replace_by_id() -> None:
    vectors = _random(50)
    index = VectorIndex(32)
    ids = [f"d{i}" for i in range(50)]
    index.add(ids, vectors)
    assert index.remove(["d0", "missing"]) == 1
    assert "d0" not in index and len(index) == 49
    assert all(doc != "d0" for doc, _ in index.search(vectors[:1], 49)[0])
    # Re-adding an id replaces its vector instead of duplicating it.
    index.add(["d1"], vectors[:1])
    top_id, top_score = index.search(vectors[:1], 1)[0][0]
    assert len(index) == 49 and top_score == pytest.approx(1.0, abs=1e-5)
    assert top_id in {"d1"}
    with pytest.raises(KeyError, match="d0"):
        index.vectors_for(["d0"])


def test_many_removals_compact_and_keep_answers_right() -> None:
    vectors = _random(100)
    index = VectorIndex(32, IndexSpec("hnsw", {"M": 16, "ef_construction": 64, "ef_search": 64}))
    index.add([str(i) for i in range(100)], vectors)
    index.remove([str(i) for i in range(60)])
    assert len(index) == 40
    hits = index.search(vectors[60:61], 5)[0]
    assert hits[0][0] == "60"
    assert all(int(doc) >= 60 for doc, _ in hits)


def test_switches_to_approximate_above_exact_max() -> None:
    index = VectorIndex(32, exact_max=100)
    index.add([str(i) for i in range(80)], _random(80))
    assert index.spec.kind == "flat"
    index.add([str(i) for i in range(80, 200)], _random(120, seed=3))
    assert index.spec.kind != "flat"
    assert len(index.search(_random(1, seed=4), 10)[0]) == 10


@pytest.mark.parametrize("spec", [IndexSpec("flat"), IndexSpec("hnsw", {"M": 16}), IndexSpec("ivf", {"nlist": 8, "nprobe": 8})])
def test_save_load_round_trip(tmp_path: Path, spec: IndexSpec) -> None:
    vectors, queries = _random(300), _random(5, seed=9)
    index = VectorIndex(32, spec)
    index.add([f"x{i}" for i in range(300)], vectors)
    index.remove(["x3"])
    info = index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, info, exact_max=10**6)
    assert loaded.spec == index.spec and len(loaded) == 299
    assert loaded.search(queries, 10) == index.search(queries, 10)
    np.testing.assert_array_equal(loaded.vectors_for(["x7"]), vectors[7:8])


def test_rejects_wrong_shapes() -> None:
    index = VectorIndex(8)
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
        index.add(["a", "b"], np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="unique"):
        index.add(["a", "a"], np.zeros((2, 8), np.float32))
    assert index.search(np.zeros((1, 8), np.float32), 3) == [[]]


HNSW = IndexSpec("hnsw", {"M": 16, "ef_construction": 64, "ef_search": 64})
IVF = IndexSpec("ivf", {"nlist": 8, "nprobe": 8})


@pytest.mark.parametrize("spec", [HNSW, IVF])
def test_approximate_index_holds_vectors_once(tmp_path: Path, spec: IndexSpec) -> None:
    vectors = _random(400)
    ids = [f"v{i}" for i in range(400)]
    index = VectorIndex(32, spec)
    index.add(ids, vectors)
    index.add(["v3"], vectors[:1])  # replaced: the new vector, from FAISS
    assert index._buffer is None  # no numpy copy beside the FAISS storage
    expected = vectors.copy()
    expected[3] = vectors[0]
    np.testing.assert_allclose(index.vectors_for(ids), expected, atol=1e-6)
    assert index.vectors_for([]).shape == (0, 32)
    info = index.save(tmp_path)
    assert not (tmp_path / "vectors.npy").exists()
    loaded = VectorIndex.load(tmp_path, info, exact_max=None)
    assert loaded._buffer is None
    np.testing.assert_allclose(loaded.vectors_for(ids[::-1]), expected[::-1], atol=1e-6)
    assert loaded.search(vectors[:5], 5) == index.search(vectors[:5], 5)
    # Writes after a load keep reconstructing right, through compaction too.
    loaded.add(["w"], vectors[7:8])
    loaded.remove(ids[:150])
    assert len(loaded) == 251 and len(loaded._ids) == 251  # compacted: tombstones dropped
    np.testing.assert_allclose(loaded.vectors_for(["w", "v399", "v150"]), vectors[[7, 399, 150]], atol=1e-6)
    assert loaded.search(vectors[399:400], 1)[0][0][0] == "v399"


def test_loads_an_old_directory_without_reading_its_vectors_npy(tmp_path: Path) -> None:
    vectors = _random(300)
    index = VectorIndex(32, HNSW)
    index.add([str(i) for i in range(300)], vectors)
    info = index.save(tmp_path)
    # Earlier versions also wrote vectors.npy beside vectors.faiss; it must not be read
    # (garbage here would fail np.load).
    (tmp_path / "vectors.npy").write_bytes(b"not an array")
    loaded = VectorIndex.load(tmp_path, info, exact_max=None)
    np.testing.assert_allclose(loaded.vectors_for(["5", "17"]), vectors[[5, 17]], atol=1e-6)


@pytest.mark.parametrize("spec", [IndexSpec("flat"), IndexSpec("ivfpq", {"nlist": 4, "nprobe": 4, "pq_m": 4})])
def test_flat_and_ivfpq_keep_exact_vectors(tmp_path: Path, spec: IndexSpec) -> None:
    # IVF-PQ codes are lossy, so it keeps the numpy buffer: vectors_for stays exact.
    vectors = _random(300)
    index = VectorIndex(32, spec)
    index.add([str(i) for i in range(300)], vectors)
    np.testing.assert_array_equal(index.vectors_for(["4", "250"]), vectors[[4, 250]])
    info = index.save(tmp_path)
    assert (tmp_path / "vectors.npy").exists()
    loaded = VectorIndex.load(tmp_path, info, exact_max=None)
    np.testing.assert_array_equal(loaded.vectors_for(["4", "250"]), vectors[[4, 250]])


def test_vectors_survive_switching_between_exact_and_approximate() -> None:
    vectors = _random(260)
    ids = [str(i) for i in range(260)]
    index = VectorIndex(32, exact_max=100)
    index.add(ids[:80], vectors[:80])
    assert index.spec.kind == "flat" and index._buffer is not None
    index.add(ids[80:], vectors[80:])  # above exact_max: rebuilt as HNSW from the buffer
    assert index.spec.kind == "hnsw" and index._buffer is None
    np.testing.assert_allclose(index.vectors_for(ids), vectors, atol=1e-6)
    index.remove(ids[:200])  # compacted from FAISS's own copies
    index.add(["extra"], vectors[:1])  # 61 live vectors: back to exact search
    assert index.spec.kind == "flat" and index._buffer is not None
    np.testing.assert_allclose(
        index.vectors_for(ids[200:] + ["extra"]), np.vstack([vectors[200:], vectors[:1]]), atol=1e-6
    )
    assert index.search(vectors[210:211], 1)[0][0][0] == "210"


def test_load_refuses_inconsistent_files(tmp_path: Path) -> None:
    index = VectorIndex(32, HNSW)
    index.add([str(i) for i in range(50)], _random(50))
    info = index.save(tmp_path)
    (tmp_path / "ids.json").write_text('["0"]', encoding="utf-8")
    with pytest.raises(ValueError, match="50 stored vectors, 1 ids"):
        VectorIndex.load(tmp_path, info, exact_max=None)


def test_a_loaded_hnsw_index_maps_its_vectors_and_still_takes_writes(tmp_path: Path) -> None:
    vectors = _random(400, dim=32, seed=7)
    spec = IndexSpec("hnsw", {"M": 16, "ef_construction": 40, "ef_search": 64})
    index = VectorIndex(32, spec)
    index.add([f"d{i}" for i in range(300)], vectors[:300])
    info = index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, info, None)
    assert np.array_equal(loaded.vectors_for(["d5", "d299"]), vectors[[5, 299]])
    # Growing a mapped FAISS view aborts the process; the index must copy it first.
    loaded.add([f"d{i}" for i in range(300, 400)], vectors[300:])
    loaded.add(["d5"], vectors[399:400])  # a replacement, after the copy
    assert len(loaded) == 400
    assert loaded.search(vectors[350:351], 1)[0][0][0] == "d350"
    assert np.array_equal(loaded.vectors_for(["d5", "d350"]), vectors[[399, 350]])
    again = tmp_path / "again"
    again.mkdir()
    reloaded = VectorIndex.load(again, loaded.save(again), None)
    assert np.array_equal(reloaded.vectors_for(["d5", "d350"]), vectors[[399, 350]])
