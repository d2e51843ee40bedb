"""Short Chinese reasons for a match, built from the signals that ranked it.

A reason names only terms that really occur in both texts, and carries the character spans
of each term in the need and in the result so a UI can mark them, e.g.::

    关键词重合: 锂电池、正极材料; 语义相似度 0.82; 领域一致: 新能源
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from matcher.records import EnterpriseNeed, ResearchResult
from matcher.signals import GENERIC_TERMS

MAX_TERMS = 4
# A cosine this high between a need and a pre-segmented title is unusual for m3e-small
# (candidates' mean is about 0.68 on CCF); below it the similarity is not worth quoting first.
NOTABLE_COSINE = 0.75


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is an occurrence of ``term`` (whitespace inside it allowed)."""

    term: str
    start: int
    end: int


@dataclass(frozen=True)
class Explanation:
    """Reasons of one match and the marked spans of its shared terms."""

    reasons: list[str]
    terms: list[str] = field(default_factory=list)
    need_spans: list[Span] = field(default_factory=list)
    result_spans: list[Span] = field(default_factory=list)


@functools.lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern[str]:
    # Pre-segmented titles put spaces inside terms (锂离子 电池); allow them between characters.
    chars = [re.escape(ch) for ch in term if not ch.isspace()]
    return re.compile(r"\s*".join(chars), re.IGNORECASE)


def find_spans(text: str, terms: Iterable[str]) -> list[Span]:
    """Every occurrence of each term in ``text``, sorted by position, overlaps dropped.

    Args:
        text: the text to mark.
        terms: the terms to look for (case-insensitive, whitespace inside a match allowed).
    """
    spans: list[Span] = []
    for term in terms:
        if not term.strip():
            continue
        spans.extend(Span(term, m.start(), m.end()) for m in _term_pattern(term).finditer(text))
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[Span] = []
    for span in spans:
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def mark(text: str, spans: Sequence[Span], left: str = "【", right: str = "】") -> str:
    """``text`` with each span wrapped in ``left``/``right`` (for plain-text displays)."""
    out, pos = [], 0
    for span in spans:
        out += [text[pos : span.start], left, text[span.start : span.end], right]
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def shared_terms(need_text: str, result_text: str, candidates: Iterable[str]) -> list[str]:
    """The candidate terms that occur in both texts, in the given order, without a term
    that is part of an already kept longer one (锂电池 hides 电池)."""
    kept: list[str] = []
    for term in sorted(dict.fromkeys(c for c in candidates if c.strip()), key=len, reverse=True):
        pattern = _term_pattern(term)
        if pattern.search(need_text) and pattern.search(result_text) and not any(term in k for k in kept):
            kept.append(term)
    order = {t: n for n, t in enumerate(dict.fromkeys(candidates))}
    return sorted(kept, key=lambda t: order[t])


def explain(
    need: EnterpriseNeed,
    need_text: str,
    result: ResearchResult,
    signals: Mapping[str, float],
    candidate_terms: Sequence[str],
    contributions: Mapping[str, float] | None = None,
) -> Explanation:
    """Reasons for one (need, result) match.

    Args:
        need: the need.
        need_text: the need text the terms are looked up in (title and description).
        result: the matched result.
        signals: this pair's raw signals (``dense``, ``title_similarity``, ``field``, …).
        candidate_terms: terms the overlap signals matched, most telling first; only those
            found in both texts are named.
        contributions: optional per-signal contribution to the fused score; signals that
            pulled the score down are not offered as reasons.

    Returns:
        The reasons (at least one) and the spans of the shared terms in both texts.
    """
    result_text = " ".join([result.title, " ".join(result.keywords), result.description])
    # A broker learns nothing from 方法 or 多: name only specific terms.
    telling = [t for t in candidate_terms if len(t.strip()) >= 2 and t not in GENERIC_TERMS]
    terms = shared_terms(need_text, result_text, telling)[:MAX_TERMS]
    helped = (lambda name: contributions is None or contributions.get(name, 0.0) >= 0.0)
    parts: list[tuple[float, str]] = []
    if terms:
        parts.append((3.0, f"关键词重合: {'、'.join(terms)}"))
    dense = signals.get("dense")
    if dense is not None:
        parts.append((2.0 if dense >= NOTABLE_COSINE else 0.5, f"语义相似度 {dense:.2f}"))
    if signals.get("title_similarity", 0.0) >= 0.3 and helped("z:title_similarity"):
        parts.append((1.5, "标题相近"))
    if signals.get("field", 0.0) > 0 and result.field:
        parts.append((2.5, f"领域一致: {result.field}"))
    if signals.get("maturity", 0.0) > 0 and result.maturity:
        parts.append((1.0, f"成熟度符合: {result.maturity}"))
    if signals.get("transfer_mode", 0.0) > 0 and result.transfer_modes:
        parts.append((1.0, f"转化方式匹配: {'、'.join(result.transfer_modes[:2])}"))
    if signals.get("region", 0.0) > 0 and result.region:
        parts.append((0.5, f"同一地区: {result.region}"))
    parts.sort(key=lambda p: -p[0])
    reasons = [text for _, text in parts] or ["仅语义相近"]
    return Explanation(
        reasons=reasons,
        terms=terms,
        need_spans=find_spans(need_text, terms),
        result_spans=find_spans(result_text, terms),
    )


def reason_line(explanation: Explanation) -> str:
    """The reasons joined into one line: ``关键词重合: …; 语义相似度 0.82``."""
    return "; ".join(explanation.reasons)
