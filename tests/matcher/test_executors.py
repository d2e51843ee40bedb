"""Executors beyond this process (local worker processes, Ray) give the in-process executor's
output byte for byte, resume after a crash, and report a worker's failure."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from matcher.batch import BatchError, BatchJob, LocalExecutor, SimulatedCrash, run_batch
from matcher.loaders import load_results
from matcher.matcher import ENCODE_CHUNK, Matcher, encode_chunked
from matcher.process_executor import ProcessExecutor
from matcher.records import EnterpriseNeed
from matcher.text import render_result
from models.fake import FakeEncoder

pytestmark = pytest.mark.slow  # spawns worker processes or a Ray instance
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
HAS_RAY = importlib.util.find_spec("ray") is not None
KINDS = ["process", pytest.param("ray", marks=pytest.mark.skipif(not HAS_RAY, reason="ray not installed"))]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Matcher]:
    root = tmp_path_factory.mktemp("executors")
    results = load_results(DEMO / "results.jsonl").records
    needs = [EnterpriseNeed(id=f"n{n:03d}", title=r.title, description=r.description[:100])
             for n, r in enumerate(results[2000:2029])]
    index_dir = root / "index"
    Matcher.build(results[:250], needs[:10], encoder=FakeEncoder(256)).save(index_dir)
    needs_path = root / "needs.jsonl"
    needs_path.write_text("".join(n.model_dump_json() + "\n" for n in needs), encoding="utf-8")
    return index_dir, needs_path, Matcher.load(index_dir, FakeEncoder(256))


def _executor(kind: str, request: pytest.FixtureRequest, index_dir: Path, top_k: int,
              direction: str = "needs-to-results", dimension: int = 256) -> Any:
    factory = functools.partial(FakeEncoder, dimension)
    if kind == "process":
        return ProcessExecutor(index_dir, top_k, direction, workers=2, encoder_factory=factory)  # type: ignore[arg-type]
    request.getfixturevalue("local_ray")
    from matcher.ray_executor import RayExecutor

    return RayExecutor(index_dir, top_k, direction, workers=2, encoder_factory=factory)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", ["needs-to-results", "results-to-needs"])
def test_output_equals_the_in_process_output(
    kind: str, direction: str, request: pytest.FixtureRequest, setup: tuple[Path, Path, Matcher], tmp_path: Path
) -> None:
    index_dir, needs_path, matcher = setup
    if direction == "results-to-needs":
        results = load_results(DEMO / "results.jsonl").records[3000:3013]
        needs_path = tmp_path / "results.jsonl"
        needs_path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    local_out, other_out = tmp_path / "local.jsonl", tmp_path / "other.jsonl"
    local = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=local_out, top_k=4,
                               chunk_size=3, direction=direction, run_file=tmp_path / "local.json"),  # type: ignore[arg-type]
                      LocalExecutor(matcher, 4, direction))  # type: ignore[arg-type]
    executor = _executor(kind, request, index_dir, 4, direction)
    assert executor.workers == 2
    other = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=other_out, top_k=4,
                               chunk_size=3, direction=direction, run_file=tmp_path / "other.json"),  # type: ignore[arg-type]
                      executor)
    assert local_out.stat().st_size > 0
    assert other_out.read_bytes() == local_out.read_bytes()
    assert json.loads((tmp_path / "other.json").read_text()) == json.loads((tmp_path / "local.json").read_text())
    assert (other.needs_done, other.matches_written) == (local.needs_done, local.matches_written)


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_resumes_after_a_crash(
    kind: str, request: pytest.FixtureRequest, setup: tuple[Path, Path, Matcher], tmp_path: Path
) -> None:
    index_dir, needs_path, matcher = setup
    whole = tmp_path / "whole.jsonl"
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=whole, top_k=3, chunk_size=4),
              LocalExecutor(matcher, 3, "needs-to-results"))
    out = tmp_path / "other.jsonl"
    with pytest.raises(SimulatedCrash):
        run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4),
                  _executor(kind, request, index_dir, 3), crash_after_chunks=2)
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4,
                       resume=True), _executor(kind, request, index_dir, 3))
    assert out.read_bytes() == whole.read_bytes()


def test_a_worker_that_cannot_load_the_index_fails_the_job_with_its_reason(
    request: pytest.FixtureRequest, setup: tuple[Path, Path, Matcher], tmp_path: Path
) -> None:
    index_dir, needs_path, _ = setup
    wrong = _executor("process", request, index_dir, 3, dimension=128)
    with pytest.raises(BatchError, match="IndexMismatchError"):
        run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=tmp_path / "o.jsonl", top_k=3,
                           chunk_size=4), wrong)


@pytest.mark.skipif(not HAS_RAY, reason="ray not installed")
def test_sharded_embedding_equals_a_local_build(local_ray: None) -> None:
    from matcher.ray_executor import encode_sharded

    texts = [render_result(r) for r in load_results(DEMO / "results.jsonl").records[:700]]
    local = encode_chunked(FakeEncoder(256).encode_documents, texts, 256)
    vectors, fingerprint = encode_sharded(texts, shard_chunks=1, workers=2,
                                          encoder_factory=functools.partial(FakeEncoder, 256))
    assert len(texts) > 2 * ENCODE_CHUNK  # several shards, the last one short
    assert fingerprint == FakeEncoder(256).fingerprint
    assert np.array_equal(vectors, local)


@pytest.mark.skipif(not HAS_RAY, reason="ray not installed")
def test_index_build_on_ray_equals_a_local_build(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from matcher.cli import app

    results = load_results(DEMO / "results.jsonl").records[:40]
    source = tmp_path / "results.jsonl"
    source.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    runner = CliRunner()
    # Separate caches: the Ray build must embed everything on the workers, not reuse the local run's.
    monkeypatch.setenv("TECHMATCH_CACHE_DIR", str(tmp_path / "cache-local"))
    local = runner.invoke(app, ["index", "build", "--results", str(source), "--index-dir", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    monkeypatch.setenv("TECHMATCH_CACHE_DIR", str(tmp_path / "cache-ray"))
    remote = runner.invoke(app, ["index", "build", "--results", str(source), "--index-dir", str(tmp_path / "ray"),
                                 "--executor", "ray"])
    assert remote.exit_code == 0, remote.output
    # The workers embedded all 40; the build itself then took every vector from the cache.
    assert "embedding 40 documents on Ray workers" in remote.output
    assert "0 newly embedded, 40 from the cache" in remote.output
    from matcher.runtime import make_encoder
    from matcher.settings import Settings

    encoder = make_encoder(Settings(), use_cache=False)
    a = Matcher.load(tmp_path / "local", encoder)
    b = Matcher.load(tmp_path / "ray", encoder)
    ids = [r.id for r in results]
    cosines = np.sum(a.results.vector.vectors_for(ids) * b.results.vector.vectors_for(ids), axis=1)
    # Same model and batches; int8 activation scales may differ only where batches differ.
    assert cosines.min() > 0.999


def test_workers_exit_when_the_job_is_killed(setup: tuple[Path, Path, Matcher], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    index_dir, needs_path, _ = setup
    script = (
        "import functools, sys, time\n"
        "from matcher.loaders import load_needs\n"
        "from matcher.process_executor import ProcessExecutor\n"
        "from matcher.batch_io import read_chunks\n"
        "from matcher.records import EnterpriseNeed\n"
        "from models.fake import FakeEncoder\n"
        f"ex = ProcessExecutor({str(index_dir)!r}, 3, 'needs-to-results', workers=2,"
        " encoder_factory=functools.partial(FakeEncoder, 256))\n"
        f"next(ex.map(read_chunks({str(needs_path)!r}, EnterpriseNeed, 4, 0, 0)))\n"
        "print(' '.join(str(p) for p in ex._pool._processes), flush=True)\n"
        "time.sleep(600)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert job.stdout is not None
    workers = [int(p) for p in job.stdout.readline().split()]
    assert len(workers) == 2
    job.send_signal(signal.SIGKILL)  # as `kill -9` of a running batch job
    job.wait(timeout=30)
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if _running(p)]
    assert alive == []


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
