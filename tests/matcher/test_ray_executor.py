"""The Ray executor on a local Ray instance gives the local executor's output, byte for byte."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from matcher.batch import BatchJob, LocalExecutor, SimulatedCrash, run_batch
from matcher.loaders import load_results
from matcher.matcher import ENCODE_CHUNK, Matcher, encode_chunked
from matcher.ray_executor import RayExecutor, encode_sharded
from matcher.records import EnterpriseNeed
from matcher.text import render_result
from models.fake import FakeEncoder

pytestmark = pytest.mark.slow  # starts a Ray instance
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Matcher]:
    root = tmp_path_factory.mktemp("ray")
    results = load_results(DEMO / "results.jsonl").records
    needs = [EnterpriseNeed(id=f"n{n:03d}", title=r.title, description=r.description[:100])
             for n, r in enumerate(results[2000:2029])]
    index_dir = root / "index"
    Matcher.build(results[:250], needs[:10], encoder=FakeEncoder(256)).save(index_dir)
    needs_path = root / "needs.jsonl"
    needs_path.write_text("".join(n.model_dump_json() + "\n" for n in needs), encoding="utf-8")
    return index_dir, needs_path, Matcher.load(index_dir, FakeEncoder(256))


def _ray(index_dir: Path, top_k: int, direction: str = "needs-to-results") -> RayExecutor:
    return RayExecutor(index_dir, top_k, direction, workers=2,  # type: ignore[arg-type]
                       encoder_factory=functools.partial(FakeEncoder, 256))


@pytest.mark.parametrize("direction", ["needs-to-results", "results-to-needs"])
def test_ray_output_equals_local_output(
    local_ray: None, setup: tuple[Path, Path, Matcher], tmp_path: Path, direction: str
) -> None:
    index_dir, needs_path, matcher = setup
    if direction == "results-to-needs":
        results = load_results(DEMO / "results.jsonl").records[3000:3013]
        needs_path = tmp_path / "results.jsonl"
        needs_path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    local = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=local_out, top_k=4,
                               chunk_size=3, direction=direction, run_file=tmp_path / "local.json"),  # type: ignore[arg-type]
                      LocalExecutor(matcher, 4, direction))  # type: ignore[arg-type]
    executor = _ray(index_dir, 4, direction)
    assert executor.workers == 2
    remote = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=ray_out, top_k=4,
                                chunk_size=3, direction=direction, run_file=tmp_path / "ray.json"),  # type: ignore[arg-type]
                       executor)
    assert ray_out.read_bytes() == local_out.read_bytes()
    assert local_out.stat().st_size > 0
    assert json.loads((tmp_path / "ray.json").read_text()) == json.loads((tmp_path / "local.json").read_text())
    assert (remote.needs_done, remote.matches_written) == (local.needs_done, local.matches_written)


def test_ray_job_resumes_after_a_crash(local_ray: None, setup: tuple[Path, Path, Matcher], tmp_path: Path) -> None:
    index_dir, needs_path, matcher = setup
    whole = tmp_path / "whole.jsonl"
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=whole, top_k=3, chunk_size=4),
              LocalExecutor(matcher, 3, "needs-to-results"))
    out = tmp_path / "ray.jsonl"
    with pytest.raises(SimulatedCrash):
        run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4),
                  _ray(index_dir, 3), crash_after_chunks=2)
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4,
                       resume=True), _ray(index_dir, 3))
    assert out.read_bytes() == whole.read_bytes()


def test_sharded_embedding_equals_a_local_build(local_ray: None) -> None:
    texts = [render_result(r) for r in load_results(DEMO / "results.jsonl").records[:700]]
    local = encode_chunked(FakeEncoder(256).encode_documents, texts, 256)
    vectors, fingerprint = encode_sharded(texts, shard_chunks=1, workers=2,
                                          encoder_factory=functools.partial(FakeEncoder, 256))
    assert len(texts) > 2 * ENCODE_CHUNK  # several shards, the last one short
    assert fingerprint == FakeEncoder(256).fingerprint
    assert np.array_equal(vectors, local)


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
