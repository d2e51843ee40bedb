"""HTTP benchmark: ``POST /v1/match`` latency and throughput over real HTTP on loopback.

    python -m bench.api                      # build both indexes (if absent), then measure
    python -m bench.api stage=build          # only build /tmp/api_bench/index-{17010,100000}
    python -m bench.api stage=measure sizes=100000 concurrency=1,8 requests=371

Corpus (all seeded, so every run draws the same records):

* **Real, 17,010 results**: the 4,758 CSL papers (title, abstract, author keywords,
  discipline) and the 12,252 CCF results (title words), loaded with
  :func:`matcher.loaders.load_results`, embedded for real with m3e-small (int8 with
  ``quantize=true``, the default here) through the embedding cache.
* **Scale-up to 100,000**: the 17,010 real results plus 82,990 recombined variants. Variant
  ``v`` picks a real result ``i`` uniformly, ``j`` uniformly among the 10 real results
  nearest to ``i`` by cosine (so a variant stays on one topic) and ``a ~ U(0.25, 0.75)``.
  Title: the first ``ceil(a·n_i)`` units of ``i``'s title then ``j``'s title from unit
  ``ceil(a·n_j)`` on (units are the given words of CCF titles, characters of CSL titles);
  description: the first ``ceil(a·s_i)`` sentences of ``i`` then ``j``'s from
  ``ceil(a·s_j)`` on; keywords cut the same way; field from ``i``. Its vector is
  ``normalise(a·x_i + (1−a)·x_j)`` of the two real embeddings (embedding 82,990 more texts
  at the measured ~36 docs/s would take ~40 min on this machine), written into the
  embedding cache under the real encoder's fingerprint, so the index is then built by the
  ordinary ``Matcher.build`` path, BM25 on the variants' real words included.

Queries: the 371 real needs of ``needs_ccf.jsonl`` sent inline (``title``, ``description``),
``top_k`` 10, config ``default``. The server runs as a separate process (``techmatch serve``)
with ``TECHMATCH_USE_CACHE=false``, so every query is embedded for real, never served from
the cache. Latency is measured in the client, per request, over a keep-alive connection per
client thread; ``took_ms`` (matching inside the server) is reported next to it.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import machine, write_json
from bench.batch_scale import nearest_neighbours
from bench.data import BenchDataMissing, bench_dir

WORK = Path(os.environ.get("TECHMATCH_API_BENCH_DIR", "/tmp/api_bench"))
SEED = 20_250_105
NEIGHBOURS = 10
_SENTENCE_END = re.compile(r"(?<=[。；;！？!?])")


# ----- corpus --------------------------------------------------------------------------------


def real_results() -> list[Any]:
    """The 17,010 real results: CSL papers then CCF results, in file order."""
    from matcher.loaders import load_results

    base = bench_dir()
    return (load_results(base / "csl_papers.jsonl").records
            + load_results(base / "ccf_titles" / "corpus.jsonl").records)


def real_needs() -> list[Any]:
    """The 371 real enterprise needs."""
    from matcher.loaders import load_needs

    return load_needs(bench_dir() / "needs_ccf.jsonl").records


def _units(title: str) -> tuple[list[str], str]:
    # CCF titles are space-separated words; CSL titles are plain Chinese text.
    return (title.split(), " ") if " " in title.strip() else (list(title), "")


def _cut(a: float, head: list[Any], tail: list[Any]) -> list[Any]:
    return head[: math.ceil(a * len(head))] + tail[math.ceil(a * len(tail)) :]


def recombine(x: Any, y: Any, a: float, variant_id: str) -> Any:
    """A variant of result ``x`` with the tail of result ``y`` (see the module docstring)."""
    tx, sep = _units(x.title)
    ty, _ = _units(y.title)
    title = sep.join(_cut(a, tx, ty)).strip() or x.title
    sx = [s for s in _SENTENCE_END.split(x.description) if s]
    sy = [s for s in _SENTENCE_END.split(y.description) if s]
    keywords = list(dict.fromkeys(_cut(a, x.keywords, y.keywords)))
    return x.model_copy(update={"id": variant_id, "title": title, "description": "".join(_cut(a, sx, sy)),
                                "keywords": keywords})


def variants(results: list[Any], vectors: np.ndarray, n: int, seed: int = SEED) -> tuple[list[Any], np.ndarray]:
    """``n`` recombined variants of ``results`` and their convex-combination vectors."""
    rng = np.random.default_rng(seed)
    nn = nearest_neighbours(vectors, NEIGHBOURS)
    i = rng.integers(0, len(results), n)
    j = nn[i, rng.integers(0, NEIGHBOURS, n)]
    a = rng.uniform(0.25, 0.75, n)
    records = [recombine(results[p], results[q], float(s), f"var-{v:06d}")
               for v, (p, q, s) in enumerate(zip(i, j, a))]
    mixed = a[:, None] * vectors[i] + (1 - a[:, None]) * vectors[j]
    return records, (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


# ----- building ------------------------------------------------------------------------------


def _encoder(quantize: bool) -> Any:
    from bench import product_encoder
    from models.cache import CachedEncoder, EmbeddingCache

    return CachedEncoder(product_encoder(quantize),
                         EmbeddingCache(WORK / "cache" / "embeddings.sqlite"))


def seed_cache(encoder: Any, texts: list[str], source: Path) -> int:
    """Copy embeddings of ``texts`` (same fingerprint) from another cache file; returns how many.

    Lets the bench reuse real embeddings another job already computed instead of repeating
    ~8 minutes of encoding; anything not found there is encoded as usual.
    """
    from models.cache import EmbeddingCache, text_key

    other = EmbeddingCache(source)
    keys = list(dict.fromkeys(text_key(t) for t in texts))
    found = other.get_many(encoder.fingerprint, "document", keys)
    other.close()
    encoder.cache.put_many(encoder.fingerprint, "document", found)
    return len(found)


def index_name(size: int, exact_max: int | None) -> str:
    """``index-100000``, or ``index-100000-hnsw`` when the size is above ``exact_max``."""
    return f"index-{size}" + ("-hnsw" if exact_max is not None and size > exact_max else "")


def build(sizes: list[int], quantize: bool = True, seed_from: str | None = None,
          exact_max: int | None = None) -> dict[str, Any]:
    """Build ``WORK/index-<size>`` for each size; existing index directories are kept.

    ``exact_max`` below a size makes that index approximate (HNSW, the Matcher's default
    parameters) instead of exact.
    """
    from matcher.matcher import STORE_FILE, Matcher, MatcherOptions
    from matcher.store import RecordStore
    from matcher.text import render_result
    from models.cache import text_key

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = _encoder(quantize)
    results = real_results()
    texts = [render_result(r) for r in results]
    report: dict[str, Any] = {"fingerprint": encoder.fingerprint}
    if seed_from:
        report["seeded_from_cache"] = seed_cache(encoder, texts, Path(seed_from))
        print(f"seeded {report['seeded_from_cache']} real embeddings from {seed_from}", flush=True)
    started = time.perf_counter()
    vectors = np.concatenate([encoder.encode_documents(texts[s : s + 1000])
                              for s in range(0, len(texts), 1000)])
    report["real_embed_seconds"] = round(time.perf_counter() - started, 1)
    report["real_embedded_now"] = encoder.misses
    print(f"real results embedded: {encoder.misses} new, {encoder.hits} cached, "
          f"{report['real_embed_seconds']}s", flush=True)
    for size in sizes:
        index_dir = WORK / index_name(size, exact_max)
        if (index_dir / "snapshot").is_dir():
            print(f"{index_dir} exists, kept", flush=True)
            continue
        records = results[:size]
        if size > len(results):
            extra, extra_vecs = variants(results, vectors, size - len(results))
            encoder.cache.put_many(encoder.fingerprint, "document",
                                   {text_key(render_result(r)): v for r, v in zip(extra, extra_vecs)})
            records = results + extra
        if index_dir.exists():
            shutil.rmtree(index_dir)
        index_dir.mkdir(parents=True)
        started = time.perf_counter()
        store = RecordStore(index_dir / STORE_FILE)
        options = MatcherOptions() if exact_max is None else MatcherOptions(exact_max=exact_max)
        matcher = Matcher.build(records, encoder=encoder, store=store, options=options)
        matcher.save(index_dir)
        store.close()
        report[f"build_seconds_{size}"] = round(time.perf_counter() - started, 1)
        print(f"built {index_dir}: {len(matcher.results)} results in {report[f'build_seconds_{size}']}s",
              flush=True)
    return report


# ----- measuring -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``techmatch serve`` in a child process, stopped by its own pid."""

    def __init__(self, index_dir: Path, port: int, quantize: bool, log: Path, cache: Path | None = None,
                 api_key: str | None = None) -> None:
        # Without ``cache`` every need is embedded for real; with it, the product default (an
        # embedding cache) in a fresh directory, so only what this run sent is in it.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TECHMATCH_QUANTIZE": str(quantize).lower(),
               "TECHMATCH_USE_CACHE": str(cache is not None).lower(),
               "TECHMATCH_CACHE_DIR": str(cache or WORK / "cache")}
        env.pop("TECHMATCH_API_KEYS", None)
        if api_key is not None:
            env["TECHMATCH_API_KEYS"] = api_key
        self.port = port
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from matcher.cli import app; app()", "serve",
             "--index-dir", str(index_dir), "--port", str(port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self._log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status == 200:
                    return dict(json.loads(body))
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"server not ready after {timeout}s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def _payload(need: Any, by_id: bool = False) -> bytes:
    inline = {"need": {"id": need.id, "title": need.title, "description": need.description}}
    body = {**({"need_id": need.id} if by_id else inline), "top_k": 10, "include_records": True}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def call(port: int, method: str, path: str, body: Any = None, api_key: str | None = None) -> Any:
    """One JSON request; raises on a non-2xx answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Content-Type": "application/json", **({"X-API-Key": api_key} if api_key else {})}
    conn.request(method, path, body=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
                 headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def load_phase(port: int, bodies: list[bytes], concurrency: int, max_seconds: float) -> dict[str, Any]:
    """Send ``bodies`` (in order, shared between ``concurrency`` threads); time each request."""
    latencies: list[float] = []
    took: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_item = iter(range(len(bodies)))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                n = next(next_item, None)
            if n is None:
                break
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/match", body=bodies[n],
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                raw = response.read()
            except OSError as exc:
                with lock:
                    errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            elapsed = time.perf_counter() - started
            with lock:
                if response.status != 200:
                    errors.append(f"{response.status}: {raw[:200]!r}")
                else:
                    latencies.append(elapsed * 1000)
                    took.append(float(json.loads(raw)["took_ms"]))
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 120)
    wall = time.perf_counter() - started
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p90_ms": round(float(np.percentile(lat, 90)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "server_took_p50_ms": round(float(np.percentile(took, 50)), 1) if took else None,
        "server_took_p99_ms": round(float(np.percentile(took, 99)), 1) if took else None,
    }


def encode_share(quantize: bool, n: int = 100) -> dict[str, Any]:
    """Time ``encode_queries`` alone, one need at a time (no HTTP, no search), for the breakdown.

    Runs in a worker thread, as the server's handlers do: on this loaded machine torch's
    two-thread OpenMP team in the main thread measured ~5x slower than a worker thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bench import product_encoder
    from matcher.text import render_need

    encoder = product_encoder(quantize)
    texts = [render_need(need) for need in real_needs()[:n]]

    def timed_all() -> tuple[list[float], list[float]]:
        encoder.encode_queries(texts[:5])
        times, cpu = [], []
        for text in texts:
            started, cpu_started = time.perf_counter(), time.process_time()
            encoder.encode_queries([text])
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
        return times, cpu

    with ThreadPoolExecutor(1) as pool:
        times, cpu = pool.submit(timed_all).result()
    return {"queries": n, "encode_p50_ms": round(float(np.percentile(times, 50)), 1),
            "encode_p99_ms": round(float(np.percentile(times, 99)), 1),
            "encode_cpu_ms_mean": round(float(np.mean(cpu)), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def measure(sizes: list[int], concurrency: list[int], requests: int, max_seconds: float,
            quantize: bool, warmup: int, exact_max: int | None = None,
            repeat: bool = False, stored: bool = False) -> list[dict[str, Any]]:
    """Start a server per index size and run one load phase per concurrency level.

    ``repeat``: the server keeps its embedding cache (the product default) and every need is
    sent once before the measured phases, so they measure needs matched again (a broker
    re-opening a need, a partner retrying): retrieval and scoring without encoding.
    ``stored``: the needs are first stored (``POST /v1/needs:bulk``, the platform's flow: a
    need is posted, then matched) and matched by ``need_id``; they are deleted again
    afterwards, so the index is left as it was.
    """
    needs = real_needs()
    bodies = [_payload(needs[n % len(needs)], by_id=stored) for n in range(requests)]
    key = "bench-key" if stored else None
    rows: list[dict[str, Any]] = []
    for size in sizes:
        index_dir = WORK / index_name(size, exact_max)
        if not (index_dir / "snapshot").is_dir():
            raise BenchDataMissing(f"{index_dir} missing: run `python -m bench.api stage=build` first")
        cache = None
        if repeat or stored:  # a fresh embedding cache; the exported ONNX graphs are reused
            cache = WORK / "repeat-cache"
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
            if (WORK / "cache" / "onnx").is_dir():
                (cache / "onnx").symlink_to(WORK / "cache" / "onnx")
        server = Server(index_dir, free_port(), quantize, WORK / f"server-{size}.log", cache, key)
        stored_ids: list[str] = []
        try:
            started = time.perf_counter()
            ready = server.wait_ready(timeout=900)
            load_s = round(time.perf_counter() - started, 1)
            print(f"server ready with {ready['results']} results in {load_s}s", flush=True)
            if stored:
                stored_ids = [n.id for n in needs]
                started = time.perf_counter()
                call(server.port, "POST", "/v1/needs:bulk", {"needs": [
                    {"id": n.id, "title": n.title, "description": n.description} for n in needs]}, key)
                print(f"stored {len(needs)} needs in {time.perf_counter() - started:.1f}s", flush=True)
            load_phase(server.port, bodies if repeat else bodies[:warmup], 1, max_seconds * (4 if repeat else 1))
            for level in concurrency:
                cpu_before = server.cpu_seconds()
                row = {"results": ready["results"], "index": ready["index"], "server_start_s": load_s,
                       "repeat": repeat, "stored": stored,
                       "loadavg_1m_before": round(os.getloadavg()[0], 2),
                       **load_phase(server.port, bodies, level, max_seconds)}
                # CPU time per request does not grow with other processes' load the way wall
                # time does: on an idle machine latency lies between cpu/2 (both cores busy
                # for this request) and cpu (one core).
                row["server_cpu_ms_per_request"] = round(
                    (server.cpu_seconds() - cpu_before) * 1000 / max(row["requests"], 1), 1)
                row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            for need_id in stored_ids:
                call(server.port, "DELETE", f"/v1/needs/{need_id}", api_key=key)
            server.stop()
    return rows


def run_api(
    stage: str = "all",
    sizes: list[int] | int = (17_010, 100_000),  # type: ignore[assignment]
    concurrency: list[int] | int = (1, 8),  # type: ignore[assignment]
    requests: int = 371,
    max_seconds: float = 180.0,
    quantize: bool = True,
    warmup: int = 10,
    seed_from: str | None = None,
    exact_max: int | None = None,
    repeat: bool = False,
    stored: bool = False,
) -> dict[str, Any]:
    """Build (``stage=build``), measure (``stage=measure``) or both (``all``); write api.json."""
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    concurrency = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    WORK.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"benchmark": "api", "quantize": quantize, "machine": machine()}
    if stage in ("build", "all"):
        payload["build"] = build(sizes, quantize, seed_from, exact_max)
    if stage in ("measure", "all"):
        payload["runs"] = measure(sizes, concurrency, requests, max_seconds, quantize, warmup, exact_max,
                                  repeat, stored)
        payload["encode_only"] = encode_share(quantize)
        print(json.dumps(payload["encode_only"]), flush=True)
    payload["machine_after"] = machine()
    name = (("api" if stage != "build" else "api_build") + ("" if exact_max is None else f"_exact{exact_max}")
            + ("_repeat" if repeat else "") + ("_stored" if stored else ""))
    print(f"written {write_json(name, payload)}", flush=True)
    return payload


if __name__ == "__main__":
    from bench.__main__ import _parse

    try:
        run_api(**_parse(sys.argv[1:]))
    except BenchDataMissing as exc:
        print(f"SKIPPED api: {exc}")
