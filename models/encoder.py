"""The encoder abstraction: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Anything that embeds queries (needs) and documents (results) into one vector space.

    Queries and documents are separate calls because a model may prompt or truncate them
    differently; both return float32 arrays of shape ``(len(texts), dimension)`` with unit
    L2 norm, so that inner product equals cosine similarity downstream.
    """

    @property
    def fingerprint(self) -> str:
        """Identifies the vector space: model, dimension, normalisation, quantisation."""
        ...

    @property
    def dimension(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-normalise to unit length; all-zero rows stay zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def fingerprint_of(model_id: str, dimension: int, max_seq_length: int, docs: str | None = None) -> str:
    """The encoder fingerprint every backend writes the same way.

    ``docs`` names how documents are encoded when it differs from the queries (e.g.
    ``int8-dynamic``); two encoders whose vectors differ must never share a fingerprint.
    """
    return f"{model_id}/dim={dimension}/norm=l2/max_seq={max_seq_length}" + (f"/docs={docs}" if docs else "")
