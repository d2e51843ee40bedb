"""Wiring from settings to live objects, shared by the CLI, the API, batch jobs and eval."""

from __future__ import annotations

import functools
import json

from matcher.settings import Settings
from models.cache import CachedEncoder, EmbeddingCache
from models.encoder import Encoder
from models.lazy import LazyEncoder, recall, remember
from models.sentence_transformer import load_encoder, model_id


def make_encoder(settings: Settings, use_cache: bool | None = None, lazy: bool = False) -> Encoder:
    """The configured encoder, behind the embedding cache unless caching is off.

    Args:
        settings: model, backend, quantisation, cache directory.
        use_cache: override ``settings.use_cache``.
        lazy: load the model only when a text misses the cache (batch jobs over embedded
            needs), when this configuration's fingerprint is on record from an earlier full
            load; otherwise it is loaded now, as without ``lazy``.
    """
    cached = settings.use_cache if use_cache is None else use_cache
    load = functools.partial(
        load_encoder,
        settings.model,
        quantize=settings.quantize,
        batch_size=settings.batch_size,
        backend=settings.backend,
        onnx_cache_dir=settings.cache_dir / "onnx",
    )
    key = json.dumps([model_id(settings.model), settings.backend, settings.quantize])
    known = recall(settings.cache_dir, key) if lazy and cached else None
    encoder: Encoder
    if known is not None:
        encoder = LazyEncoder(load, *known)
    else:
        encoder = load()
        remember(settings.cache_dir, key, encoder)
    if cached:
        return CachedEncoder(encoder, EmbeddingCache(settings.cache_dir / "embeddings.sqlite"))
    return encoder
