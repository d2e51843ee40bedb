"""Vector index over FAISS with string ids.

Vectors are L2-normalised, so inner product equals cosine similarity: every FAISS index here
uses METRIC_INNER_PRODUCT. FAISS integer positions never leave this module; callers see the
string ids of their records.

Vectors are held once. Exact search keeps them in a numpy buffer; HNSW and IVF-Flat keep exact
copies in their FAISS storage, so no buffer is kept beside them and ``vectors_for`` reconstructs
from FAISS (at 500k x 512 the buffer was a second 1 GB, issue 6). IVF-PQ stores lossy codes, so
it keeps the buffer: re-encoding reconstructed codes at each rebuild would compound the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexes.ann_choice import FLAT_MAX_VECTORS, IndexSpec, choose_index_spec
from indexes.persistence import load_json, save_json

# Removed vectors stay in FAISS as tombstones until they pass this share of the index,
# then the index is rebuilt from the live vectors (HNSW cannot delete in place).
_COMPACT_SHARE = 0.2


def default_spec(n_vectors: int, dim: int, exact_max: int | None = None) -> IndexSpec:
    """The measured default for ``n_vectors`` (``indexes.ann_choice``); ``exact_max`` forces
    exact search up to that many vectors and an approximate index above it."""
    if exact_max is None:
        return choose_index_spec(n_vectors, dim)
    if n_vectors <= exact_max:
        return IndexSpec("flat")
    return choose_index_spec(max(n_vectors, FLAT_MAX_VECTORS + 1), dim)


def build_faiss(spec: IndexSpec, vectors: np.ndarray) -> faiss.Index | None:
    """Build the approximate structure for ``vectors``; ``None`` means exact search."""
    dim = vectors.shape[1]
    if spec.kind == "flat":
        return None
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.params.get("M", 32), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.params.get("ef_construction", 80)
        index.hnsw.efSearch = spec.params.get("ef_search", 128)
    elif spec.kind in ("ivf", "ivfpq"):
        # IVF needs training data; a list per ~39 training points is FAISS's lower bound.
        nlist = min(spec.params.get("nlist", 1024), max(1, len(vectors) // 39))
        quantizer = faiss.IndexFlatIP(dim)
        if spec.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            pq_m = spec.params.get("pq_m", dim // 8)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = spec.params.get("nprobe", 32)
    else:
        raise ValueError(f"unknown index kind '{spec.kind}'; expected flat, hnsw, ivf or ivfpq")
    if spec.kind == "ivf":
        # Lets reconstruct() find a vector by position: the IVF-Flat lists are its only copy.
        index.make_direct_map()
    if len(vectors):
        index.add(vectors)
    return index


def holds_vectors(kind: str) -> bool:
    """Whether an index of ``kind`` stores the exact vectors, so that FAISS can give them back."""
    return kind in ("hnsw", "ivf")


def _same_graph(a: IndexSpec, b: IndexSpec) -> bool:
    """Whether ``a`` can be served by the structure built for ``b`` (only efSearch differs)."""
    if a.kind != b.kind or a.kind == "flat":
        return False
    strip = ("ef_search",)
    return {k: v for k, v in a.params.items() if k not in strip} == {
        k: v for k, v in b.params.items() if k not in strip
    }


class VectorIndex:
    """Nearest-neighbour search by cosine over records identified by string ids."""

    def __init__(self, dimension: int, spec: IndexSpec | None = None, exact_max: int | None = None):
        self.dimension = dimension
        self.exact_max = exact_max
        self._fixed_spec = spec
        self.spec = spec or IndexSpec("flat")
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        # Flat and IVF-PQ rows live in a buffer that grows by doubling, so adding one record to a
        # large index costs O(1) amortised instead of copying every vector. None while the
        # FAISS structure holds the vectors itself (holds_vectors).
        self._buffer: np.ndarray | None = np.zeros((0, dimension), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._ann: faiss.Index | None = None
        self._mapped = False  # the FAISS storage is a read-only view of the saved file

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._pos

    @property
    def ids(self) -> list[str]:
        return [i for i, alive in zip(self._ids, self._alive) if alive]

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add or replace the vectors of ``ids`` (an existing id is replaced, not duplicated)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dimension):
            raise ValueError(
                f"expected vectors of shape ({len(ids)}, {self.dimension}), got {vectors.shape}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("ids passed to VectorIndex.add must be unique")
        self.remove([i for i in ids if i in self._pos])
        start = len(self._ids)
        wanted = self._fixed_spec or default_spec(start + len(ids) - self._dead(), self.dimension, self.exact_max)
        rebuild = not (_same_graph(wanted, self.spec) and self._ann is not None) and (
            wanted != self.spec or self._ann is None and wanted.kind != "flat"
        )
        # Read the old rows before the bookkeeping below grows _ids past the stored rows.
        previous = self._all_vectors() if rebuild else None
        self._ids.extend(ids)
        self._pos.update({record_id: start + n for n, record_id in enumerate(ids)})
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        if previous is not None:
            self.spec = wanted
            self._rebuild(np.concatenate([previous, vectors]))
            return
        if self._buffer is not None:
            self._grow(start + len(ids))
            self._buffer[start : start + len(ids)] = vectors
        if self._ann is not None:
            if self._mapped:
                # A mapped view cannot grow (FAISS aborts the process): take an owned copy on
                # the first write, once.
                self._ann = faiss.deserialize_index(faiss.serialize_index(self._ann))
                self._mapped = False
            self._ann.add(vectors)
            if wanted.kind == "hnsw":
                # A larger collection only needs a wider search, not a new graph.
                self._ann.hnsw.efSearch = wanted.params.get("ef_search", 128)
            self.spec = wanted

    def _dead(self) -> int:
        return len(self._ids) - len(self._pos)

    def _all_vectors(self) -> np.ndarray:
        """Every stored row, tombstones included, in position order."""
        if self._buffer is not None:
            return self._buffer[: len(self._ids)]
        assert self._ann is not None  # no buffer means FAISS holds the vectors
        return self._ann.reconstruct_n(0, self._ann.ntotal)

    def _grow(self, rows: int) -> None:
        assert self._buffer is not None
        if rows > len(self._buffer):
            bigger = np.zeros((max(rows, 2 * len(self._buffer)), self.dimension), np.float32)
            bigger[: len(self._buffer)] = self._buffer
            self._buffer = bigger

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ``ids``; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for record_id in ids:
            pos = self._pos.pop(record_id, None)
            if pos is not None:
                self._alive[pos] = False
                removed += 1
        if removed and self._dead() > _COMPACT_SHARE * max(len(self._ids), 1):
            self._compact()
        return removed

    def vectors_for(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``ids``, in order (from FAISS when it holds them).

        Raises:
            KeyError: naming the first id that is not in the index.
        """
        try:
            positions = [self._pos[i] for i in ids]
        except KeyError as exc:
            raise KeyError(f"id {exc.args[0]!r} is not in the vector index") from None
        if self._buffer is not None:
            return self._buffer[positions]
        assert self._ann is not None
        if not positions:
            return np.zeros((0, self.dimension), np.float32)
        return self._ann.reconstruct_batch(np.asarray(positions, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest live records of each query, best first, as (id, cosine)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"queries must have shape (n, {self.dimension}), got {queries.shape}")
        if k <= 0 or len(self) == 0:
            return [[] for _ in range(len(queries))]
        fetch = min(k + self._dead(), len(self._ids))
        if self._ann is None:
            vectors = self._all_vectors()
            scores, positions = faiss.knn(queries, vectors, fetch, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            scores, positions = self._ann.search(queries, fetch)
        out: list[list[tuple[str, float]]] = []
        for row_scores, row_pos in zip(scores, positions):
            hits = [
                (self._ids[p], float(s))
                for s, p in zip(row_scores, row_pos)
                if p >= 0 and self._alive[p]
            ]
            out.append(hits[:k])
        return out

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive)
        if self._buffer is not None:
            vectors = self._buffer[keep]
        else:
            assert self._ann is not None
            vectors = self._ann.reconstruct_batch(keep.astype(np.int64))
        self._ids = [self._ids[p] for p in keep]
        self._alive = np.ones(len(keep), dtype=bool)
        self._pos = {record_id: n for n, record_id in enumerate(self._ids)}
        self._rebuild(vectors)

    def _rebuild(self, vectors: np.ndarray) -> None:
        """Build the structure of ``self.spec`` over ``vectors`` (all rows, in position order)."""
        # Tombstoned rows are indexed too when present; search filters them by _alive.
        self._ann = build_faiss(self.spec, vectors)
        self._mapped = False
        self._buffer = None if holds_vectors(self.spec.kind) else np.ascontiguousarray(vectors)

    def save(self, directory: Path) -> dict[str, Any]:
        """Write ids, liveness, the FAISS structure and (flat, IVF-PQ) the vectors.

        Does not modify the index, so it may run while other threads search.
        """
        if self._buffer is not None:
            np.save(directory / "vectors.npy", self._buffer[: len(self._ids)], allow_pickle=False)
        np.save(directory / "alive.npy", self._alive, allow_pickle=False)
        save_json(directory / "ids.json", self._ids)
        if self._ann is not None:
            faiss.write_index(self._ann, str(directory / "vectors.faiss"))
        return {"dimension": self.dimension, "metric": "inner_product", "count": len(self),
                "index": asdict(self.spec)}

    @classmethod
    def load(cls, directory: Path, info: dict[str, Any], exact_max: int | None) -> VectorIndex:
        """Open a saved index. Where FAISS holds the vectors, ``vectors.npy`` (written by earlier
        versions) is not read.

        Raises:
            ValueError: the files disagree on the number of rows.
        """
        spec = IndexSpec(info["index"]["kind"], dict(info["index"]["params"]))
        index = cls(int(info["dimension"]), None, exact_max)
        index.spec = spec
        index._alive = np.load(directory / "alive.npy", allow_pickle=False)
        index._ids = list(load_json(directory / "ids.json"))
        index._pos = {i: n for n, (i, alive) in enumerate(zip(index._ids, index._alive)) if alive}
        faiss_path = directory / "vectors.faiss"
        index._ann = None
        if faiss_path.is_file():
            # HNSW's vectors are memory-mapped, not read: processes that open the same index
            # (batch workers, API replicas) share one copy of them in the page cache, and a
            # read-only job never holds them in its own memory. The graph itself is read.
            index._mapped = spec.kind == "hnsw"
            flags = faiss.IO_FLAG_MMAP_IFC if index._mapped else 0
            index._ann = faiss.read_index(str(faiss_path), flags)
        if index._ann is not None and holds_vectors(spec.kind):
            index._buffer = None
            if spec.kind == "ivf" and index._ann.direct_map.type == faiss.DirectMap.NoMap:
                faiss.extract_index_ivf(index._ann).make_direct_map()
            rows = index._ann.ntotal
        else:
            index._buffer = np.load(directory / "vectors.npy", allow_pickle=False)
            rows = len(index._buffer)
        if not rows == len(index._ids) == len(index._alive):
            raise ValueError(
                f"vector index in {directory} is inconsistent: {rows} stored vectors, "
                f"{len(index._ids)} ids, {len(index._alive)} liveness flags; rebuild it with "
                f"`techmatch index build`"
            )
        return index
