"""The lazy encoder loads its model only when a text misses the cache, and only the model
its record describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.runtime import make_encoder
from matcher.settings import Settings
from models.cache import CachedEncoder
from models.fake import FakeEncoder
from models.lazy import RECORD_FILE, EncoderChangedError, LazyEncoder, recall, remember


def test_remember_then_recall(tmp_path: Path) -> None:
    encoder = FakeEncoder(dimension=64)
    assert recall(tmp_path, "k") is None
    remember(tmp_path, "k", encoder)
    remember(tmp_path, "other", FakeEncoder(dimension=32))
    assert recall(tmp_path, "k") == (encoder.fingerprint, 64)
    assert recall(tmp_path, "other") == (FakeEncoder(dimension=32).fingerprint, 32)
    (tmp_path / RECORD_FILE).write_text("{torn", encoding="utf-8")
    assert recall(tmp_path, "k") is None  # a torn record means: load in full


def test_the_model_loads_on_the_first_encode_only() -> None:
    calls: list[int] = []

    def load() -> FakeEncoder:
        calls.append(1)
        return FakeEncoder(dimension=64)

    lazy = LazyEncoder(load, FakeEncoder(dimension=64).fingerprint, 64)
    assert lazy.dimension == 64 and not lazy.loaded and calls == []
    vectors = lazy.encode_queries(["锂电池正极材料"])
    np.testing.assert_array_equal(vectors, FakeEncoder(dimension=64).encode_queries(["锂电池正极材料"]))
    lazy.encode_documents(["印染废水"])
    assert lazy.loaded and calls == [1]


def test_a_model_that_changed_since_its_record_is_refused() -> None:
    lazy = LazyEncoder(lambda: FakeEncoder(dimension=64), "some-other-model/dim=64", 64)
    with pytest.raises(EncoderChangedError, match="some-other-model"):
        lazy.encode_queries(["x"])


def test_make_encoder_is_lazy_once_the_configuration_is_on_record(tmp_path: Path) -> None:
    settings = Settings(backend="torch", cache_dir=tmp_path)
    eager = make_encoder(settings)  # loads m3e-small and records its fingerprint
    assert isinstance(eager, CachedEncoder) and not isinstance(eager.inner, LazyEncoder)
    cached_text, new_text = "防爆锂离子电池的研发", "高韧性立方氮化硼单晶的研制"
    expected = eager.encode_queries([cached_text, new_text])
    lazy = make_encoder(settings, lazy=True)
    assert isinstance(lazy, CachedEncoder) and isinstance(lazy.inner, LazyEncoder)
    assert lazy.fingerprint == eager.fingerprint and lazy.dimension == eager.dimension
    # Both texts are in the cache now (the eager call stored them): no model load.
    np.testing.assert_array_equal(lazy.encode_queries([cached_text, new_text]), expected)
    assert not lazy.inner.loaded
    fresh = "印染废水深度处理与回用"
    got = lazy.encode_queries([fresh])
    assert lazy.inner.loaded
    np.testing.assert_allclose(got, eager.inner.encode_queries([fresh]), atol=1e-6)
    # Without a record (another cache directory), lazy loads at once.
    other = make_encoder(Settings(backend="torch", cache_dir=tmp_path / "other"), lazy=True)
    assert isinstance(other, CachedEncoder) and not isinstance(other.inner, LazyEncoder)
