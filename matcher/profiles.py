"""The need-independent signal inputs of research results, gathered per need as flat arrays.

Of a (need, result) pair's signals, the result's side (its terms, compacted text, title
character bigrams, facets) depends on the result alone. Rebuilding it per need from the
stored record (SQLite row, pydantic validation, regexes, set construction) took 21 of 61 ms
per need at 500k results, so it is derived once per result (:func:`result_row`), kept in
flat arrays beside the index (``matcher.result_table``) and gathered per need into one
:class:`CandidateProfiles` that ``matcher.signals.compute_signals`` reads with numpy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from matcher.dedup import normalise_title
from matcher.records import ResearchResult
from matcher.signals import GENERIC_TERMS, bigram_codes, char_bigrams, compact, result_terms, result_text

# Separator of the stored terms column: never part of a term (terms are words).
TERM_SEPARATOR = "\x1f"


class Facets(NamedTuple):
    """The facets of a result that field agreement, compatibility and filters read."""

    field: str | None
    region: str | None
    maturity: str | None
    transfer_modes: tuple[str, ...]


def facets_of(result: ResearchResult) -> Facets:
    return Facets(result.field, result.region, result.maturity, tuple(result.transfer_modes))


def gram_codes(text: str) -> np.ndarray:
    """The distinct character bigrams of ``compact(text)`` as sorted int64 codes
    (``matcher.signals.bigram_codes``)."""
    return bigram_codes(char_bigrams(text))


def title_key(title: str) -> int:
    """A 64-bit key of the normalised title: equal for trivially re-typed titles."""
    digest = hashlib.blake2b(normalise_title(title).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def profile_columns(result: ResearchResult) -> tuple[str, str]:
    """The costly parts of a result's profile, as two strings the record store keeps.

    Segmenting a title with jieba is the costly step; storing its output with the record lets
    an index rebuild its profile table without segmenting 500k titles again.

    Returns:
        ``(terms, compacted text)``: the result's terms joined by :data:`TERM_SEPARATOR`, and
        ``compact(result_text(result))``.
    """
    terms = result_terms(result)
    return TERM_SEPARATOR.join(terms), compact(result_text(result))


@dataclass(frozen=True)
class ResultRow:
    """One result's signal inputs."""

    terms: tuple[str, ...]
    compact_text: str
    grams: np.ndarray  # gram_codes(title)
    generic_share: float
    title_key: int
    facets: Facets


def result_row(result: ResearchResult, columns: tuple[str | None, str | None] = (None, None)) -> ResultRow:
    """The signal inputs of ``result``, from its stored :func:`profile_columns` when given."""
    terms_column, compact_text = columns
    if terms_column is None or compact_text is None:
        terms_column, compact_text = profile_columns(result)
    terms = tuple(terms_column.split(TERM_SEPARATOR)) if terms_column else ()
    generic = sum(t in GENERIC_TERMS for t in terms) / len(terms) if terms else 1.0
    return ResultRow(
        terms=terms,
        compact_text=compact_text,
        grams=gram_codes(result.title),
        generic_share=float(generic),
        title_key=title_key(result.title),
        facets=facets_of(result),
    )


@dataclass(frozen=True)
class CandidateProfiles:
    """Signal inputs of one need's candidates, row ``i`` for candidate ``i``.

    Terms are ids into ``vocab`` (and ``compact_vocab``, each term compacted), flattened row
    after row with ``term_lengths``; title bigram codes likewise with ``gram_lengths``.
    """

    term_lengths: np.ndarray
    term_ids: np.ndarray
    vocab: Sequence[str]
    compact_vocab: Sequence[str]
    compact_texts: list[str]
    gram_lengths: np.ndarray
    grams: np.ndarray
    generic_share: np.ndarray
    title_keys: np.ndarray
    facets: list[Facets]

    def __len__(self) -> int:
        return len(self.compact_texts)

    def terms(self, row: int) -> list[str]:
        """The terms of candidate ``row``."""
        start = int(self.term_lengths[:row].sum())
        return [self.vocab[t] for t in self.term_ids[start : start + int(self.term_lengths[row])]]

    def subset(self, rows: Sequence[int]) -> CandidateProfiles:
        """The candidates at ``rows``, in that order."""
        rows_array = np.asarray(rows, np.int64)
        term_lengths, term_ids = csr_take(offsets_of(self.term_lengths), self.term_ids, rows_array)
        gram_lengths, grams = csr_take(offsets_of(self.gram_lengths), self.grams, rows_array)
        return CandidateProfiles(
            term_lengths=term_lengths, term_ids=term_ids, vocab=self.vocab,
            compact_vocab=self.compact_vocab, compact_texts=[self.compact_texts[r] for r in rows],
            gram_lengths=gram_lengths, grams=grams, generic_share=self.generic_share[rows_array],
            title_keys=self.title_keys[rows_array], facets=[self.facets[r] for r in rows],
        )


def profiles_of(rows: Sequence[ResultRow]) -> CandidateProfiles:
    """Gather result rows computed on the spot (training, tests, records outside an index)."""
    vocab: dict[str, int] = {}
    term_ids = [vocab.setdefault(t, len(vocab)) for row in rows for t in row.terms]
    words = list(vocab)
    return CandidateProfiles(
        term_lengths=np.array([len(r.terms) for r in rows], np.int64),
        term_ids=np.array(term_ids, np.int64),
        vocab=words,
        compact_vocab=[compact(t) for t in words],
        compact_texts=[r.compact_text for r in rows],
        gram_lengths=np.array([len(r.grams) for r in rows], np.int64),
        grams=np.concatenate([np.zeros(0, np.int64), *(r.grams for r in rows)]),
        generic_share=np.array([r.generic_share for r in rows], np.float32),
        title_keys=np.array([r.title_key for r in rows], np.int64),
        facets=[r.facets for r in rows],
    )


def offsets_of(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(n + 1,)`` start offsets of ragged rows of the given lengths, for :func:`csr_take`."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def csr_take(offsets: np.ndarray, data: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a flattened ragged array, without a Python loop.

    Args:
        offsets: ``(n + 1,)`` row ``r`` is ``data[offsets[r]:offsets[r + 1]]``.
        data: the flattened rows.
        rows: the rows to take, in order (repeats allowed).

    Returns:
        ``(lengths, flat)``: the taken rows' lengths and their values, row after row.
    """
    rows = np.asarray(rows, np.int64)
    starts = np.asarray(offsets[rows], np.int64)
    lengths = np.asarray(offsets[rows + 1], np.int64) - starts
    total = int(lengths.sum())
    if total == 0:
        return lengths, np.asarray(data[:0])
    # Position k of the output reads data[start of its row + its index within the row].
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return lengths, np.asarray(data[shift + np.arange(total)])
