from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexes.lexical import LexicalIndex
from indexes.tokenizer import tokenize

DOCS = {
    "a": "锂离子电池正极材料的包覆改性",
    "b": "锂电池负极材料硅碳复合",
    "c": "印染废水的高级氧化处理",
    "d": "磺化生产线酸雾的吸收与治理",
    "e": "电池回收中的湿法冶金",
}


def _reference_bm25(query: list[str], docs: dict[str, list[str]], k1: float, b: float) -> dict[str, float]:
    """Lucene-variant BM25 (no (k1 + 1) factor, as Lucene 8+), written independently of bm25s."""
    n = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n
    df = Counter(word for tokens in docs.values() for word in set(tokens))
    scores = {}
    for doc_id, tokens in docs.items():
        tf = Counter(tokens)
        score = 0.0
        for word in query:
            if word not in df:
                continue
            idf = math.log(1 + (n - df[word] + 0.5) / (df[word] + 0.5))
            f = tf[word]
            score += idf * f / (f + k1 * (1 - b + b * len(tokens) / avgdl)) if f else 0.0
        scores[doc_id] = score
    return scores


def test_tokenize_drops_punctuation_and_stopwords() -> None:
    words = tokenize("我们需要降低磺化生产线的酸雾，提高效率！")
    assert "，" not in words and "的" not in words and "我们" not in words
    assert "酸雾" in words and "磺化" in words


def test_bm25_matches_independent_implementation() -> None:
    index = LexicalIndex(k1=1.2, b=0.75)
    index.add(list(DOCS), list(DOCS.values()))
    query = "锂电池正极材料改性"
    scores = index.scores(query)
    reference = _reference_bm25(tokenize(query), {k: tokenize(v) for k, v in DOCS.items()}, 1.2, 0.75)
    assert dict(zip(scores.order, scores.values.tolist())) == pytest.approx(reference, rel=1e-5)
    assert scores.for_ids(["c", "a"]).tolist() == pytest.approx([reference["c"], reference["a"]], rel=1e-5)
    hits = index.search([query], 3)[0]
    assert hits[0][0] == "a"
    assert all(doc in {"a", "b", "e"} for doc, _ in hits)


def test_remove_updates_statistics_and_results() -> None:
    index = LexicalIndex()
    index.add(list(DOCS), list(DOCS.values()))
    index.remove(["a"])
    assert len(index) == 4
    assert all(doc != "a" for doc, _ in index.search(["锂离子电池正极材料"], 5)[0])
    np.testing.assert_allclose(index.scores_for("酸雾治理", ["d", "zzz"])[1:], [0.0])
    assert index.scores_for("酸雾治理", ["d"])[0] > 0


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = LexicalIndex()
    index.add(list(DOCS), list(DOCS.values()))
    info = index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path, info)
    for query in ["电池材料", "废水处理", "酸雾"]:
        assert loaded.search([query], 5) == index.search([query], 5)
