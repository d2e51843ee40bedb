"""Lexical index: jieba words scored with BM25 (bm25s), with string ids and incremental updates."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from indexes.persistence import load_json, save_json
from indexes.tokenizer import tokenize


@dataclass(frozen=True)
class QueryScores:
    """BM25 of one query against every live document of the index."""

    values: np.ndarray
    order: list[str]  # document id of each position of ``values``
    row: dict[str, int]  # position of each document id

    def for_ids(self, ids: Sequence[str]) -> np.ndarray:
        """Scores of ``ids`` (0 for ids not in the index)."""
        return np.array([self.values[self.row[i]] if i in self.row else 0.0 for i in ids], np.float32)

    def top(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` best documents with a positive score, best first."""
        if not len(self.values) or n <= 0:
            return []
        n = min(n, len(self.values))
        top = np.argpartition(-self.values, n - 1)[:n]
        top = top[np.argsort(-self.values[top], kind="stable")]
        return [(self.order[p], float(self.values[p])) for p in top if self.values[p] > 0]


class LexicalIndex:
    """BM25 over tokenised texts.

    bm25s builds an immutable sparse matrix, so adds and removes mark the index stale and the
    matrix is rebuilt from the kept token lists on the next search. Scores always use the
    statistics (IDF, average length) of the whole live collection.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._tokens: dict[str, list[str]] = {}
        # Document frequency of each word among live documents, kept up to date on every
        # write so that IDF-weighted signals never need a pass over the whole collection.
        self._df: Counter[str] = Counter()
        self._order: list[str] = []
        self._row: dict[str, int] = {}
        self._bm25: bm25s.BM25 | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Add or replace documents."""
        tokens = [tokenize(text) for text in texts]
        self.add_tokens(ids, tokens)

    def add_tokens(self, ids: Sequence[str], tokens: Sequence[list[str]]) -> None:
        """Add or replace documents given as token lists."""
        with self._lock:
            for record_id, words in zip(ids, tokens):
                old = self._tokens.get(record_id)
                if old is not None:
                    self._df.subtract(set(old))
                self._df.update(set(words))
                self._tokens[record_id] = words
            self._bm25 = None

    def remove(self, ids: Sequence[str]) -> int:
        with self._lock:
            removed = 0
            for record_id in ids:
                old = self._tokens.pop(record_id, None)
                if old is not None:
                    self._df.subtract(set(old))
                    removed += 1
            if removed:
                self._bm25 = None
            return removed

    @property
    def document_frequency(self) -> Mapping[str, int]:
        """How many live documents contain each word (read-only view)."""
        return self._df

    def tokens_of(self, record_id: str) -> list[str]:
        return self._tokens[record_id]

    def _ready(self) -> tuple[bm25s.BM25 | None, list[str], dict[str, int]]:
        with self._lock:
            if self._bm25 is None and self._tokens:
                order = list(self._tokens)
                # An empty document still needs a token, or bm25s drops its row.
                corpus = [self._tokens[i] or [""] for i in order]
                bm25 = bm25s.BM25(k1=self.k1, b=self.b)
                bm25.index(corpus, show_progress=False)
                self._order, self._row, self._bm25 = order, {i: n for n, i in enumerate(order)}, bm25
            return self._bm25, self._order, self._row

    def scores(self, query: str | list[str]) -> QueryScores:
        """BM25 of one query (text or tokens) against every live document."""
        bm25, order, row = self._ready()
        if bm25 is None:
            return QueryScores(np.zeros(0, dtype=np.float32), [], {})
        tokens = tokenize(query) if isinstance(query, str) else query
        return QueryScores(bm25.get_scores(tokens).astype(np.float32), order, row)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top ``k`` documents per query by BM25, best first; documents scoring 0 are left out."""
        return [self.scores(query).top(k) for query in queries]

    def scores_for(self, query: str, ids: Sequence[str]) -> np.ndarray:
        """BM25 of ``query`` against the given documents (0 for ids not in the index)."""
        return self.scores(query).for_ids(ids)

    def save(self, directory: Path) -> dict[str, Any]:
        with self._lock:
            tokens = dict(self._tokens)
        save_json(directory / "lexical_tokens.json", tokens)
        return {"count": len(self), "k1": self.k1, "b": self.b, "tokenizer": "jieba-0.42.1/stopwords-v1"}

    @classmethod
    def load(cls, directory: Path, info: dict[str, Any]) -> LexicalIndex:
        index = cls(k1=float(info["k1"]), b=float(info["b"]))
        tokens: dict[str, list[str]] = load_json(directory / "lexical_tokens.json")
        index.add_tokens(list(tokens), list(tokens.values()))
        return index
