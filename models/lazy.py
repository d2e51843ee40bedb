"""An encoder that loads its model on the first encode, for jobs whose texts are cached.

A nightly batch job re-matches a needs library whose embeddings are already in the
embedding cache; loading the model anyway costs each worker process ~440 MB (torch) and
seconds of start-up. The fingerprint and dimension a job needs before it encodes anything
(to open the index, to key the cache) come from a small record written the last time the
same configuration was loaded in full (``<cache_dir>/encoders.json``).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.encoder import Encoder

RECORD_FILE = "encoders.json"


class EncoderChangedError(RuntimeError):
    """The model loaded on first use is not the one its record described."""


def remember(cache_dir: Path, key: str, encoder: Encoder) -> None:
    """Record ``encoder``'s fingerprint and dimension under ``key`` (atomic replace)."""
    records = _read(cache_dir)
    entry = {"fingerprint": encoder.fingerprint, "dimension": encoder.dimension}
    if records.get(key) == entry:
        return
    records[key] = entry
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".encoders-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=1, sort_keys=True)
    os.replace(tmp, cache_dir / RECORD_FILE)


def recall(cache_dir: Path, key: str) -> tuple[str, int] | None:
    """The recorded ``(fingerprint, dimension)`` for ``key``, if any."""
    entry = _read(cache_dir).get(key)
    if not isinstance(entry, dict):
        return None
    return str(entry["fingerprint"]), int(entry["dimension"])


def _read(cache_dir: Path) -> dict[str, dict[str, object]]:
    try:
        value = json.loads((cache_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or torn: the caller loads the model in full and rewrites it
    return value if isinstance(value, dict) else {}


class LazyEncoder:
    """:class:`models.encoder.Encoder` whose model is built by ``load`` on the first encode.

    Raises (on that first encode):
        EncoderChangedError: the loaded model's fingerprint is not the recorded one.
    """

    def __init__(self, load: Callable[[], Encoder], fingerprint: str, dimension: int) -> None:
        self._load = load
        self._fingerprint = fingerprint
        self._dimension = dimension
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._model().encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._model().encode_documents(texts)

    def _model(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                encoder = self._load()
                if encoder.fingerprint != self._fingerprint:
                    raise EncoderChangedError(
                        f"the configured model now loads as {encoder.fingerprint}, but it was "
                        f"recorded as {self._fingerprint}; remove {RECORD_FILE} from the cache "
                        "directory and run again"
                    )
                self._encoder = encoder
            return self._encoder
