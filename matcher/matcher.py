"""The one entry point for matching: the API, batch jobs and the evaluator all call a Matcher."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexes.collection import Collection
from indexes.persistence import (
    atomic_directory,
    check_fingerprint,
    make_manifest,
    read_manifest,
    write_manifest,
)
from matcher.records import EnterpriseNeed, Match, MatchFilters, NeedMatch, ResearchResult
from matcher.scoring import CONFIGS, CandidateBatch, fuse_hybrid, score_batch
from matcher.store import RecordStore
from matcher.text import render_need, render_result
from models.encoder import Encoder

Progress = Callable[[int], None]
STORE_FILE = "records.sqlite"
ENCODE_CHUNK = 256


@dataclass(frozen=True)
class MatcherOptions:
    """Tunables of candidate generation."""

    candidates: int = 100  # dense top-N and lexical top-N, unioned
    exact_max: int = 200_000  # exact search up to this many vectors, approximate above


def encode_chunked(
    encode: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str],
    dimension: int,
    progress: Progress | None = None,
) -> np.ndarray:
    """Encode in chunks so that long jobs can report progress."""
    parts = [np.zeros((0, dimension), np.float32)]
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = texts[start : start + ENCODE_CHUNK]
        parts.append(encode(chunk))
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(parts)


class Matcher:
    """Ranks research results for needs (and needs for results) from the indexes and a scorer.

    Writes (upserts, deletes) are serialised by a lock; searches read the indexes as they are.
    """

    configs: tuple[str, ...] = CONFIGS

    def __init__(
        self,
        encoder: Encoder,
        results: Collection,
        needs: Collection,
        store: RecordStore,
        options: MatcherOptions | None = None,
    ) -> None:
        self.encoder = encoder
        self.results = results
        self.needs = needs
        self.store = store
        self.options = options or MatcherOptions()
        self._write_lock = threading.Lock()

    # ----- building and persistence -------------------------------------------------------

    @classmethod
    def build(
        cls,
        results: Sequence[ResearchResult],
        needs: Sequence[EnterpriseNeed] = (),
        *,
        encoder: Encoder,
        options: MatcherOptions | None = None,
        store: RecordStore | None = None,
        progress: Progress | None = None,
    ) -> Matcher:
        """Encode and index ``results`` (and ``needs``, for the reverse direction)."""
        options = options or MatcherOptions()
        matcher = cls(
            encoder,
            Collection.empty(encoder.dimension, options.exact_max),
            Collection.empty(encoder.dimension, options.exact_max),
            store or RecordStore(),
            options,
        )
        matcher.upsert_results(results, progress=progress)
        matcher.upsert_needs(needs, progress=progress)
        return matcher

    def save(self, index_dir: str | Path) -> None:
        """Write the indexes, records and manifest; the old directory survives a failed write."""
        index_dir = Path(index_dir)
        with self._write_lock, atomic_directory(index_dir) as tmp:
            info = {
                "results": self.results.save(tmp / "results"),
                "needs": self.needs.save(tmp / "needs"),
            }
            self.store.copy_to(tmp / STORE_FILE)
            write_manifest(
                tmp,
                make_manifest(
                    encoder_fingerprint=self.encoder.fingerprint,
                    dimension=self.encoder.dimension,
                    metric="inner_product",
                    count={"results": len(self.results), "needs": len(self.needs)},
                    options=self.options.__dict__,
                    collections=info,
                ),
            )

    @classmethod
    def load(
        cls, index_dir: str | Path, encoder: Encoder, options: MatcherOptions | None = None
    ) -> Matcher:
        """Open a saved index.

        Raises:
            IndexMismatchError: the index was built with another encoder or schema.
            FileNotFoundError: ``index_dir`` is not an index directory.
        """
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        check_fingerprint(index_dir, manifest, encoder.fingerprint)
        saved = manifest.get("options", {})
        options = options or MatcherOptions(**saved)
        info = manifest["collections"]
        return cls(
            encoder,
            Collection.load(index_dir / "results", info["results"], options.exact_max),
            Collection.load(index_dir / "needs", info["needs"], options.exact_max),
            RecordStore(index_dir / STORE_FILE),
            options,
        )

    # ----- record management --------------------------------------------------------------

    def upsert_results(
        self, results: Sequence[ResearchResult], progress: Progress | None = None
    ) -> None:
        """Store and index results; an existing id is replaced."""
        self._upsert("results", self.results, results, render_result,
                     self.encoder.encode_documents, progress)

    def upsert_needs(self, needs: Sequence[EnterpriseNeed], progress: Progress | None = None) -> None:
        self._upsert("needs", self.needs, needs, render_need, self.encoder.encode_queries, progress)

    def delete_results(self, ids: Sequence[str]) -> int:
        with self._write_lock:
            self.store.delete("results", ids)
            return self.results.remove(ids)

    def delete_needs(self, ids: Sequence[str]) -> int:
        with self._write_lock:
            self.store.delete("needs", ids)
            return self.needs.remove(ids)

    def _upsert(self, kind, collection, records, render, encode, progress) -> None:  # type: ignore[no-untyped-def]
        if not records:
            return
        texts = [render(r) for r in records]
        # Encode outside the lock: it is the slow part and touches no shared state.
        vectors = encode_chunked(encode, texts, self.encoder.dimension, progress)
        with self._write_lock:
            self.store.upsert(kind, records)
            collection.add([r.id for r in records], texts, vectors)

    # ----- matching -----------------------------------------------------------------------

    def match(self, need: EnterpriseNeed, top_k: int = 10, filters: MatchFilters | None = None,
              config: str = "default") -> list[Match]:
        return self.match_batch([need], top_k, filters, config)[0]

    def match_batch(
        self,
        needs: Sequence[EnterpriseNeed],
        top_k: int = 10,
        filters: MatchFilters | None = None,
        config: str = "default",
    ) -> list[list[Match]]:
        """Rank results for each need: dense top-N ∪ lexical top-N, scored, best first.

        Args:
            needs: the needs to match (they need not be stored).
            top_k: how many matches per need.
            filters: hard constraints on results, applied before scoring.
            config: a scoring configuration from :data:`CONFIGS`.
        """
        if top_k < 1:
            raise ValueError(f"top_k of {top_k} must be at least 1")
        if not needs:
            return []
        texts = [render_need(n) for n in needs]
        queries = self.encoder.encode_queries(texts)
        n_cand = max(self.options.candidates, top_k)
        if filters is not None and not filters.is_empty():
            n_cand *= 5  # filters discard candidates after retrieval; fetch more
        dense_hits = self.results.vector.search(queries, n_cand)
        out: list[list[Match]] = []
        for need, text, query, hits in zip(needs, texts, queries, dense_hits):
            bm25_all, order = self.results.lexical.scores(text)
            ids = list(dict.fromkeys([i for i, _ in hits] + _top_ids(bm25_all, order, n_cand)))
            out.append(self._rank(need, text, query, ids, bm25_all, order, top_k, filters, config))
        return out

    def rerank_batch(
        self,
        needs: Sequence[EnterpriseNeed],
        candidate_ids: Sequence[Sequence[str]],
        config: str = "default",
    ) -> list[list[Match]]:
        """Rank exactly the given indexed results for each need (all of them, no filtering).

        Raises:
            KeyError: a candidate id is not in the index.
        """
        texts = [render_need(n) for n in needs]
        queries = self.encoder.encode_queries(texts)
        out: list[list[Match]] = []
        for need, text, query, ids in zip(needs, texts, queries, candidate_ids):
            bm25_all, order = self.results.lexical.scores(text)
            out.append(self._rank(need, text, query, list(ids), bm25_all, order, len(ids), None, config))
        return out

    def _rank(
        self,
        need: EnterpriseNeed,
        text: str,
        query: np.ndarray,
        ids: list[str],
        bm25_all: np.ndarray,
        order: list[str],
        top_k: int,
        filters: MatchFilters | None,
        config: str,
    ) -> list[Match]:
        records = self.store.results(ids)
        ids = [i for i in ids if i in records and (filters is None or filters.accepts(records[i]))]
        if not ids:
            return []
        row = {record_id: n for n, record_id in enumerate(order)}
        batch = CandidateBatch(
            need=need,
            need_text=text,
            results=[records[i] for i in ids],
            dense=self.results.vector.vectors_for(ids) @ query,
            lexical=np.array([bm25_all[row[i]] if i in row else 0.0 for i in ids], np.float32),
        )
        scored = score_batch(batch, config)
        ranking = np.argsort(-scored.scores, kind="stable")[:top_k]
        return [
            Match(
                result_id=ids[p],
                rank=rank,
                score=float(scored.scores[p]),
                dense=float(batch.dense[p]),
                lexical=float(batch.lexical[p]),
                components={name: float(values[p]) for name, values in scored.components.items()},
                tier=scored.tiers[p],
                p_strong=None if scored.p_strong is None else float(scored.p_strong[p]),
                reasons=scored.reasons[p],
                result=records[ids[p]],
            )
            for rank, p in enumerate(ranking, start=1)
        ]

    def match_needs_batch(self, results: Sequence[ResearchResult], top_k: int = 10) -> list[list[NeedMatch]]:
        """The reverse direction: which stored needs each research result fits best."""
        if top_k < 1:
            raise ValueError(f"top_k of {top_k} must be at least 1")
        if not results or not len(self.needs):
            return [[] for _ in results]
        texts = [render_result(r) for r in results]
        queries = self.encoder.encode_documents(texts)
        n_cand = max(self.options.candidates, top_k)
        dense_hits = self.needs.vector.search(queries, n_cand)
        out: list[list[NeedMatch]] = []
        for text, query, hits in zip(texts, queries, dense_hits):
            bm25_all, order = self.needs.lexical.scores(text)
            ids = list(dict.fromkeys([i for i, _ in hits] + _top_ids(bm25_all, order, n_cand)))
            records = self.store.needs(ids)
            ids = [i for i in ids if i in records]
            row = {record_id: n for n, record_id in enumerate(order)}
            dense = self.needs.vector.vectors_for(ids) @ query
            lexical = np.array([bm25_all[row[i]] if i in row else 0.0 for i in ids], np.float32)
            scores = fuse_hybrid(dense, lexical)
            ranking = np.argsort(-scores, kind="stable")[:top_k]
            out.append([
                NeedMatch(need_id=ids[p], rank=rank, score=float(scores[p]), dense=float(dense[p]),
                          lexical=float(lexical[p]), need=records[ids[p]])
                for rank, p in enumerate(ranking, start=1)
            ])
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "results": len(self.results),
            "needs": len(self.needs),
            "encoder": self.encoder.fingerprint,
            "index": self.results.vector.spec.kind,
        }


def _top_ids(scores: np.ndarray, order: list[str], n: int) -> list[str]:
    """Ids of the ``n`` best positive BM25 scores, best first."""
    if not len(scores):
        return []
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [order[p] for p in top if scores[p] > 0]
