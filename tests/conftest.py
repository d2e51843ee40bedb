"""Shared fixtures: a fast deterministic encoder, the real m3e-small (loaded once) and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.fake import FakeEncoder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_DATA = REPO / "data" / "demo"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder(dimension=256)


@pytest.fixture(scope="session")
def m3e_encoder():  # type: ignore[no-untyped-def]
    """The real default model, loaded once per test session, without any cache."""
    from models.sentence_transformer import SentenceTransformerEncoder

    return SentenceTransformerEncoder()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip where it is absent (e.g. a fresh clone)."""
    if not (SHARED_DATA / "bench").is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must never read or pollute the user's embedding cache.
    monkeypatch.setenv("TECHMATCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
