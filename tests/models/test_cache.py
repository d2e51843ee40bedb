from __future__ import annotations

from pathlib import Path

import numpy as np

from models.cache import CachedEncoder, EmbeddingCache
from models.fake import FakeEncoder


def test_cache_embeds_only_new_texts(tmp_path: Path) -> None:
    inner = FakeEncoder(dimension=64)
    encoder = CachedEncoder(inner, EmbeddingCache(tmp_path / "c.sqlite"))
    first = encoder.encode_documents(["甲醇制烯烃", "酸雾治理", "甲醇制烯烃"])
    assert inner.texts_encoded == 2 and encoder.misses == 3 and encoder.hits == 0
    # A new process (new cache object) reuses the stored vectors.
    again = CachedEncoder(inner, EmbeddingCache(tmp_path / "c.sqlite"))
    second = again.encode_documents(["酸雾治理", "新材料", "甲醇制烯烃"])
    assert inner.texts_encoded == 3 and again.hits == 2 and again.misses == 1
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    np.testing.assert_allclose(second[1], inner.encode_documents(["新材料"])[0])


def test_cache_is_keyed_by_fingerprint(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    small, large = FakeEncoder(dimension=32), FakeEncoder(dimension=64)
    CachedEncoder(small, cache).encode_queries(["膜分离"])
    out = CachedEncoder(large, cache).encode_queries(["膜分离"])
    assert out.shape == (1, 64) and large.texts_encoded == 1


def test_query_spans_come_from_the_cache_on_the_second_call(tmp_path: Path) -> None:
    inner = FakeEncoder(dimension=64)
    cached = CachedEncoder(inner, EmbeddingCache(tmp_path / "e.sqlite"))
    texts = ["锂离子电池正极材料。开发高安全性隔膜", "印染废水深度处理"]
    spans = [[(0, 8), (9, 16)], [(0, 4)]]
    first, first_views = cached.encode_query_spans(texts, spans)
    calls = inner.calls
    again, again_views = cached.encode_query_spans(texts, spans)
    assert inner.calls == calls  # nothing encoded the second time
    np.testing.assert_array_equal(again, first)
    for a, b in zip(again_views, first_views):
        np.testing.assert_array_equal(a, b)
    expected, expected_views = inner.encode_query_spans(texts, spans)
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_allclose(first_views[0], expected_views[0], atol=1e-6)
    # The need vector is shared with encode_queries; another span of a cached text is a miss.
    np.testing.assert_array_equal(cached.encode_queries(texts[:1]), first[:1])
    _, views = cached.encode_query_spans(texts[:1], [[(0, 4)]])
    assert inner.calls > calls
    np.testing.assert_allclose(views[0], inner.encode_queries([texts[0][0:4]]), atol=1e-6)
