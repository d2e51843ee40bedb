"""A deterministic, model-free encoder for fast tests: hashed character bigrams and Latin words.

Texts that share words get a high cosine, texts that share none get about zero, so tests can
state the expected ranking exactly without loading a neural model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from models.encoder import l2_normalise


_LATIN_WORD = re.compile(r"[a-z0-9]+")


class FakeEncoder:
    """Bag of hashed CJK character bigrams and Latin words, L2-normalised.

    No word segmentation: it would make the fake encoder as slow as the lexical index.
    """

    def __init__(self, dimension: int = 256) -> None:
        self._dimension = dimension
        self.calls = 0
        self.texts_encoded = 0

    @property
    def fingerprint(self) -> str:
        return f"fake-hash-v1/dim={self._dimension}/norm=l2"

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            features = _LATIN_WORD.findall(text.lower())
            compact = "".join(ch for ch in text if "\u4e00" <= ch <= "\u9fff")
            features += [compact[i : i + 2] for i in range(len(compact) - 1)]
            for feature in features:
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self._dimension] += sign
        return l2_normalise(out)
