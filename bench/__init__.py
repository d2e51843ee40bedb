"""Benchmarks of techmatch: ``python -m bench <name>``; figures go to ``bench/RESULTS.md``.

This module holds what every benchmark shares: model loading, the machine
description recorded with each figure, timing and JSON output.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

T = TypeVar("T")
OUTPUT_DIR = Path(os.environ.get("TECHMATCH_BENCH_OUT", "/tmp/bench"))


def m3e_small_path() -> Path:
    """Path of the packaged m3e-small weights (found without importing the package)."""
    spec = importlib.util.find_spec("embedding")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'embedding' package with m3e-small is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "m3e-small"


def load_m3e(threads: int) -> SentenceTransformer:
    """Load m3e-small on CPU, offline, with ``threads`` intra-op threads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    return SentenceTransformer(str(m3e_small_path()), device="cpu")


def machine() -> dict[str, Any]:
    """nproc, CPU model, library versions and the date, for RESULTS.md."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("torch", "faiss", "sentence_transformers", "transformers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "versions": versions,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_1m": os.getloadavg()[0],
    }


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write a benchmark's figures to ``OUTPUT_DIR/<name>.json`` and return the path."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def product_encoder(quantize: bool = True) -> Any:
    """The encoder the product uses under the current settings (``TECHMATCH_BACKEND``,
    ``TECHMATCH_MODEL``), without the embedding cache.

    Benchmarks that build an index must embed with it: a server or batch job started with the
    same settings refuses an index built by any other encoder.
    """
    from matcher.settings import Settings
    from models.sentence_transformer import load_encoder

    settings = Settings()
    return load_encoder(settings.model, quantize=quantize, batch_size=settings.batch_size,
                        backend=settings.backend, onnx_cache_dir=settings.cache_dir / "onnx")
