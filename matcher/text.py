"""Render records to the text the encoder and the lexical index see.

Truncation policy: m3e-small reads at most 512 tokens and its tokenizer makes about one
token per Chinese character, so a rendering is capped at ``MAX_RENDER_CHARS`` characters.
The title is always kept whole; the description is cut at the end, since tech-transfer
texts put the substance (需求内容, 摘要) first and boilerplate (company history) last.
"""

from __future__ import annotations

import re

from matcher.records import EnterpriseNeed, ResearchResult

MAX_RENDER_CHARS = 510
# Whitespace next to a Chinese character is a segmentation artefact (e.g. ``重金属 X射线``);
# between two Latin words it is meaningful and stays.
_CJK_SPACE = re.compile(r"(?<=[\u4e00-\u9fff])\s+|\s+(?=[\u4e00-\u9fff])")
_WHITESPACE = re.compile(r"\s+")


def join_cjk(text: str) -> str:
    """Drop spaces next to Chinese characters (pre-segmented titles such as ``氟化锂 制备 方法``)."""
    return _WHITESPACE.sub(" ", _CJK_SPACE.sub("", text)).strip()


def _render(title: str, description: str, limit: int) -> str:
    title = join_cjk(title)
    description = _WHITESPACE.sub(" ", description).strip()
    if not description:
        return title[:limit]
    text = f"{title}。{description}"
    return text[: max(limit, len(title))]


def render_need(need: EnterpriseNeed, limit: int = MAX_RENDER_CHARS) -> str:
    """The query text of a need: ``title。description``, truncated to ``limit`` characters."""
    return _render(need.title, need.description, limit)


def render_result(result: ResearchResult, limit: int = MAX_RENDER_CHARS) -> str:
    """The document text of a result: ``title。description`` then its keywords, truncated."""
    description = result.description
    if result.keywords:
        description = f"{description} 关键词：{'、'.join(result.keywords)}".strip()
    return _render(result.title, description, limit)
