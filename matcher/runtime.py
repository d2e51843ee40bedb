"""Wiring from settings to live objects, shared by the CLI, the API, batch jobs and eval."""

from __future__ import annotations

from matcher.settings import Settings
from models.cache import CachedEncoder, EmbeddingCache
from models.encoder import Encoder
from models.sentence_transformer import load_encoder


def make_encoder(settings: Settings, use_cache: bool | None = None) -> Encoder:
    """The configured encoder, behind the embedding cache unless caching is off."""
    encoder = load_encoder(
        settings.model,
        quantize=settings.quantize,
        batch_size=settings.batch_size,
        backend=settings.backend,
        onnx_cache_dir=settings.cache_dir / "onnx",
    )
    if settings.use_cache if use_cache is None else use_cache:
        return CachedEncoder(encoder, EmbeddingCache(settings.cache_dir / "embeddings.sqlite"))
    return encoder
