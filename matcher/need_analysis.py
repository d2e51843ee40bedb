"""What a need is really asking for: its sections, key sentences and key technical terms.

Enterprise needs are long and mix the technical ask (需求内容, 预期目标) with company
background (现有工作基础: staff, revenue, buildings). Matching against the background drags
in unrelated results, so the scorer reads the need through the views built here: the title,
the sentences of the technical sections, and TF-IDF key terms of the title and those sections.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass, field

import jieba
import jieba.analyse

from indexes.tokenizer import STOPWORDS
from matcher.records import EnterpriseNeed

jieba.setLogLevel(logging.WARNING)
_jieba_lock = threading.Lock()  # jieba.posseg's tag table loads on first use

# Section headings as posted on tech-transfer platforms, mapped to a canonical name. Order
# matters only for readability; a heading is recognised anywhere before a colon.
SECTION_ALIASES: dict[str, str] = {
    "需求内容及合作目标": "需求内容",
    "需求内容": "需求内容",
    "主要内容": "需求内容",
    "研究内容": "需求内容",
    "技术难题": "需求内容",
    "技术需求": "需求内容",
    "预期目标": "预期目标",
    "主要目标": "预期目标",
    "合作目标": "预期目标",
    "现有工作基础": "现有工作基础",
    "工作基础": "现有工作基础",
    "现有基础": "现有工作基础",
}
# The sections that describe the technology itself; 现有工作基础 is company background.
TECHNICAL_SECTIONS: tuple[str, ...] = ("需求内容", "预期目标")
_HEADING = re.compile(
    r"(?:[一二三四五六七八九十\d]+[、.．]\s*)?("
    + "|".join(sorted(SECTION_ALIASES, key=len, reverse=True))
    + r")\s*[：:]"
)
_SENTENCE_SPLIT = re.compile(r"[。；;！？!?\n]+|\s{2,}")
MIN_SENTENCE_CHARS = 6
# Key terms must look technical: jieba part-of-speech tags for nouns, verbal nouns and
# English words; plain verbs such as 提高 or 开发 describe every need and match everything.
_KEY_TERM_POS: tuple[str, ...] = ("n", "nz", "nt", "nr", "ns", "vn", "eng", "an", "l", "i")


@dataclass(frozen=True)
class KeyTerm:
    """A technical term of a need with its TF-IDF weight (jieba's IDF table)."""

    term: str
    weight: float


@dataclass(frozen=True)
class NeedAnalysis:
    """The technical points of a need, as used by the scorer and shown to brokers."""

    key_terms: list[KeyTerm] = field(default_factory=list)
    key_sentences: list[str] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def technical_text(self) -> str:
        """Title and technical sections joined: the text key terms are drawn from."""
        return "。".join(self.key_sentences)


def split_sections(text: str) -> dict[str, str]:
    """Split a structured need into its canonical sections.

    Args:
        text: a need's description, e.g. ``需求内容：… 预期目标：… 现有工作基础：…``.

    Returns:
        Canonical section name (需求内容 / 预期目标 / 现有工作基础) → its text, stripped. A
        need without headings yields ``{}``; text before the first heading is dropped only
        when there is a heading. Repeated sections are concatenated.
    """
    matches = list(_HEADING.finditer(text))
    sections: dict[str, str] = {}
    for n, match in enumerate(matches):
        end = matches[n + 1].start() if n + 1 < len(matches) else len(text)
        name = SECTION_ALIASES[match.group(1)]
        body = text[match.end() : end].strip()
        if body:
            sections[name] = f"{sections[name]}\n{body}" if name in sections else body
    return sections


def split_sentences(text: str, min_chars: int = MIN_SENTENCE_CHARS) -> list[str]:
    """Sentences and list items of ``text`` with at least ``min_chars`` characters."""
    parts = (part.strip(" \t，,、：:") for part in _SENTENCE_SPLIT.split(text))
    return [part for part in parts if len(part) >= min_chars]


def technical_body(need: EnterpriseNeed) -> str:
    """The technical part of a need's description: its 需求内容 and 预期目标 sections when
    the need is structured, else the whole description."""
    sections = split_sections(need.description)
    body = "\n".join(sections[name] for name in TECHNICAL_SECTIONS if name in sections)
    return body or need.description


def key_sentences(need: EnterpriseNeed, max_sentences: int = 12) -> list[str]:
    """The title followed by the first sentences of the technical sections.

    Args:
        need: the need.
        max_sentences: cap on the number returned (title included), to bound encoding cost.
    """
    sentences = [need.title, *split_sentences(technical_body(need))]
    return list(dict.fromkeys(sentences))[:max_sentences]


def key_terms(text: str, top_k: int = 20) -> list[KeyTerm]:
    """The ``top_k`` TF-IDF key terms of ``text`` (jieba.analyse's IDF table), technical
    parts of speech only.

    Stopwords, single characters and pure numbers are dropped. Weights are jieba's TF-IDF
    scores, highest first.
    """
    return list(_key_terms(text, top_k))


# POS tags come from jieba's dictionary (the tag each word carries in dict.txt); a word the
# dictionary lacks counts when it is an English word (CBN, PLC) and not otherwise. jieba's
# posseg would tag such words with a second HMM pass, which cost 4x the whole extraction
# (3.3 vs 0.8 ms per CCF need) for top-20 term lists that agree at Jaccard 0.90.
_ENGLISH = re.compile(r"[a-z0-9]*[a-z][a-z0-9]*", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _word_tags() -> dict[str, str]:
    with _jieba_lock:
        import jieba.posseg

        list(jieba.posseg.cut("初始化"))  # loads the tag table once
        return jieba.posseg.dt.word_tag_tab


def _tag(word: str, tags: dict[str, str]) -> str:
    tag = tags.get(word)
    if tag is not None:
        return tag
    return "eng" if _ENGLISH.fullmatch(word) else "x"


# A need matched again (a re-run batch, a retried request) reuses its terms.
@functools.lru_cache(maxsize=4096)
def _key_terms(text: str, top_k: int) -> tuple[KeyTerm, ...]:
    if not text.strip():
        return ()
    tags, tfidf = _word_tags(), jieba.analyse.default_tfidf
    allowed = frozenset(_KEY_TERM_POS)
    # jieba.analyse's TF-IDF (term frequency × its bundled IDF table), over tagged words.
    freq: dict[str, float] = {}
    for word in jieba.cut(text):
        if _tag(word, tags) not in allowed or len(word.strip()) < 2 or word.lower() in tfidf.stop_words:
            continue
        freq[word] = freq.get(word, 0.0) + 1.0
    total = sum(freq.values())
    weighted = sorted(((w, n * tfidf.idf_freq.get(w, tfidf.median_idf) / total) for w, n in freq.items()),
                      key=lambda wn: wn[1], reverse=True)
    terms: list[KeyTerm] = []
    for term, weight in weighted:
        term = term.strip().lower()
        if len(term) < 2 or term in STOPWORDS or term.isdigit():
            continue
        terms.append(KeyTerm(term, float(weight)))
        if len(terms) == top_k:
            break
    return tuple(terms)


def analyse_need(need: EnterpriseNeed, top_k: int = 20) -> NeedAnalysis:
    """Key terms, key sentences and sections of a need.

    Key terms come from the title and the technical sections, never from the company
    background, and the need's own ``keywords`` are put first with the top weight.
    """
    sentences = key_sentences(need)
    terms = key_terms("。".join(sentences), top_k)
    if need.keywords:
        top = max((t.weight for t in terms), default=1.0)
        given = [KeyTerm(k.lower(), top) for k in need.keywords if k.strip()]
        seen = {t.term for t in given}
        terms = (given + [t for t in terms if t.term not in seen])[:top_k]
    return NeedAnalysis(key_terms=terms, key_sentences=sentences, sections=split_sections(need.description))
