"""``python -m bench <name> [key=value ...]`` runs one named benchmark; no name lists them.

Each benchmark prints its figures and writes them as JSON under ``/tmp/bench``
(``TECHMATCH_BENCH_OUT`` overrides). Benchmarks that need the shared real data skip
with exit code 0 and a message when it is absent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench.data import BenchDataMissing


def _encoder(**kw: Any) -> object:
    from bench.encoder import run_speed

    return run_speed(**kw)


def _encoder_quality(**kw: Any) -> object:
    from bench.encoder import run_quality

    return run_quality(**kw)


def _encoder_query(**kw: Any) -> object:
    from bench.encoder import run_query_latency

    return run_query_latency(**kw)


def _embed(**kw: Any) -> object:
    from bench.encoder import run_embed

    return run_embed(**kw)


def _ann(**kw: Any) -> object:
    from bench.ann import run_ann

    return run_ann(**kw)


def _api(**kw: Any) -> object:
    from bench.api import run_api

    return run_api(**kw)


def _batch_scale(stage: str = "profile", **_kw: Any) -> object:
    from bench.batch_scale import main

    return main([stage])


BENCHMARKS: dict[str, tuple[Callable[..., object], str]] = {
    "encoder": (
        _encoder,
        "docs/s of fp32 vs int8 vs length-sorted batching on 2,000 CSL abstracts",
    ),
    "encoder-quality": (_encoder_quality, "CCF rerank strong_precision@1 / ndcg@10, fp32 vs int8"),
    "encoder-query": (_encoder_query, "one ~260-char need on 1 thread: torch vs ONNX fp32 p50"),
    "embed": (_embed, "embed the 17,010 real results + 371 needs to /tmp/bench_emb.npy"),
    "ann": (_ann, "Flat vs HNSW vs IVF / IVF-PQ: build, memory, recall@10, latency, QPS"),
    "batch-scale": (_batch_scale, "10k needs x 500k results: stage=embed|embed-variants|data|build|warm|profile"),
    "api": (_api, "POST /v1/match p50/p99, req/s over HTTP at 17,010 / 100,000 results, concurrency 1 and 8"),
}


def _parse(args: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"arguments are key=value, got {arg!r}")
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        if value in {"true", "false"}:
            parsed = value == "true"
        elif "," in value:
            items = value.split(",")
            parsed = (
                [int(v) for v in items] if all(v.lstrip("-").isdigit() for v in items) else value
            )
        kwargs[key.replace("-", "_")] = parsed
    return kwargs


def main(argv: list[str]) -> int:
    """Run the benchmark named in ``argv[0]`` (list them if none); return the exit code."""
    if not argv or argv[0] in {"-h", "--help", "list"}:
        print("benchmarks (python -m bench <name> [key=value ...]):")
        for name, (_, about) in BENCHMARKS.items():
            print(f"  {name:<16} {about}")
        return 0
    name = argv[0]
    if name not in BENCHMARKS:
        print(
            f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr
        )
        return 2
    try:
        BENCHMARKS[name][0](**_parse(argv[1:]))
    except BenchDataMissing as exc:
        print(f"SKIPPED {name}: {exc}")
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
