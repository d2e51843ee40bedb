"""What the handlers call: record writes, matching and feedback, on top of one Matcher.

No ranking logic and no record SQL here: the Matcher ranks and stores. This module only adapts
records to responses, resolves ids to records (404 when missing), serialises writes and
decides when to checkpoint the index snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from api.errors import NotFound
from api.feedback import FeedbackStore
from api.schemas import (
    FeedbackCreate,
    FeedbackPublic,
    KeyTermPublic,
    MatchResponse,
    NeedAnalysis,
    ResultNeedsResponse,
    WriteResponse,
)
from api.settings import ApiSettings
from matcher.matcher import SNAPSHOT_DIR, STORE_FILE, Matcher, MatcherOptions
from matcher.records import EnterpriseNeed, Match, MatchFilters, ResearchResult
from matcher.store import RecordStore
from matcher.text import render_need
from models.encoder import Encoder

log = logging.getLogger("techmatch.api")


def open_index(settings: ApiSettings, encoder: Encoder) -> Matcher:
    """Load the index at ``settings.index_dir``; a missing or empty directory starts a new one.

    Raises:
        IndexMismatchError: the index was built with another encoder.
        FileNotFoundError: the directory holds something that is not an index.
    """
    index_dir = Path(settings.index_dir)
    if not index_dir.exists() or not any(index_dir.iterdir()):
        log.warning("no index at %s: starting an empty one (add records with PUT/POST)", index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        store = RecordStore(index_dir / STORE_FILE)
        empty = Matcher.build([], encoder=encoder, store=store,
                              options=MatcherOptions(settings.candidates, settings.exact_search_max))
        empty.save(index_dir)
        store.close()
    elif not (index_dir / SNAPSHOT_DIR).is_dir():
        raise FileNotFoundError(
            f"{index_dir} is not an index directory (no {SNAPSHOT_DIR}/); build one with "
            f"`techmatch index build --index-dir {index_dir}` or point --index-dir at an empty directory"
        )
    return Matcher.load(index_dir, encoder)


def analyse(matcher: Matcher, need: EnterpriseNeed) -> NeedAnalysis:
    """What the matcher reads from ``need``: the embedded text and the Matcher's analysis."""
    text = render_need(need)
    full = render_need(need, limit=len(need.title) + len(need.description) + 1)
    core = matcher.analyse([need])[0]
    return NeedAnalysis(
        text=text,
        truncated=len(full) > len(text),
        key_terms=[KeyTermPublic(term=t.term, weight=round(t.weight, 4)) for t in core.key_terms],
        key_sentences=core.key_sentences,
        sections=core.sections,
    )


def _strip(matches: list[Match], include_records: bool) -> list[Match]:
    return matches if include_records else [m.model_copy(update={"result": None}) for m in matches]


class MatchingService:
    """Matching and record management for the HTTP layer; safe to call from worker threads."""

    def __init__(self, matcher: Matcher, settings: ApiSettings, feedback: FeedbackStore) -> None:
        self.matcher = matcher
        self.settings = settings
        self.feedback = feedback
        # Write ordering and snapshot consistency are the Matcher's (store and index change
        # together under its write lock); this lock only guards the change counter.
        self._count_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._changes = 0

    # ----- lookups ------------------------------------------------------------------------

    def need(self, need_id: str, field: str = "need_id") -> EnterpriseNeed:
        found = self.matcher.store.needs([need_id])
        if need_id not in found:
            raise NotFound("need", need_id, field)
        return found[need_id]

    def result(self, result_id: str, field: str = "result_id") -> ResearchResult:
        found = self.matcher.store.results([result_id])
        if result_id not in found:
            raise NotFound("result", result_id, field)
        return found[result_id]

    # ----- matching -----------------------------------------------------------------------

    def match(
        self,
        needs: Sequence[EnterpriseNeed],
        top_k: int,
        filters: MatchFilters | None,
        config: str,
        include_records: bool = True,
    ) -> list[MatchResponse]:
        """Rank results for each need with one ``match_batch`` call."""
        started = time.perf_counter()
        ranked = self.matcher.match_batch(list(needs), top_k=top_k, filters=filters, config=config)
        took_ms = (time.perf_counter() - started) * 1000
        return [
            MatchResponse(need_id=need.id, config=config, matches=_strip(matches, include_records),
                          analysis=analyse(self.matcher, need), took_ms=round(took_ms, 3))
            for need, matches in zip(needs, ranked)
        ]

    def needs_for_result(self, result_id: str, top_k: int) -> ResultNeedsResponse:
        """The stored needs a stored result fits best."""
        record = self.result(result_id, field="result_id")
        started = time.perf_counter()
        ranked = self.matcher.match_needs_batch([record], top_k=top_k)[0]
        return ResultNeedsResponse(result_id=result_id, matches=ranked,
                                   took_ms=round((time.perf_counter() - started) * 1000, 3))

    def warm_up(self) -> float:
        """Run one throw-away match; returns its seconds.

        The lexical index builds its BM25 matrix lazily on the first search after a load or a
        write (seconds at 100k results); doing it here keeps that cost off a user's request.
        """
        started = time.perf_counter()
        self.matcher.match_batch([EnterpriseNeed(id="warm-up", title="预热")], top_k=1)
        return time.perf_counter() - started

    # ----- writes -------------------------------------------------------------------------

    def _written(self, ids: list[str], upserted: int = 0, deleted: int = 0) -> WriteResponse:
        with self._count_lock:
            self._changes += len(ids)
        return WriteResponse(ids=ids, upserted=upserted, deleted=deleted,
                             results=len(self.matcher.results), needs=len(self.matcher.needs))

    def upsert_results(self, records: Sequence[ResearchResult]) -> WriteResponse:
        self.matcher.upsert_results(records)
        return self._written([r.id for r in records], upserted=len(records))

    def upsert_needs(self, records: Sequence[EnterpriseNeed]) -> WriteResponse:
        self.matcher.upsert_needs(records)
        return self._written([r.id for r in records], upserted=len(records))

    def delete_result(self, result_id: str) -> WriteResponse:
        self.result(result_id, field="result_id")
        self.matcher.delete_results([result_id])
        return self._written([result_id], deleted=1)

    def delete_need(self, need_id: str) -> WriteResponse:
        self.need(need_id, field="need_id")
        self.matcher.delete_needs([need_id])
        return self._written([need_id], deleted=1)

    @property
    def changes_since_checkpoint(self) -> int:
        return self._changes

    def checkpoint_due(self) -> bool:
        return self.matcher.index_dir is not None and self._changes >= self.settings.checkpoint_after

    def checkpoint(self, only_if_dirty: bool = True) -> bool:
        """Rewrite the index snapshot (skipped if one is already running); return whether it ran.

        Not needed for durability (every write is in the record store, replayed on load); it
        keeps start-up fast by shortening the replay.
        """
        if self.matcher.index_dir is None or (only_if_dirty and not self._changes):
            return False
        if not self._checkpoint_lock.acquire(blocking=False):
            return False
        try:
            started = time.perf_counter()
            with self._count_lock:
                self._changes = 0
            # Matcher.checkpoint snapshots a consistent (store sequence, index) pair itself;
            # writes arriving meanwhile stay in the change log and are counted again.
            self.matcher.checkpoint()
            log.info("checkpoint: snapshot of %d results, %d needs written in %.1fs",
                     len(self.matcher.results), len(self.matcher.needs), time.perf_counter() - started)
            return True
        finally:
            self._checkpoint_lock.release()

    # ----- feedback -----------------------------------------------------------------------

    def add_feedback(self, item: FeedbackCreate) -> FeedbackPublic:
        """Store a verdict on a stored result; fill in the tier from a rerank if not given."""
        self.result(item.result_id, field="result_id")
        if item.tier is None:
            needs = self.matcher.store.needs([item.need_id])
            if item.need_id in needs and item.result_id in self.matcher.results.vector:
                ranked = self.matcher.rerank_batch([needs[item.need_id]], [[item.result_id]])[0]
                if ranked and ranked[0].tier is not None:
                    item = item.model_copy(update={"tier": ranked[0].tier})
        return self.feedback.add(item)
