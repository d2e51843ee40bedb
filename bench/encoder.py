"""Encoder benchmarks: throughput of fp32 vs int8 vs length-sorted batching (torch and ONNX
Runtime), the CCF dev quality bound of int8, single-need latency, and the real embeddings
reused by the ANN benchmark.

Every variant is measured in the same process, interleaved chunk by chunk, so that load
from other jobs on the shared machine hits all of them alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import data, load_m3e, m3e_small_path, machine, timed, write_json
from models.batching import encode_length_sorted
from models.onnx_backend import versions as onnx_versions
from models.quantize import quantize_dynamic_int8

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from models.onnx_backend import OnnxEncoder

EMBEDDINGS_PATH = Path("/tmp/bench_emb.npy")
QUERY_EMBEDDINGS_PATH = Path("/tmp/bench_queries.npy")


def _plain(model: Any, batch_size: int = 32) -> Callable[[Sequence[str]], np.ndarray]:
    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    return encode


def _sorted(model: Any, max_seq_length: int = 512) -> Callable[[Sequence[str]], np.ndarray]:
    def encode(texts: Sequence[str]) -> np.ndarray:
        return encode_length_sorted(model, texts, max_seq_length=max_seq_length)

    return encode


def _onnx(model: SentenceTransformer, *, quantize: bool, threads: int) -> OnnxEncoder:
    """The product's ONNX encoder around ``model``, graphs cached under the configured cache_dir."""
    from matcher.settings import Settings
    from models.onnx_backend import OnnxEncoder
    from models.sentence_transformer import _model_id

    return OnnxEncoder(
        model,
        model_id=_model_id(m3e_small_path()),
        cache_dir=Settings().cache_dir / "onnx",
        quantize=quantize,
        doc_threads=threads,
    )


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``."""
    num = np.einsum("ij,ij->i", a, b)
    return num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


DEFAULT_SPEED_VARIANTS = (
    "torch int8 length-sorted",
    "onnx fp32 length-sorted",
    "onnx int8 length-sorted",
)


def run_speed(
    n_docs: int = 2000,
    threads: int = 2,
    chunk: int = 250,
    variants: Sequence[str] | str | None = None,
) -> dict[str, Any]:
    """Docs/s of each encoder variant on the same ``n_docs`` CSL abstracts.

    The texts are cut into chunks of ``chunk`` and every chunk is encoded by every
    variant in turn, in an order rotated per chunk, so a burst of load from other jobs
    on the shared machine lands on all variants alike. Each variant's time is the sum
    over chunks; each variant sees every text exactly once.

    Args:
        n_docs: Number of CSL papers (file order), rendered ``title + "。" + abstract``.
        threads: ``torch.set_num_threads`` / ONNX Runtime intra-op threads of every variant.
        chunk: Texts per interleaving step.
        variants: Names to run besides the baseline (default
            :data:`DEFAULT_SPEED_VARIANTS`; also ``torch int8 plain encode`` and
            ``torch fp32 length-sorted``); a list or comma-separated names.

    Returns:
        Figures per variant, ratios to the fp32 plain baseline, and int8-vs-fp32 cosines.
    """
    import os

    if isinstance(variants, str):  # key=value on the command line: comma-separated names
        variants = variants.split(",")
    texts = data.csl_texts(n_docs)
    fp32 = load_m3e(threads)
    int8 = quantize_dynamic_int8(fp32, per_channel=False)
    # Each product encoder's documents path: the ONNX ones in the product's own batching.
    onnx_fp32, export_s = timed(lambda: _onnx(fp32, quantize=False, threads=threads))
    onnx_int8 = _onnx(fp32, quantize=True, threads=threads)
    available: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "fp32 plain encode (baseline)": _plain(fp32),
        "torch int8 plain encode": _plain(int8),
        "torch fp32 length-sorted": _sorted(fp32),
        "torch int8 length-sorted": _sorted(int8),
        "onnx fp32 length-sorted": onnx_fp32.encode_documents,
        "onnx int8 length-sorted": onnx_int8.encode_documents,
    }
    chosen = variants or DEFAULT_SPEED_VARIANTS
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(available)}")
    encoders = {"fp32 plain encode (baseline)": available["fp32 plain encode (baseline)"]} | {
        name: available[name] for name in chosen
    }
    names = list(encoders)
    for encode in encoders.values():  # warm-up: first-call allocation, kernel selection
        encode(texts[:32])
    seconds = dict.fromkeys(names, 0.0)
    # CPU seconds of this process too: on a machine shared with other jobs the wall
    # clock also counts time spent descheduled, the CPU clock does not.
    cpu_seconds = dict.fromkeys(names, 0.0)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    load = [os.getloadavg()[0]]
    for c, start in enumerate(range(0, n_docs, chunk)):
        batch = texts[start : start + chunk]
        for name in names[c % len(names) :] + names[: c % len(names)]:
            cpu_start = time.process_time()
            emb, elapsed = timed(lambda name=name, batch=batch: encoders[name](batch))
            cpu_seconds[name] += time.process_time() - cpu_start
            seconds[name] += elapsed
            parts[name].append(emb)
        load.append(os.getloadavg()[0])
        print(f"chunk {c + 1}: " + ", ".join(f"{n}={seconds[n]:.0f}s" for n in names), flush=True)
    base_name = names[0]
    base = np.concatenate(parts[base_name])
    results = {}
    for name in names:
        cos = row_cosines(np.concatenate(parts[name]), base)
        results[name] = {
            "seconds": round(seconds[name], 2),
            "docs_per_s": round(n_docs / seconds[name], 2),
            "speedup_vs_baseline": round(seconds[base_name] / seconds[name], 2),
            "cpu_seconds": round(cpu_seconds[name], 2),
            "cpu_speedup_vs_baseline": round(cpu_seconds[base_name] / cpu_seconds[name], 2),
            "cosine_to_fp32_mean": round(float(cos.mean()), 4),
            "cosine_to_fp32_min": round(float(cos.min()), 4),
        }
        print(name, results[name], flush=True)
    payload = {
        "benchmark": "encoder",
        "n_docs": n_docs,
        "threads": threads,
        "chunk": chunk,
        "onnx_cache": str(onnx_int8.artifacts.directory),
        "onnx_versions": onnx_versions(),
        "onnx_export_seconds": round(export_s, 1) if onnx_fp32.artifacts.exported_now else None,
        "loadavg_1m_min_max": [round(min(load), 2), round(max(load), 2)],
        "machine": machine(),
        "variants": results,
    }
    print(write_json("encoder", payload))
    return payload


# --- CCF rerank quality -------------------------------------------------------------


def strong_precision_at_1(ranked_labels: Sequence[int], threshold: int = 2) -> float:
    """1.0 if the top-ranked candidate's label is >= ``threshold``, else 0.0 (0.0 if empty)."""
    return float(bool(ranked_labels) and ranked_labels[0] >= threshold)


def ndcg_at_k(ranked_labels: Sequence[int], all_labels: Sequence[int], k: int = 10) -> float:
    """nDCG@k with gains ``2**label - 1``; the ideal orders all of the need's labels.

    A need whose labels are all 0 scores 0 (the data README's convention).
    """

    def dcg(labels: Sequence[int]) -> float:
        return sum((2**lab - 1) / math.log2(i + 2) for i, lab in enumerate(labels[:k]))

    ideal = dcg(sorted(all_labels, reverse=True))
    return dcg(ranked_labels) / ideal if ideal > 0 else 0.0


def rerank_metrics(
    qrels: dict[str, dict[str, int]],
    need_vecs: dict[str, np.ndarray],
    result_vecs: dict[str, np.ndarray],
) -> dict[str, float]:
    """Rank each need's judged candidates by cosine; mean strong_precision@1 and ndcg@10.

    Ties keep the qrels file order (stable sort), so equal scores do not flatter a model.
    """
    p1: list[float] = []
    p1_strict: list[float] = []
    ndcg: list[float] = []
    for need_id, judged in qrels.items():
        ids = list(judged)
        scores = np.array([float(need_vecs[need_id] @ result_vecs[r]) for r in ids])
        order = np.argsort(-scores, kind="stable")
        ranked = [judged[ids[i]] for i in order]
        p1.append(strong_precision_at_1(ranked, 2))
        p1_strict.append(strong_precision_at_1(ranked, 3))
        ndcg.append(ndcg_at_k(ranked, list(judged.values()), 10))
    return {
        "strong_precision@1": round(float(np.mean(p1)), 4),
        "strict_precision@1": round(float(np.mean(p1_strict)), 4),
        "ndcg@10": round(float(np.mean(ndcg)), 4),
        "needs": len(p1),
    }


def run_quality(split: str = "dev", threads: int = 2) -> dict[str, Any]:
    """CCF rerank quality of fp32 vs int8, torch and ONNX Runtime, on ``split``.

    Needs are rendered ``title + "。" + text``; results as their joined title words.
    """
    if split == "test":
        print("note: test is report-only; nothing is tuned on it")
    qrels = data.ccf_qrels(split)
    needs = {
        n.id: data.join_title_text(n.title, n.text) for n in data.ccf_queries() if n.id in qrels
    }
    wanted = {r for judged in qrels.values() for r in judged}
    results = {
        r.id: data.join_title_text(data.join_title_words(r.title), r.text)
        for r in data.ccf_results()
        if r.id in wanted
    }
    fp32 = load_m3e(threads)
    int8 = quantize_dynamic_int8(fp32)
    onnx = _onnx(fp32, quantize=True, threads=threads)
    need_ids, need_texts = list(needs), list(needs.values())
    result_ids, result_texts = list(results), list(results.values())
    encoders = {
        "fp32 plain encode": _plain(fp32),
        "int8 plain encode": _plain(int8),
        "int8 length-sorted": _sorted(int8),
        # The ONNX encoder's two paths: fp32 graph (its need side), int8 graph (its results).
        "onnx fp32": onnx.encode_queries,
        "onnx int8": onnx.encode_documents,
    }
    need_vecs = {name: enc(need_texts) for name, enc in encoders.items()}
    result_vecs = {name: enc(result_texts) for name, enc in encoders.items()}
    # Asymmetric option: needs (one per request) in fp32, results (bulk indexing) in int8.
    pairs = {name: (name, name) for name in encoders}
    pairs["fp32 needs + int8 plain-encode results"] = ("fp32 plain encode", "int8 plain encode")
    pairs["fp32 needs + int8 length-sorted results"] = ("fp32 plain encode", "int8 length-sorted")
    pairs["onnx fp32 needs + onnx int8 results"] = ("onnx fp32", "onnx int8")
    metrics: dict[str, dict[str, float]] = {}
    for name, (need_enc, result_enc) in pairs.items():
        metrics[name] = rerank_metrics(
            qrels,
            dict(zip(need_ids, need_vecs[need_enc], strict=True)),
            dict(zip(result_ids, result_vecs[result_enc], strict=True)),
        )
        metrics[name]["cosine_to_fp32_needs"] = round(
            float(row_cosines(need_vecs[need_enc], need_vecs["fp32 plain encode"]).mean()), 4
        )
        metrics[name]["cosine_to_fp32_results"] = round(
            float(row_cosines(result_vecs[result_enc], result_vecs["fp32 plain encode"]).mean()), 4
        )
        print(name, metrics[name], flush=True)
    base = metrics["fp32 plain encode"]
    for name, m in metrics.items():
        m["delta_strong_precision@1"] = round(
            m["strong_precision@1"] - base["strong_precision@1"], 4
        )
        m["delta_ndcg@10"] = round(m["ndcg@10"] - base["ndcg@10"], 4)
    payload = {
        "benchmark": f"encoder-quality-{split}",
        "split": split,
        "pairs": sum(len(j) for j in qrels.values()),
        "machine": machine(),
        "variants": metrics,
    }
    print(write_json(f"encoder_quality_{split}", payload))
    return payload


# --- single-need latency ----------------------------------------------------------------


def need_of_length(chars: int) -> str:
    """The CCF need (``title + "。" + text``) whose length is closest to ``chars`` characters."""
    texts = [data.join_title_text(n.title, n.text) for n in data.ccf_needs()]
    return min(texts, key=lambda text: (abs(len(text) - chars), text))


def run_query_latency(chars: int = 260, runs: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Latency of encoding one need, single-threaded: torch fp32 vs ONNX Runtime fp32.

    Variants, interleaved call by call so load from other jobs hits them alike:
    ``SentenceTransformer.encode`` (torch, 1 thread), the torch product path
    (``SentenceTransformerEncoder.encode_queries``) and the ONNX product path
    (``OnnxEncoder.encode_queries``, fp32 graph, 1 intra-op thread); for the record also
    the int8 document graph on one thread.

    Args:
        chars: Length of the need, in characters (the CCF need closest to it is used).
        runs: Timed calls per variant.
        warmup: Untimed calls per variant first.

    Returns:
        p50 / p90 / mean milliseconds per variant, the ratio of p50s to torch, the cosine of
        the ONNX vector to the torch one, and the load average.
    """
    import os

    import torch

    from models.sentence_transformer import SentenceTransformerEncoder

    need = need_of_length(chars)
    model = load_m3e(1)
    torch_encoder = SentenceTransformerEncoder(m3e_small_path())
    onnx = _onnx(model, quantize=True, threads=1)

    def raw_torch() -> np.ndarray:
        torch.set_num_threads(1)
        return _plain(model)([need])

    variants: dict[str, Callable[[], np.ndarray]] = {
        "torch fp32 SentenceTransformer.encode": raw_torch,
        "torch fp32 encode_queries": lambda: torch_encoder.encode_queries([need]),
        "onnx fp32 encode_queries": lambda: onnx.encode_queries([need]),
        # For the record only: the int8 document graph on one thread (needs stay fp32).
        "onnx int8 encode_documents": lambda: onnx.encode_documents([need]),
    }
    ms: dict[str, list[float]] = {name: [] for name in variants}
    vectors = {name: fn() for name, fn in variants.items()}
    load = [os.getloadavg()[0]]
    for i in range(warmup + runs):
        names = list(variants)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            _, seconds = timed(variants[name])
            if i >= warmup:
                ms[name].append(seconds * 1000)
    load.append(os.getloadavg()[0])
    base = "torch fp32 SentenceTransformer.encode"
    results = {}
    for name, times in ms.items():
        results[name] = {
            "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p90_ms": round(float(np.percentile(times, 90)), 1),
            "mean_ms": round(float(np.mean(times)), 1),
            "cosine_to_torch": round(float(row_cosines(vectors[name], vectors[base])[0]), 6),
        }
    for name, figures in results.items():
        figures["p50_speedup_vs_torch"] = round(results[base]["p50_ms"] / figures["p50_ms"], 2)
        print(name, figures, flush=True)
    payload = {
        "benchmark": "encoder-query",
        "need_chars": len(need),
        "runs": runs,
        "threads": 1,
        "onnx_versions": onnx_versions(),
        "loadavg_1m_start_end": [round(v, 2) for v in load],
        "machine": machine(),
        "variants": results,
    }
    print(write_json("encoder_query", payload))
    return payload


def run_embed(threads: int = 2, quantize: bool = True) -> dict[str, Any]:
    """Embed the 17,010 real results and the 371 needs; save them for the ANN benchmark.

    Results: the 4,758 CSL papers (``title + "。" + abstract``) then the 12,252 CCF
    results (joined title words), in file order. Queries: the 371 needs of
    ``needs_ccf.jsonl`` (``title + "。" + text``). Written to :data:`EMBEDDINGS_PATH`
    and :data:`QUERY_EMBEDDINGS_PATH` (float32, L2-normalised, ``allow_pickle=False``).
    """
    docs = data.csl_texts() + data.ccf_result_texts()
    queries = [data.join_title_text(n.title, n.text) for n in data.ccf_needs()]
    model = load_m3e(threads)
    if quantize:
        model = quantize_dynamic_int8(model, inplace=True)
    doc_emb, doc_s = timed(lambda: encode_length_sorted(model, docs))
    query_emb, query_s = timed(lambda: encode_length_sorted(model, queries))
    np.save(EMBEDDINGS_PATH, doc_emb.astype(np.float32), allow_pickle=False)
    np.save(QUERY_EMBEDDINGS_PATH, query_emb.astype(np.float32), allow_pickle=False)
    payload = {
        "benchmark": "embed",
        "quantized": quantize,
        "n_docs": len(docs),
        "n_queries": len(queries),
        "doc_seconds": round(doc_s, 1),
        "query_seconds": round(query_s, 1),
        "outputs": [str(EMBEDDINGS_PATH), str(QUERY_EMBEDDINGS_PATH)],
        "machine": machine(),
    }
    print(write_json("embed", payload))
    return payload
