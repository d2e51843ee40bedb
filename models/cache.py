"""Embedding cache keyed by (encoder fingerprint, side, text hash).

Rebuilding an index re-embeds only new or changed texts. SQLite keeps the cache a single
file that is safe to share between the CLI, the API and batch processes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.encoder import Encoder


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """A persistent map from (fingerprint, side, sha256(text)) to a float32 vector."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (fingerprint TEXT, side TEXT, key TEXT, "
            "vector BLOB, PRIMARY KEY (fingerprint, side, key))"
        )
        self._db.commit()

    def get_many(self, fingerprint: str, side: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, vector FROM embeddings WHERE fingerprint=? AND side=? "
                    f"AND key IN ({marks})",
                    [fingerprint, side, *chunk],
                ).fetchall()
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, fingerprint: str, side: str, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                [(fingerprint, side, k, np.asarray(v, np.float32).tobytes()) for k, v in items.items()],
            )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEncoder:
    """Wraps an :class:`Encoder`; encodes only the texts the cache does not hold yet."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache) -> None:
        self.inner = encoder
        self.cache = cache
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query", self.inner.encode_queries)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "document", self.inner.encode_documents)

    def _encode(
        self, texts: Sequence[str], side: str, encode: Callable[[Sequence[str]], np.ndarray]
    ) -> np.ndarray:
        keys = [text_key(text) for text in texts]
        found = self.cache.get_many(self.fingerprint, side, list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        self.hits += sum(1 for k in keys if k in found)
        self.misses += len(keys) - sum(1 for k in keys if k in found)
        if missing:
            text_of = dict(zip(keys, texts))
            vectors = encode([text_of[k] for k in missing])
            new = dict(zip(missing, vectors))
            self.cache.put_many(self.fingerprint, side, new)
            found.update(new)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out
