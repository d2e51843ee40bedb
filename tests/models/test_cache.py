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
