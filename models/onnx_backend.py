"""ONNX Runtime backend: the sentence-transformers model exported once, served by ORT.

Why: torch dynamic int8 made document encoding only ~1.6x faster than plain fp32
``SentenceTransformer.encode`` on this CPU; ONNX Runtime with int8 weights (per-channel,
signed, so the u8 x s8 VNNI kernels run) in small token-length-sorted batches is faster,
and closer to fp32 than torch int8 (figures in ``bench/RESULTS.md``, ``encoder``). The fp32 ONNX graph reproduces torch fp32 to cosine >= 0.9999, so needs
(queries) keep the exact fp32 vectors and only results (documents, the bulk cost) are int8,
as with the torch backend.

What is exported: the model's transformer with mean pooling over the attention mask in the
graph (output ``(batch, dim)``); L2 normalisation happens in numpy. Only the plain
``Transformer -> Pooling(mean) [-> Normalize]`` layout (m3e-small's) is supported; anything
else raises :class:`UnsupportedModelError` rather than exporting something different.

Cache: ``<cache_dir>/<model id>-<digest>/`` holding ``model.onnx`` (fp32), ``model.int8.onnx``
and ``manifest.json``. The digest covers the model id (same scheme as the torch encoder's
fingerprint), torch / onnx / onnxruntime versions, exporter, opset and quantisation
settings, so an upgrade re-exports instead of reusing a stale graph. A cache entry is built
in a temporary directory and renamed into place, so concurrent processes never see a half
written one (the loser of a race discards its copy).

Nothing here reaches a model hub: the model is loaded from a local folder, offline.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.batching import DEFAULT_BATCH_SIZE, plan_batches
from models.encoder import fingerprint_of, l2_normalise

if TYPE_CHECKING:
    import onnxruntime
    import torch
    from sentence_transformers import SentenceTransformer

QUANTIZATION_TAG = "onnx-int8"
"""Goes into the encoder fingerprint: int8 ONNX document vectors differ from fp32 and from
torch int8 ones, so an index built with one is refused by an encoder configured otherwise."""

# The TorchScript exporter (dynamo=False): torch 2.13's default dynamo exporter needs the
# extra package onnxscript; the TorchScript one needs nothing and traces BERT exactly.
EXPORTER = "torchscript"
OPSET = 17
# Per-channel signed int8 weights: cosine to fp32 0.997 vs 0.989 per-tensor, and s8
# weights run the u8 x s8 VNNI kernels (unsigned weights measured ~1.5x slower).
# reduce_range only matters on CPUs without VNNI, where u8 x s8 can saturate.
PER_CHANNEL = True
REDUCE_RANGE = False
# The exported graph is not run through onnxruntime's offline BERT optimizer (fused
# Attention / EmbedLayerNorm): the session's own optimisations are as fast, and its int8
# copy measured 5-7% slower (bench/RESULTS.md, encoder).
LAYOUT_VERSION = 1
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MANIFEST_FILE = "manifest.json"
SUPPORTED_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# A need is one sequence of ~260 tokens: two intra-op threads that sleep when idle encode it
# in 34.8 vs 53.0 ms (p50 of 60 CCF needs, idle machine) and 40.1 vs 50.5 ms with another
# process busy on one core; spinning threads were worse under load (67.5 ms), so they sleep.
QUERY_THREADS = min(2, os.cpu_count() or 1)
# Documents are encoded a slice at a time so that two bulk uploads interleave; a slice is
# large enough that length sorting inside it still removes most padding.
DOC_SLICE = 256
# Padded tokens per ONNX batch. Smaller batches keep the activations in cache: on 600 CSL
# abstracts (quiet machine, one session on 2 intra-op threads) int8 ran 66 docs/s at 1,024
# tokens, 60 at 2,048, 54 at 4,096, 45 at 8,192 (the torch default), and no faster below
# (one text per batch: 59); with two single-threaded workers 512-1,024 tied on CPU time.
MAX_TOKENS_PER_BATCH = 1024
EXPORT_CHECK_MIN_COSINE = 0.9999
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600


class UnsupportedModelError(ValueError):
    """The model's module layout is not one this backend exports faithfully."""


@dataclass(frozen=True)
class OnnxArtifacts:
    """The exported graphs of one model and the graph inputs they take."""

    directory: Path
    fp32: Path
    int8: Path
    input_names: tuple[str, ...]
    exported_now: bool
    """True when this call exported the model, False when it reused the cache."""


def versions() -> dict[str, str]:
    """Library versions that decide what an export produces (part of the cache key)."""
    import onnx
    import onnxruntime
    import torch

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def cache_key(model_id: str) -> dict[str, Any]:
    """Everything an exported graph depends on besides the weights' folder name."""
    return {
        "model_id": model_id,
        "exporter": EXPORTER,
        "opset": OPSET,
        "per_channel": PER_CHANNEL,
        "reduce_range": REDUCE_RANGE,
        "layout": LAYOUT_VERSION,
        **versions(),
    }


def cache_entry_name(model_id: str) -> str:
    """Directory name of a model's cache entry: readable id plus a digest of :func:`cache_key`."""
    key = json.dumps(cache_key(model_id), sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", model_id).strip("_")[:80] or "model"
    return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def check_exportable(model: SentenceTransformer) -> None:
    """Raise unless ``model`` is ``Transformer -> Pooling(mean)`` with an optional ``Normalize``.

    Raises:
        UnsupportedModelError: for any other layout or pooling mode.
    """
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        raise UnsupportedModelError(
            f"the ONNX backend exports Transformer -> Pooling(mean) models, got {names}; "
            "set TECHMATCH_BACKEND=torch"
        )
    mode = model[1].get_config_dict().get("pooling_mode")
    if mode != "mean":
        raise UnsupportedModelError(
            f"the ONNX backend supports mean pooling, got pooling_mode={mode!r}; "
            "set TECHMATCH_BACKEND=torch"
        )


def graph_input_names(model: SentenceTransformer) -> tuple[str, ...]:
    """The tokenizer outputs the graph takes, in the tokenizer's order."""
    names = tuple(n for n in model.tokenizer.model_input_names if n in SUPPORTED_INPUTS)
    if "input_ids" not in names or "attention_mask" not in names:
        raise UnsupportedModelError(
            f"tokenizer inputs {model.tokenizer.model_input_names} lack input_ids/attention_mask"
        )
    return names


def _mean_pooled(auto_model: torch.nn.Module, input_names: tuple[str, ...]) -> torch.nn.Module:
    import torch

    class MeanPooled(torch.nn.Module):
        """The transformer plus sentence-transformers' mean pooling, as one traceable graph."""

        def __init__(self) -> None:
            super().__init__()
            self.auto_model = auto_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            features = dict(zip(input_names, inputs, strict=True))
            hidden = self.auto_model(**features).last_hidden_state
            mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            # Same clamp as sentence-transformers' Pooling, so an all-padding row is 0, not NaN.
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return MeanPooled().eval()


def export_fp32(model: SentenceTransformer, path: Path) -> tuple[str, ...]:
    """Export ``model`` (transformer + mean pooling) to an fp32 ONNX graph at ``path``.

    Dynamic batch and sequence axes. The graph is checked against torch on a small batch
    (cosine >= :data:`EXPORT_CHECK_MIN_COSINE`) before it is accepted.

    Returns:
        The graph's input names, in order.

    Raises:
        UnsupportedModelError: for a layout :func:`check_exportable` refuses.
        RuntimeError: if the exported graph does not reproduce torch.
    """
    import torch

    check_exportable(model)
    input_names = graph_input_names(model)
    auto_model = model[0].auto_model
    sample = ["锂离子电池正极材料的制备方法及其在储能系统中的应用", "水稻"]
    features = model.tokenizer(
        sample, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt"
    )
    args = tuple(features[name] for name in input_names)
    previous = auto_model.config._attn_implementation
    # Eager attention exports as plain MatMul/Softmax; it ran 3-8% faster under onnxruntime
    # than the SDPA export, fp32 and int8 alike.
    auto_model.set_attn_implementation("eager")
    try:
        wrapper = _mean_pooled(auto_model, input_names)
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python-side shape checks: the graph is verified below.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                input_names=list(input_names),
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in input_names}
                | {"embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
            expected = wrapper(*args).numpy()
    finally:
        auto_model.set_attn_implementation(previous)
    _verify(path, {n: features[n].numpy() for n in input_names}, expected)
    return input_names


def _verify(path: Path, feeds: dict[str, np.ndarray], expected: np.ndarray) -> None:
    session = make_session(path, threads=1)
    got = session.run(None, {k: v.astype(np.int64) for k, v in feeds.items()})[0]
    cosine = np.einsum("ij,ij->i", l2_normalise(got), l2_normalise(expected))
    if float(cosine.min()) < EXPORT_CHECK_MIN_COSINE:
        raise RuntimeError(
            f"the ONNX export of {path.name} does not reproduce torch: cosine {cosine.min():.6f} "
            f"< {EXPORT_CHECK_MIN_COSINE}"
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Write a dynamic int8 copy of ``source`` (weights int8 per channel, activations per batch)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _without_preprocessing_advice():
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=PER_CHANNEL,
            reduce_range=REDUCE_RANGE,
            weight_type=QuantType.QInt8,
            # ONNX shape inference leaves some MatMul outputs of the exported graph untyped;
            # every tensor here is float32. (onnxruntime's symbolic pre-processing, the other
            # way to type them, fails on this graph: "Incomplete symbolic shape inference".)
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    # quantize_dynamic calls logging.warning() on the root logger to suggest pre-processing;
    # with no root handler that would also run logging.basicConfig() for the whole process.
    # A temporary handler and filter keep the process's logging as it was.
    root = logging.getLogger()
    handler = logging.NullHandler()

    def drop_advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root.addHandler(handler)
    root.addFilter(drop_advice)
    try:
        yield
    finally:
        root.removeFilter(drop_advice)
        root.removeHandler(handler)


def ensure_artifacts(model: SentenceTransformer, model_id: str, cache_dir: Path) -> OnnxArtifacts:
    """The cached fp32 and int8 graphs of ``model``, exported first if absent.

    Args:
        model: The loaded model (only read; its attention implementation is restored).
        model_id: Identifies the weights (``models.sentence_transformer._model_id``).
        cache_dir: Root of the ONNX cache (e.g. ``<Settings.cache_dir>/onnx``).

    Returns:
        Paths of both graphs and whether this call exported them.
    """
    final = cache_dir / cache_entry_name(model_id)
    manifest = final / MANIFEST_FILE
    if manifest.is_file():
        return _artifacts(final, exported_now=False)
    check_exportable(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=cache_dir))
    try:
        input_names = export_fp32(model, tmp / FP32_FILE)
        quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
        payload = cache_key(model_id) | {"input_names": list(input_names)}
        # The manifest is written last: its presence marks a complete entry.
        (tmp / MANIFEST_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not manifest.is_file():
                raise
            # Another process finished the same export first; its copy is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
            return _artifacts(final, exported_now=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _artifacts(final, exported_now=True)


def _remove_stale_tmp(cache_dir: Path) -> None:
    # A process killed mid-export leaves its temporary directory (~120 MB); one that old is
    # no longer being written (an export takes seconds).
    cutoff = time.time() - STALE_TMP_SECONDS
    for path in cache_dir.glob(f"{TMP_PREFIX}*"):
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _artifacts(directory: Path, *, exported_now: bool) -> OnnxArtifacts:
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    return OnnxArtifacts(
        directory=directory,
        fp32=directory / FP32_FILE,
        int8=directory / INT8_FILE,
        input_names=tuple(manifest["input_names"]),
        exported_now=exported_now,
    )


def make_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU inference session with ``threads`` intra-op threads (1: runs on the caller)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle workers sleep instead of spinning: the cores are shared with the API and other
    # jobs, and spinning steals them from those.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """One ONNX session with its own tokenizer: texts in, L2-normalised vectors out.

    Texts are tokenised once, sorted by token count and cut into batches of similar length
    (:func:`models.batching.plan_batches`), padded per batch, and returned in input order.
    With ``threads`` > 1 the batches run side by side on ``threads`` workers, each on one
    core, through one single-threaded session (``InferenceSession.run`` is thread-safe): on
    2 cores that was 14-40% faster than one batch at a time on 2 intra-op threads, whose
    per-operator synchronisation costs a lot at these batch sizes. A caller that sends one
    long sequence at a time (a need) uses ``intra_op_threads`` instead.
    Calls are serialised by a lock: the fast tokenizer is not safe to share between threads
    (huggingface/tokenizers#537), and one call already keeps every worker busy.
    """

    def __init__(
        self,
        path: Path,
        tokenizer: Any,
        input_names: Sequence[str],
        *,
        max_seq_length: int,
        threads: int,
        dimension: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens_per_batch: int = MAX_TOKENS_PER_BATCH,
        intra_op_threads: int = 1,
    ) -> None:
        self._session = make_session(path, threads=intra_op_threads)
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="onnx-embed") if threads > 1 else None
        )
        # A private copy: another embedder's concurrent call must not borrow the same one.
        self._tokenizer = copy.deepcopy(tokenizer)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._pad_type_id = int(tokenizer.pad_token_type_id or 0)
        self._left_padding = tokenizer.padding_side == "left"
        self._input_names = tuple(input_names)
        self._max_seq_length = max_seq_length
        self._dimension = dimension
        self._batch_size = batch_size
        self._max_tokens_per_batch = max_tokens_per_batch
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dimension)``, unit rows, row ``i`` for ``texts[i]``."""
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            encoded = self._tokenizer(
                list(texts),
                truncation=True,
                max_length=self._max_seq_length,
                return_attention_mask=False,
                return_token_type_ids="token_type_ids" in self._input_names,
            )
            ids: list[list[int]] = encoded["input_ids"]
            type_ids: list[list[int]] | None = encoded.get("token_type_ids")
            lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int64, count=len(ids))
            batches = plan_batches(
                lengths,
                batch_size=self._batch_size,
                max_tokens_per_batch=self._max_tokens_per_batch,
            )

            def run(positions: np.ndarray) -> None:
                feeds = self._pad(positions, ids, type_ids, int(lengths[positions].max()))
                # Batches hold disjoint rows, so workers never write the same row.
                out[positions] = self._session.run(None, feeds)[0]

            if self._pool is None or len(batches) == 1:
                for positions in batches:
                    run(positions)
            else:
                # Longest batches first (plan_batches' order) keeps the workers evenly loaded;
                # list() re-raises a worker's exception here.
                list(self._pool.map(run, batches))
        return l2_normalise(out)

    def _pad(
        self,
        positions: np.ndarray,
        ids: list[list[int]],
        type_ids: list[list[int]] | None,
        width: int,
    ) -> dict[str, np.ndarray]:
        input_ids = np.full((len(positions), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(positions), width), dtype=np.int64)
        types = np.full((len(positions), width), self._pad_type_id, dtype=np.int64)
        for row, i in enumerate(positions):
            seq = ids[i]
            span = slice(width - len(seq), width) if self._left_padding else slice(0, len(seq))
            input_ids[row, span] = seq
            mask[row, span] = 1
            if type_ids is not None:
                types[row, span] = type_ids[i]
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        return {name: feeds[name] for name in self._input_names}


class OnnxEncoder:
    """:class:`models.encoder.Encoder` on ONNX Runtime: fp32 needs, int8 (or fp32) results.

    Needs run the fp32 graph on two intra-op threads; results run the int8 graph (``quantize``) or
    the fp32 one on every core. The two sides have separate sessions, tokenizers and locks,
    so a need is never queued behind a bulk document encode.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        model_id: str,
        cache_dir: Path,
        quantize: bool = True,
        doc_threads: int | None = None,
        query_threads: int = QUERY_THREADS,
        max_tokens_per_batch: int = MAX_TOKENS_PER_BATCH,
    ) -> None:
        """Export (or reuse) ``model``'s graphs under ``cache_dir`` and open their sessions.

        Args:
            model: The loaded sentence-transformers model; only its tokenizer is kept.
            model_id: Identifies the weights; the fingerprint and cache entry use it.
            cache_dir: Root of the ONNX cache.
            quantize: Encode documents with the int8 graph (needs stay fp32).
            doc_threads: Threads for documents, each running whole batches on one core;
                default every core.
            query_threads: Intra-op threads for needs (one sequence at a time).
            max_tokens_per_batch: Padded-token budget of a document batch.
        """
        self.artifacts = ensure_artifacts(model, model_id, cache_dir)
        dim = model.get_embedding_dimension()
        if dim is None:
            raise UnsupportedModelError(
                f"model '{model_id}' does not declare an embedding dimension"
            )
        self._dimension = int(dim)
        max_seq = int(model.max_seq_length)
        common = {
            "input_names": self.artifacts.input_names,
            "max_seq_length": max_seq,
            "dimension": self._dimension,
        }
        # Needs: one sequence at a time, so its threads work inside each operator.
        self._queries = OnnxEmbedder(
            self.artifacts.fp32, model.tokenizer, threads=1, intra_op_threads=query_threads, **common
        )
        self._documents = OnnxEmbedder(
            self.artifacts.int8 if quantize else self.artifacts.fp32,
            model.tokenizer,
            threads=doc_threads or max(1, os.cpu_count() or 1),
            max_tokens_per_batch=max_tokens_per_batch,
            **common,
        )
        # fp32 ONNX reproduces torch fp32 (cosine >= 0.9999, tested), so without int8 the
        # fingerprint equals the torch encoder's and their indexes are interchangeable.
        self._fingerprint = fingerprint_of(model_id, self._dimension, max_seq,
                                           QUANTIZATION_TAG if quantize else None)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries.embed(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        parts = [np.zeros((0, self._dimension), dtype=np.float32)]
        for start in range(0, len(texts), DOC_SLICE):
            parts.append(self._documents.embed(texts[start : start + DOC_SLICE]))
        return np.concatenate(parts)


def load_onnx_encoder(
    model: str | Path | None = None, *, cache_dir: Path, quantize: bool = True
) -> OnnxEncoder:
    """Load ``model`` (default m3e-small) offline and wrap it in an :class:`OnnxEncoder`.

    Raises:
        ModelNotFoundError: when the model is not available locally.
        UnsupportedModelError: when its layout cannot be exported faithfully.
    """
    from models.sentence_transformer import ModelNotFoundError, _model_id, model_source

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    source = model_source(model)
    try:
        loaded = SentenceTransformer(source, device="cpu")
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot load model '{model}' offline: {exc}. Point TECHMATCH_MODEL at a local "
            "sentence-transformers folder."
        ) from exc
    return OnnxEncoder(loaded, model_id=_model_id(source), cache_dir=cache_dir, quantize=quantize)
