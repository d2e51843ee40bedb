"""Signals of a (need, result) pair: pure functions of texts, arrays and records.

Every function here is cheap, deterministic and model-free; embeddings arrive as arrays.
The learned fusion (``models/fusion.py``) combines them, the reasons (``matcher/reasons.py``)
explain them. A signal whose input is missing (no keywords, no field, no embeddings of the
need's views) degrades to a neutral value instead of failing.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from indexes.tokenizer import tokenize
from matcher.need_analysis import KeyTerm
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.text import join_cjk

if TYPE_CHECKING:
    from matcher.profiles import CandidateProfiles


class HasFacets(Protocol):
    """A result's facets: a ``ResearchResult`` or its ``matcher.profiles.Facets``."""

    @property
    def field(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def maturity(self) -> str | None: ...
    @property
    def transfer_modes(self) -> Sequence[str]: ...

# Words that name a kind of work rather than a technology; a result made mostly of them
# ("高性能 材料 制备 工艺") matches every need a little and none well.
GENERIC_TERMS: frozenset[str] = frozenset({
    "技术", "研究", "方法", "应用", "制备", "工艺", "开发", "研发", "系统", "装置", "设备", "产业化", "关键技术", "关键",
    "高性能", "新型", "材料", "生产", "及其", "基于", "技术开发", "示范", "推广", "集成", "利用", "产品", "工程", "分析",
    "设计", "平台", "综合", "高效",
})
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_EPS = 1e-9


# ----- within-query normalisation --------------------------------------------------------


def zscore_within(values: np.ndarray) -> np.ndarray:
    """Standardise a need's candidate values (mean 0, sd 1); constant values become 0.

    Rerank quality depends on how a candidate stands among the need's other candidates,
    not on the absolute level, which drifts with the need's length and wording.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.astype(np.float32)
    sd = float(values.std())
    if sd < 1e-6:
        return np.zeros(values.shape, np.float32)
    return ((values - values.mean()) / sd).astype(np.float32)


def max_normalise(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the query's best value (BM25 magnitudes differ between queries)."""
    values = np.asarray(values, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


# ----- term statistics -------------------------------------------------------------------


@dataclass(frozen=True)
class TermStats:
    """Document frequencies of the result corpus, for IDF weights.

    Built from the lexical index's token lists so that a term's weight reflects how often
    it occurs among *results* (a need's 锂电池 is rare there, 技术 is everywhere).
    """

    document_frequency: Mapping[str, int]
    documents: int

    @classmethod
    def from_token_lists(cls, token_lists: Iterable[Sequence[str]]) -> TermStats:
        """Count, for each term, the documents that contain it."""
        counts: Counter[str] = Counter()
        documents = 0
        for tokens in token_lists:
            counts.update(set(tokens))
            documents += 1
        return cls(dict(counts), documents)

    def idf(self, term: str) -> float:
        """Smoothed IDF, ``log((N + 1) / (df + 1)) + 1``: positive, highest for unseen terms."""
        return math.log((self.documents + 1) / (self.document_frequency.get(term, 0) + 1)) + 1.0


def result_terms(result: ResearchResult) -> list[str]:
    """The distinct technical terms of a result: its title words, then its keywords.

    A title that arrives pre-segmented (``高活性 氟化锂 制备 方法``) keeps its boundaries:
    each space-separated part is tokenised on its own.
    """
    return list(_terms_of(result.title, tuple(result.keywords)))


# Segmenting the same title parts and compacting the same terms again cost more than the
# rest of a match, so these pure string functions are memoised; the functions that also see
# whole texts (a need, a result's description) keep fewer of them.
_MEMO = 200_000
_TEXT_MEMO = 16_384


@functools.lru_cache(maxsize=_MEMO)
def _part_tokens(part: str) -> tuple[str, ...]:
    # Pre-segmented titles share most of their parts (制备, 方法, 锂离子): segment each once.
    return tuple(tokenize(part))


@functools.lru_cache(maxsize=_MEMO)
def _terms_of(title: str, keywords: tuple[str, ...]) -> tuple[str, ...]:
    terms: list[str] = []
    for part in title.split():
        terms.extend(_part_tokens(part))
    terms.extend(k.strip().lower() for k in keywords if k.strip())
    return tuple(dict.fromkeys(t for t in terms if len(t) >= 2 or not t.isascii()))


@functools.lru_cache(maxsize=_TEXT_MEMO)
def compact(text: str) -> str:
    """Lower-cased text without spaces or punctuation, for substring and bigram tests."""
    return _NON_WORD.sub("", join_cjk(text).lower())


@functools.lru_cache(maxsize=_TEXT_MEMO)
def char_bigrams(text: str) -> frozenset[str]:
    """Distinct character bigrams of ``compact(text)``."""
    s = compact(text)
    return frozenset(s[i : i + 2] for i in range(len(s) - 1))


# ----- pair signals ----------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    """A weighted overlap and the terms that made it, for the reasons."""

    score: float
    matched: tuple[str, ...]


def term_overlap(need_text: str, terms: Sequence[str], stats: TermStats | None) -> Overlap:
    """IDF-weighted share of a result's terms that occur in the need's text.

    Matching is by substring of the compacted need text, because Chinese segmentation of
    the two sides disagrees (``锂离子 电池`` vs ``锂离子电池``).

    Args:
        need_text: the need's text (title and description).
        terms: the result's terms (:func:`result_terms`).
        stats: corpus statistics; without them every term weighs 1.

    Returns:
        Score in [0, 1] and the matched terms, most informative first.
    """
    if not terms:
        return Overlap(0.0, ())
    haystack = compact(need_text)
    weights = {t: stats.idf(t) if stats is not None else 1.0 for t in terms}
    matched = [t for t in terms if compact(t) and compact(t) in haystack]
    total = sum(weights.values())
    score = sum(weights[t] for t in matched) / total if total > 0 else 0.0
    return Overlap(float(score), tuple(sorted(matched, key=lambda t: -weights[t])))


def key_term_overlap(key_terms: Sequence[KeyTerm], result_text: str) -> Overlap:
    """Share of the need's key-term weight whose terms occur in the result's text.

    Args:
        key_terms: the need's key terms with TF-IDF weights (``need_analysis.key_terms``).
        result_text: the result's title, keywords and description.

    Returns:
        Score in [0, 1] and the matched key terms, heaviest first.
    """
    total = sum(t.weight for t in key_terms)
    if total <= 0:
        return Overlap(0.0, ())
    haystack = compact(result_text)
    matched = [t for t in key_terms if compact(t.term) and compact(t.term) in haystack]
    return Overlap(float(sum(t.weight for t in matched) / total), tuple(t.term for t in matched))


def bigram_coverage(need_text: str, result_text: str) -> float:
    """Share of the result's character bigrams that occur in the need's text, in [0, 1].

    Robust to segmentation and to partial terms (``氮化硼`` in ``立方氮化硼``).
    """
    result_grams = char_bigrams(result_text)
    if not result_grams:
        return 0.0
    return len(result_grams & char_bigrams(need_text)) / len(result_grams)


def title_similarity(need_title: str, result_title: str) -> float:
    """Jaccard similarity of the two titles' character bigrams, in [0, 1]."""
    a, b = char_bigrams(need_title), char_bigrams(result_title)
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def dense_views(view_vectors: np.ndarray | None, result_vectors: np.ndarray | None,
                fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each result with the need's title and with its best-matching key sentence.

    Args:
        view_vectors: ``(k, dim)`` unit vectors of the need's views, row 0 the title and the
            rest its key sentences (``need_analysis.key_sentences``).
        result_vectors: ``(n, dim)`` unit vectors of the candidates.
        fallback: ``(n,)`` cosine with the whole need, used for both when vectors are missing.

    Returns:
        ``(title_cosine, best_sentence_cosine)``, each ``(n,)``.
    """
    fallback = np.asarray(fallback, np.float32)
    if view_vectors is None or result_vectors is None or len(view_vectors) == 0:
        return fallback, fallback
    # Inner product is cosine here: both sides are L2-normalised by the encoder.
    sims = np.asarray(result_vectors, np.float32) @ np.asarray(view_vectors, np.float32).T
    return sims[:, 0], sims.max(axis=1)


def specificity(terms: Sequence[str], stats: TermStats | None) -> tuple[float, float]:
    """How specific a result is: mean IDF of its terms and the share of generic terms.

    Returns:
        ``(mean_idf, generic_share)``; ``(0, 1)`` for a result without terms.
    """
    if not terms:
        return 0.0, 1.0
    mean_idf = float(np.mean([stats.idf(t) for t in terms])) if stats is not None else 0.0
    generic = sum(t in GENERIC_TERMS for t in terms) / len(terms)
    return mean_idf, float(generic)


def _labels_agree(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    a, b = compact(a), compact(b)
    if not a or not b:
        return None
    if a in b or b in a:
        return 1.0
    ga = {a[i : i + 2] for i in range(len(a) - 1)} or {a}
    gb = {b[i : i + 2] for i in range(len(b) - 1)} or {b}
    return len(ga & gb) / len(ga | gb)


def field_agreement(need: EnterpriseNeed, result: HasFacets) -> float:
    """Agreement of the need's industry and the result's field, in [-1, 1].

    1 when one names the other (``新能源`` / ``新能源汽车``), partial credit for shared
    bigrams, -1 when both are given and share nothing, 0 when either is missing.
    """
    agree = _labels_agree(need.industry, result.field)
    if agree is None:
        return 0.0
    return 1.0 if agree >= 1.0 else (agree if agree > 0 else -1.0)


# Maturity ladder of a result, lowest first; a need states the lowest stage it can take on.
MATURITY_LEVELS: tuple[str, ...] = ("研发阶段", "小试", "中试", "产业化", "成熟应用")


def _maturity_level(value: str | None) -> int | None:
    if not value:
        return None
    for level, name in enumerate(MATURITY_LEVELS):
        if name in value or value in name:
            return level
    return None


def maturity_compatibility(need: EnterpriseNeed, result: HasFacets) -> float:
    """1 if the result is at least as mature as the need asks (``need.metadata['maturity']``),
    -1 if it is less mature, 0 when either side is missing or unrecognised."""
    asked = _maturity_level(need.metadata.get("maturity") if need.metadata else None)
    offered = _maturity_level(result.maturity)
    if asked is None or offered is None:
        return 0.0
    return 1.0 if offered >= asked else -1.0


def transfer_mode_compatibility(need: EnterpriseNeed, result: HasFacets) -> float:
    """1 if the result offers a transfer mode the need accepts (``need.metadata['transfer_modes']``,
    e.g. 技术转让, 许可, 合作开发), -1 if none, 0 when either side is missing."""
    wanted = need.metadata.get("transfer_modes") if need.metadata else None
    if isinstance(wanted, str):
        wanted = [w for w in re.split(r"[;；,，、]", wanted) if w.strip()]
    if not wanted or not result.transfer_modes:
        return 0.0
    offered = {compact(m) for m in result.transfer_modes}
    return 1.0 if any(compact(w) in offered for w in wanted) else -1.0


def region_match(need: EnterpriseNeed, result: HasFacets) -> float:
    """1 when need and result name the same region (either contains the other), else 0.

    Proximity helps a transfer but never disqualifies, so a mismatch is neutral.
    """
    agree = _labels_agree(need.region, result.region)
    return 1.0 if agree is not None and agree >= 1.0 else 0.0


# ----- all signals of one need's candidates ----------------------------------------------


@dataclass
class PairSignals:
    """Raw signals of one need's candidates (arrays aligned with the candidates), with the
    matched terms per candidate that the reasons quote."""

    values: dict[str, np.ndarray]
    matched_terms: Sequence[tuple[str, ...]]
    matched_key_terms: list[tuple[str, ...]]


SIGNAL_NAMES: tuple[str, ...] = (
    "dense", "dense_title", "dense_sentence", "lexical", "term_overlap", "key_term_overlap",
    "bigram_coverage", "title_similarity", "mean_idf", "generic_share",
    "field", "maturity", "transfer_mode", "region",
)


def result_text(result: ResearchResult) -> str:
    """Title, keywords and description of a result, for substring and bigram tests."""
    return " ".join([result.title, " ".join(result.keywords), result.description])


def compute_signals(
    need: EnterpriseNeed,
    need_text: str,
    profiles: CandidateProfiles,
    dense: np.ndarray,
    lexical: np.ndarray,
    key_terms: Sequence[KeyTerm],
    *,
    stats: TermStats | None = None,
    view_vectors: np.ndarray | None = None,
    result_vectors: np.ndarray | None = None,
) -> PairSignals:
    """Every signal of :data:`SIGNAL_NAMES` for one need's candidates.

    Bit-identical to calling :func:`term_overlap`, :func:`key_term_overlap`,
    :func:`specificity`, :func:`bigram_coverage`, :func:`title_similarity` and the record
    agreements per candidate. A batch job calls this for 10k needs with ~200 candidates
    each, so the work is arranged by what varies: the need's side once per call, each
    result's side once per result (``matcher.profiles``), each distinct term's IDF and
    substring test once per call, and the per-candidate sums in numpy.

    Args:
        need: the need record (industry, region, metadata).
        need_text: the rendered need, as encoded and BM25-scored.
        profiles: the candidates' signal inputs (``matcher.profiles``).
        dense: ``(n,)`` cosine of need and candidates.
        lexical: ``(n,)`` raw BM25 with whole-corpus statistics.
        key_terms: the need's key terms (``need_analysis.analyse_need``).
        stats: result-corpus term statistics for IDF weights (uniform weights without).
        view_vectors: ``(k, dim)`` the need's title and key sentences, encoded as queries.
        result_vectors: ``(n, dim)`` the candidates' embeddings.

    Returns:
        Raw (not yet within-need normalised) signals and the matched terms.
    """
    n = len(profiles)
    dense = np.asarray(dense, np.float32).reshape(n)
    lexical = np.asarray(lexical, np.float32).reshape(n)
    title_cos, sentence_cos = dense_views(view_vectors, result_vectors, dense)
    overlaps, mean_idfs, matched = _term_signals(profiles, compact(need_text), stats)
    key_overlaps, matched_key = _key_term_signals(profiles, key_terms)

    rows = np.repeat(np.arange(n), profiles.gram_lengths)
    lengths = profiles.gram_lengths.astype(np.float64)
    in_need = np.bincount(rows, weights=np.isin(profiles.grams, bigram_codes(char_bigrams(need_text))), minlength=n)
    coverages = np.divide(in_need, lengths, out=np.zeros(n), where=lengths > 0)
    need_title = bigram_codes(char_bigrams(need.title))
    shared = np.bincount(rows, weights=np.isin(profiles.grams, need_title), minlength=n)
    union = len(need_title) + lengths - shared
    title_sims = np.divide(shared, union, out=np.zeros(n), where=(lengths > 0) & (len(need_title) > 0))
    values = {
        "dense": dense,
        "dense_title": np.asarray(title_cos, np.float32),
        "dense_sentence": np.asarray(sentence_cos, np.float32),
        "lexical": lexical,
        "term_overlap": overlaps.astype(np.float32),
        "key_term_overlap": key_overlaps.astype(np.float32),
        "bigram_coverage": coverages.astype(np.float32),
        "title_similarity": title_sims.astype(np.float32),
        "mean_idf": mean_idfs.astype(np.float32),
        "generic_share": np.asarray(profiles.generic_share, np.float32),
        **_record_signals(need, profiles.facets),
    }
    return PairSignals(values, matched, matched_key)


# A character bigram as one integer: code points are below 2**21.
_GRAM_SHIFT = 21


def bigram_codes(grams: frozenset[str]) -> np.ndarray:
    """Bigrams (:func:`char_bigrams`) as sorted int64 codes; equal codes mean equal bigrams,
    so set sizes and intersections computed on codes are those of the bigram sets."""
    return np.array(sorted((ord(g[0]) << _GRAM_SHIFT) | ord(g[1]) for g in grams), np.int64)


class MatchedTerms(Sequence[tuple[str, ...]]):
    """Each candidate's terms found in the need, most informative first, built on access:
    only the shown matches are explained."""

    def __init__(self, profiles: CandidateProfiles, hits: np.ndarray, weights: np.ndarray) -> None:
        self._profiles, self._hits, self._weights = profiles, hits, weights
        self._starts = np.concatenate([[0], np.cumsum(profiles.term_lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self._profiles)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        a, b = int(self._starts[row]), int(self._starts[row + 1])
        found = [(self._profiles.vocab[t], w) for t, h, w in
                 zip(self._profiles.term_ids[a:b], self._hits[a:b], self._weights[a:b]) if h]
        return tuple(t for t, _ in sorted(found, key=lambda tw: -tw[1]))


def _term_signals(
    profiles: CandidateProfiles, haystack: str, stats: TermStats | None
) -> tuple[np.ndarray, np.ndarray, MatchedTerms]:
    """IDF-weighted term overlap, mean IDF and the matched terms of each candidate."""
    n = len(profiles)
    lengths = profiles.term_lengths
    # One IDF and one substring test per distinct term: candidates share most of their terms.
    distinct, inverse = np.unique(profiles.term_ids, return_inverse=True)
    vocab, compact_vocab = profiles.vocab, profiles.compact_vocab
    distinct_weights = np.fromiter(
        (1.0 if stats is None else stats.idf(vocab[t]) for t in distinct), np.float64, len(distinct))
    distinct_hits = np.fromiter(
        (bool(compact_vocab[t]) and compact_vocab[t] in haystack for t in distinct), bool, len(distinct))
    weights = distinct_weights[inverse]
    hits = distinct_hits[inverse]
    rows = np.repeat(np.arange(n), lengths)
    # bincount adds in input order, as the per-pair definition's sum() does: bit-identical.
    total = np.bincount(rows, weights=weights, minlength=n)
    hit_total = np.bincount(rows, weights=np.where(hits, weights, 0.0), minlength=n)
    overlaps = np.divide(hit_total, total, out=np.zeros(n), where=total > 0)
    mean_idfs = np.zeros(n)
    if stats is not None and len(weights):
        has = lengths > 0
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[has]
        # reduceat sums each run the way np.mean does (pairwise), so it equals specificity().
        mean_idfs[has] = np.add.reduceat(weights, starts) / lengths[has]
    return overlaps, mean_idfs, MatchedTerms(profiles, hits, weights)


def _key_term_signals(
    profiles: CandidateProfiles, key_terms: Sequence[KeyTerm]
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Share of the need's key-term weight found in each candidate, and the terms found."""
    n = len(profiles)
    total = sum(t.weight for t in key_terms)
    if total <= 0 or n == 0:
        return np.zeros(n), [() for _ in range(n)]
    # All candidate texts in one string: each key term is located with a few str.find calls
    # instead of one substring test per candidate.
    texts = profiles.compact_texts
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    joined = "\x00".join(texts)
    found: list[list[KeyTerm]] = [[] for _ in range(n)]
    for term in key_terms:
        needle = compact(term.term)
        if not needle:
            continue
        at = joined.find(needle)
        while at >= 0:
            row = int(np.searchsorted(starts, at, side="right")) - 1
            found[row].append(term)
            # Next candidate: one hit per candidate and term.
            nxt = starts[row + 1] if row + 1 < n else len(joined)
            at = joined.find(needle, int(nxt))
    # Key terms keep the need's order within a candidate, as the per-pair definition does.
    order = {id(t): k for k, t in enumerate(key_terms)}
    overlaps = np.zeros(n)
    matched: list[tuple[str, ...]] = []
    for row, terms in enumerate(found):
        if len(terms) > 1:
            terms.sort(key=lambda t: order[id(t)])
        overlaps[row] = sum(t.weight for t in terms) / total
        matched.append(tuple(t.term for t in terms))
    return overlaps, matched


def _record_signals(need: EnterpriseNeed, results: Sequence[HasFacets]) -> dict[str, np.ndarray]:
    """Field, maturity, transfer-mode and region agreement; zero where the need is silent."""
    n = len(results)
    meta = need.metadata or {}
    checks = {
        "field": (need.industry, field_agreement),
        "maturity": (meta.get("maturity"), maturity_compatibility),
        "transfer_mode": (meta.get("transfer_modes"), transfer_mode_compatibility),
        "region": (need.region, region_match),
    }
    return {
        name: (np.array([check(need, r) for r in results], np.float32) if asked else np.zeros(n, np.float32))
        for name, (asked, check) in checks.items()
    }


def adapted_similarity(need_vector: np.ndarray | None, result_vectors: np.ndarray | None,
                       adapter: np.ndarray | None, fallback: np.ndarray) -> np.ndarray:
    """Cosine of the results with the need vector mapped by a learned adapter.

    The adapter ``A`` (``dim × dim``) is fitted on expert labels (``models.train_fusion``);
    the need vector becomes ``q + A q``, re-normalised, so the result index is untouched.

    Args:
        need_vector: ``(dim,)`` the need's unit vector.
        result_vectors: ``(n, dim)`` the candidates' unit vectors.
        adapter: ``(dim, dim)`` or None.
        fallback: ``(n,)`` returned when any input is missing (the plain cosine).
    """
    if need_vector is None or result_vectors is None or adapter is None:
        return np.asarray(fallback, np.float32)
    if np.shape(adapter) != (len(need_vector), len(need_vector)):
        return np.asarray(fallback, np.float32)  # adapter of another encoder: do not apply
    q = np.asarray(need_vector, np.float32)
    q = q + np.asarray(adapter, np.float32) @ q
    q = q / max(float(np.linalg.norm(q)), _EPS)
    return (np.asarray(result_vectors, np.float32) @ q).astype(np.float32)
