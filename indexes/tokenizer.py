"""Chinese-aware tokenisation for the lexical index: jieba words, lower-cased, stopwords dropped."""

from __future__ import annotations

import logging
import re
import threading

import jieba

jieba.setLogLevel(logging.WARNING)
_init_lock = threading.Lock()
_initialised = False

# Function words and boilerplate of tech-transfer prose that carry no technical meaning;
# kept short on purpose, since BM25's IDF already discounts frequent words.
STOPWORDS: frozenset[str] = frozenset(
    """的 了 和 与 及 以及 或 等 在 对 为 是 将 把 被 由 从 于 其 之 并 而 且 也 就 都 又 有 无 个 这 那
    该 此 本 各 每 中 上 下 内 外 通过 进行 可以 能够 需要 实现 提高 提升 一种 一个 我们 公司 企业 项目
    目前 现有 相关 问题 要求 主要 包括 具有 达到 以上 以下 方面 情况 工作 基础 需求 内容 预期 目标
    a an the of and or for to in on with by is are""".split()
)
_TOKEN_OK = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)


def _ensure_initialised() -> None:
    # jieba builds its prefix dictionary lazily and not thread-safely; do it once, under a lock.
    global _initialised
    if not _initialised:
        with _init_lock:
            if not _initialised:
                jieba.initialize()
                _initialised = True


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-cased jieba words without punctuation or stopwords.

    Args:
        text: any Chinese, English or mixed text.

    Returns:
        The content words in order of appearance (repeats kept, as BM25 counts them).
    """
    _ensure_initialised()
    words: list[str] = []
    for word in jieba.lcut(text.lower()):
        word = word.strip()
        if word and word not in STOPWORDS and _TOKEN_OK.search(word):
            words.append(word)
    return words
