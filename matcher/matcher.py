"""The one entry point for matching: the API, batch jobs and the evaluator all call a Matcher."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexes.collection import Collection
from indexes.lexical import QueryScores
from indexes.tokenizer import tokenize
from indexes.persistence import (
    atomic_directory,
    check_fingerprint,
    make_manifest,
    read_manifest,
    write_manifest,
)
from matcher.locking import ReadWriteLock
from matcher.records import (
    EnterpriseNeed,
    Match,
    MatchFilters,
    NeedMatch,
    ResearchResult,
    TextSpan,
)
from matcher.dedup import fold_duplicates
from matcher.need_analysis import NeedAnalysis, analyse_need
from matcher.scoring import (
    CONFIGS,
    CandidateBatch,
    default_model,
    explain_candidate,
    fuse_hybrid,
    same_vector_space,
    score_batch,
)
from matcher.profiles import result_row
from matcher.result_table import ResultTable
from matcher.signals import TermStats
from matcher.store import RecordStore
from matcher.text import render_need, render_result
from models.cache import CachedEncoder
from models.encoder import Encoder

Progress = Callable[[int], None]
# Index directory layout: the record store is the source of truth and is written live; the
# snapshot (vectors, lexical tokens, manifest) is derived from it and replaced atomically.
# Writes after the snapshot are replayed from the store's change log on load.
STORE_FILE = "records.sqlite"
SNAPSHOT_DIR = "snapshot"
TABLE_DIR = "results_table"
ENCODE_CHUNK = 256


@functools.lru_cache(maxsize=1)
def _small_products_single_threaded() -> None:
    """Run numpy's own BLAS on one thread in this process.

    Matching multiplies small matrices (200 candidates × 512) per need; with two BLAS
    threads those products waited on each other whenever another process used a core
    (near-duplicate folding took 22.8 ms per need instead of 2.7 ms under load 5.6).
    Encoding (torch) and vector search (FAISS) use their own thread pools, untouched.
    """
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(prefix="libscipy_openblas").limit(limits=1)


@dataclass(frozen=True)
class MatcherOptions:
    """Tunables of candidate generation."""

    candidates: int = 100  # dense top-N and lexical top-N, unioned
    # Exact search up to this many vectors, approximate above; None: the measured default
    # of indexes.ann_choice (exact up to 100k).
    exact_max: int | None = None


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


@dataclass(frozen=True)
class _Query:
    """A need ready for retrieval: its text, vector, key-sentence vectors and analysis."""

    need: EnterpriseNeed
    text: str
    vector: np.ndarray
    views: np.ndarray
    analysis: NeedAnalysis


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
        table: ResultTable | None = None,
    ) -> None:
        self.encoder = encoder
        self.results = results
        self.needs = needs
        self.store = store
        # The results' signal inputs, gathered per need (matcher.profiles).
        self.table = table if table is not None else ResultTable()
        self.options = options or MatcherOptions()
        self.index_dir: Path | None = None
        # The learned need-side adapter only applies to the vector space it was trained in.
        self._adapter_fits = same_vector_space(
            default_model().manifest.get("encoder"), encoder.fingerprint
        )
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()
        _small_products_single_threaded()

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
        """Write the index to ``index_dir``; a failed write leaves the previous one whole.

        A Matcher opened from ``index_dir`` rewrites only the snapshot (its record store is
        already there, live); any other writes the whole directory, store included.
        """
        index_dir = Path(index_dir)
        with self._save_lock:
            live = self.store.path == str(index_dir / STORE_FILE)
            if live:
                with atomic_directory(index_dir / SNAPSHOT_DIR) as tmp:
                    seq = self._write_snapshot(tmp)
                self.store.forget_changes(seq)
            else:
                with atomic_directory(index_dir) as tmp:
                    self._write_snapshot(tmp / SNAPSHOT_DIR)
                    self.store.copy_to(tmp / STORE_FILE)

    def checkpoint(self) -> None:
        """Rewrite the snapshot of the index this Matcher was loaded from."""
        if self.index_dir is None:
            raise RuntimeError("checkpoint() needs a Matcher opened with Matcher.load()")
        self.save(self.index_dir)

    def _write_snapshot(self, directory: Path) -> int:
        directory.mkdir(parents=True, exist_ok=True)
        # The read side suffices: saving does not modify the indexes, it only must not
        # interleave with a write. The store sequence is read under the same lock.
        with self._lock.read():
            seq = self.store.last_seq()
            info = {
                "results": self.results.save(directory / "results"),
                "needs": self.needs.save(directory / "needs"),
                TABLE_DIR: self.table.save(directory / TABLE_DIR),
            }
        write_manifest(
            directory,
            make_manifest(
                encoder_fingerprint=self.encoder.fingerprint,
                dimension=self.encoder.dimension,
                metric="inner_product",
                count={"results": len(self.results), "needs": len(self.needs)},
                options=self.options.__dict__,
                store_seq=seq,
                collections=info,
            ),
        )
        return seq

    @classmethod
    def load(
        cls, index_dir: str | Path, encoder: Encoder, options: MatcherOptions | None = None
    ) -> Matcher:
        """Open a saved index and catch up with record writes made after its snapshot.

        Raises:
            IndexMismatchError: the index was built with another encoder or schema.
            FileNotFoundError: ``index_dir`` is not an index directory.
        """
        index_dir = Path(index_dir)
        snapshot = index_dir / SNAPSHOT_DIR
        manifest = read_manifest(snapshot)
        check_fingerprint(index_dir, manifest, encoder.fingerprint)
        options = options or MatcherOptions(**manifest.get("options", {}))
        info = manifest["collections"]
        store = RecordStore(index_dir / STORE_FILE)
        results = Collection.load(snapshot / "results", info["results"], options.exact_max)
        if TABLE_DIR in info:
            table = ResultTable.load(snapshot / TABLE_DIR)
        else:  # a snapshot written before the table existed
            table = ResultTable.from_store(store, results.vector.ids)
        matcher = cls(
            encoder,
            results,
            Collection.load(snapshot / "needs", info["needs"], options.exact_max),
            store,
            options,
            table,
        )
        matcher.index_dir = index_dir
        matcher._replay(int(manifest.get("store_seq", 0)))
        return matcher

    def _replay(self, seq: int) -> None:
        changes = self.store.changes_since(seq)
        for kind, collection in (("results", self.results), ("needs", self.needs)):
            deleted = [i for (k, i), op in changes.items() if k == kind and op == "delete"]
            upserted = [i for (k, i), op in changes.items() if k == kind and op == "upsert"]
            collection.remove(deleted)
            if kind == "results":
                self.table.remove(deleted)
            records = list(self.store.get(kind, upserted).values())  # type: ignore[arg-type]
            self._index(kind, records, None, store=False)  # type: ignore[arg-type]

    # ----- record management --------------------------------------------------------------

    def upsert_results(
        self, results: Sequence[ResearchResult], progress: Progress | None = None
    ) -> None:
        """Store and index results; an existing id is replaced."""
        self._index("results", results, progress)

    def upsert_needs(self, needs: Sequence[EnterpriseNeed], progress: Progress | None = None) -> None:
        """Store and index needs (for the results → needs direction)."""
        self._index("needs", needs, progress)

    def delete_results(self, ids: Sequence[str]) -> int:
        """Delete results from the store and the indexes; returns how many were indexed."""
        with self._lock.write():
            self.store.delete("results", ids)
            self.table.remove(ids)
            return self.results.remove(ids)

    def delete_needs(self, ids: Sequence[str]) -> int:
        with self._lock.write():
            self.store.delete("needs", ids)
            return self.needs.remove(ids)

    def _index(
        self,
        kind: str,
        records: Sequence[ResearchResult] | Sequence[EnterpriseNeed],
        progress: Progress | None,
        store: bool = True,
    ) -> None:
        if not records:
            return
        if kind == "results":
            collection, render, encode = self.results, render_result, self.encoder.encode_documents
        else:
            collection, render, encode = self.needs, render_need, self.encoder.encode_queries
        texts = [render(r) for r in records]
        # Encoding is the slow part and touches no shared state: keep it outside the lock.
        vectors = encode_chunked(encode, texts, self.encoder.dimension, progress)
        if kind == "needs" and isinstance(self.encoder, CachedEncoder):
            # A stored need is usually matched later by id; with its key sentences already in
            # the embedding cache that match needs no model call (~30 ms of a ~50 ms match).
            sentences = [s for r in records for s in analyse_need(r).key_sentences]  # type: ignore[arg-type]
            encode_chunked(encode, sentences, self.encoder.dimension)
        tokens = [tokenize(text) for text in texts]
        rows = [result_row(r) for r in records] if kind == "results" else []  # type: ignore[arg-type]
        # Store and indexes change together under the write lock, so a snapshot never
        # records a store sequence whose writes its indexes lack, and two writes of one id
        # land in the same order in both.
        with self._lock.write():
            if store:
                self.store.upsert(kind, records)  # type: ignore[arg-type]
            collection.add([r.id for r in records], tokens, vectors)
            if rows:
                self.table.add([r.id for r in records], rows)

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
        dedup: bool = True,
    ) -> list[list[Match]]:
        """Rank results for each need: dense top-N ∪ lexical top-N, scored, best first.

        Args:
            needs: the needs to match (they need not be stored).
            top_k: how many matches per need.
            filters: hard constraints on results, applied before scoring.
            config: a scoring configuration from :data:`CONFIGS`.
            dedup: fold near-duplicate results into the best-ranked of them.
        """
        if top_k < 1:
            raise ValueError(f"top_k of {top_k} must be at least 1")
        if config not in CONFIGS:
            raise ValueError(f"unknown scoring config '{config}'; expected one of {', '.join(CONFIGS)}")
        if not needs:
            return []
        queries = self._prepare(needs)
        n_cand = max(self.options.candidates, top_k)
        if filters is not None and not filters.is_empty():
            n_cand *= 5  # filters discard candidates after retrieval; fetch more
        out: list[list[Match]] = []
        with self._lock.read():
            vectors = np.stack([q.vector for q in queries])
            dense_hits = self.results.vector.search(vectors, n_cand)
            for query, hits in zip(queries, dense_hits):
                bm25 = self.results.lexical.scores(query.text)
                ids = list(dict.fromkeys([i for i, _ in hits] + [i for i, _ in bm25.top(n_cand)]))
                out.append(self._rank(query, ids, bm25, top_k, filters, config, dedup))
        return out

    def rerank_batch(
        self,
        needs: Sequence[EnterpriseNeed],
        candidate_ids: Sequence[Sequence[str]],
        config: str = "default",
    ) -> list[list[Match]]:
        """Rank exactly the given indexed results for each need (all of them, no filtering,
        no folding of near-duplicates).

        Raises:
            KeyError: a candidate id is not in the index.
        """
        missing = [i for ids in candidate_ids for i in ids if i not in self.results.vector]
        if missing:
            raise KeyError(f"{len(missing)} candidate ids are not in the index, e.g. {missing[0]!r}")
        queries = self._prepare(needs)
        out: list[list[Match]] = []
        with self._lock.read():
            for query, ids in zip(queries, candidate_ids):
                bm25 = self.results.lexical.scores(query.text)
                out.append(self._rank(query, list(ids), bm25, len(ids), None, config, dedup=False))
        return out

    def analyse(self, needs: Sequence[EnterpriseNeed]) -> list[NeedAnalysis]:
        """Each need's key technical points (terms, key sentences, sections)."""
        return [analyse_need(need) for need in needs]

    def _prepare(self, needs: Sequence[EnterpriseNeed]) -> list[_Query]:
        """Render, analyse and encode needs; the need text and its key sentences in one call."""
        texts = [render_need(n) for n in needs]
        analyses = self.analyse(needs)
        flat = list(texts)
        for analysis in analyses:
            flat.extend(analysis.key_sentences)
        vectors = self.encoder.encode_queries(flat)
        queries, offset = [], len(texts)
        for n, (need, text, analysis) in enumerate(zip(needs, texts, analyses)):
            k = len(analysis.key_sentences)
            views = vectors[offset : offset + k]
            offset += k
            queries.append(_Query(need, text, vectors[n], views, analysis))
        return queries

    def _rank(
        self,
        query: _Query,
        ids: list[str],
        bm25: QueryScores,
        top_k: int,
        filters: MatchFilters | None,
        config: str,
        dedup: bool,
    ) -> list[Match]:
        ids, profiles = self.table.gather(ids)
        if filters is not None and not filters.is_empty():
            keep = [n for n, facets in enumerate(profiles.facets) if filters.accepts(facets)]
            ids, profiles = [ids[n] for n in keep], profiles.subset(keep)
        if not ids:
            return []
        result_vectors = self.results.vector.vectors_for(ids)
        batch = CandidateBatch(
            need=query.need,
            need_text=query.text,
            profiles=profiles,
            dense=result_vectors @ query.vector,
            lexical=bm25.for_ids(ids),
            need_vector=query.vector if self._adapter_fits else None,
            result_vectors=result_vectors,
            view_vectors=query.views,
            analysis=query.analysis,
            term_stats=TermStats(self.results.lexical.document_frequency, len(self.results.lexical)),
        )
        scored = score_batch(batch, config)
        order = np.argsort(-scored.scores, kind="stable")
        groups = (
            fold_duplicates(order, profiles.title_keys.tolist(), result_vectors, top_k)
            if dedup
            else [(int(p), []) for p in order[:top_k]]
        )
        # Only the shown matches are read from the store, for their records and reasons.
        records = self.store.results([ids[p] for p, _ in groups])
        matches = []
        for rank, (p, twins) in enumerate(groups, start=1):
            why = explain_candidate(batch, scored, p, records[ids[p]])
            matches.append(Match(
                result_id=ids[p],
                rank=rank,
                score=float(scored.scores[p]),
                dense=float(batch.dense[p]),
                lexical=float(batch.lexical[p]),
                components={name: float(values[p]) for name, values in scored.components.items()},
                tier=scored.tiers[p],
                p_strong=None if scored.p_strong is None else float(scored.p_strong[p]),
                reasons=why.reasons,
                matched_terms=why.terms,
                need_spans=[TextSpan(term=x.term, start=x.start, end=x.end) for x in why.need_spans],
                result_spans=[TextSpan(term=x.term, start=x.start, end=x.end) for x in why.result_spans],
                duplicates=[ids[t] for t in twins],
                result=records[ids[p]],
            ))
        return matches

    def match_needs_batch(self, results: Sequence[ResearchResult], top_k: int = 10) -> list[list[NeedMatch]]:
        """The reverse direction: which stored needs each research result fits best."""
        if top_k < 1:
            raise ValueError(f"top_k of {top_k} must be at least 1")
        if not results or not len(self.needs):
            return [[] for _ in results]
        texts = [render_result(r) for r in results]
        queries = self.encoder.encode_documents(texts)
        n_cand = max(self.options.candidates, top_k)
        out: list[list[NeedMatch]] = []
        with self._lock.read():
            dense_hits = self.needs.vector.search(queries, n_cand)
            for text, query, hits in zip(texts, queries, dense_hits):
                bm25 = self.needs.lexical.scores(text)
                ids = list(dict.fromkeys([i for i, _ in hits] + [i for i, _ in bm25.top(n_cand)]))
                out.append(self._rank_needs(query, ids, bm25, top_k))
        return out

    def _rank_needs(
        self, query: np.ndarray, ids: list[str], bm25: QueryScores, top_k: int
    ) -> list[NeedMatch]:
        records = self.store.needs(ids)
        ids = [i for i in ids if i in records]
        if not ids:
            return []
        dense = self.needs.vector.vectors_for(ids) @ query
        lexical = bm25.for_ids(ids)
        scores = fuse_hybrid(dense, lexical)
        ranking = np.argsort(-scores, kind="stable")[:top_k]
        return [
            NeedMatch(need_id=ids[p], rank=rank, score=float(scores[p]), dense=float(dense[p]),
                      lexical=float(lexical[p]), need=records[ids[p]])
            for rank, p in enumerate(ranking, start=1)
        ]

    def stats(self) -> dict[str, Any]:
        """Counts and the encoder, for health checks and reports."""
        return {
            "results": len(self.results),
            "needs": len(self.needs),
            "encoder": self.encoder.fingerprint,
            "index": self.results.vector.spec.kind,
        }
