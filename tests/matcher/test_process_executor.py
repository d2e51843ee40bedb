"""The local multi-process executor gives the in-process executor's output, byte for byte."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from matcher.batch import BatchError, BatchJob, LocalExecutor, SimulatedCrash, run_batch
from matcher.loaders import load_results
from matcher.matcher import Matcher
from matcher.process_executor import ProcessExecutor
from matcher.records import EnterpriseNeed
from models.fake import FakeEncoder

pytestmark = pytest.mark.slow  # spawns worker processes
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Matcher]:
    root = tmp_path_factory.mktemp("procs")
    results = load_results(DEMO / "results.jsonl").records
    needs = [EnterpriseNeed(id=f"n{n:03d}", title=r.title, description=r.description[:100])
             for n, r in enumerate(results[2000:2031])]
    index_dir = root / "index"
    Matcher.build(results[:300], needs[:10], encoder=FakeEncoder(256)).save(index_dir)
    needs_path = root / "needs.jsonl"
    needs_path.write_text("".join(n.model_dump_json() + "\n" for n in needs), encoding="utf-8")
    return index_dir, needs_path, Matcher.load(index_dir, FakeEncoder(256))


def _procs(index_dir: Path, top_k: int, direction: str = "needs-to-results") -> ProcessExecutor:
    return ProcessExecutor(index_dir, top_k, direction, workers=2,  # type: ignore[arg-type]
                           encoder_factory=functools.partial(FakeEncoder, 256))


@pytest.mark.parametrize("direction", ["needs-to-results", "results-to-needs"])
def test_process_output_equals_in_process_output(
    setup: tuple[Path, Path, Matcher], tmp_path: Path, direction: str
) -> None:
    index_dir, needs_path, matcher = setup
    if direction == "results-to-needs":
        results = load_results(DEMO / "results.jsonl").records[3000:3013]
        needs_path = tmp_path / "results.jsonl"
        needs_path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    local_out, procs_out = tmp_path / "local.jsonl", tmp_path / "procs.jsonl"
    local = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=local_out, top_k=4,
                               chunk_size=3, direction=direction),  # type: ignore[arg-type]
                      LocalExecutor(matcher, 4, direction))  # type: ignore[arg-type]
    remote = run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=procs_out, top_k=4,
                                chunk_size=3, direction=direction),  # type: ignore[arg-type]
                       _procs(index_dir, 4, direction))
    assert local_out.stat().st_size > 0
    assert procs_out.read_bytes() == local_out.read_bytes()
    assert (remote.needs_done, remote.matches_written) == (local.needs_done, local.matches_written)


def test_process_job_resumes_after_a_crash(setup: tuple[Path, Path, Matcher], tmp_path: Path) -> None:
    index_dir, needs_path, matcher = setup
    whole = tmp_path / "whole.jsonl"
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=whole, top_k=3, chunk_size=4),
              LocalExecutor(matcher, 3, "needs-to-results"))
    out = tmp_path / "procs.jsonl"
    with pytest.raises(SimulatedCrash):
        run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4),
                  _procs(index_dir, 3), crash_after_chunks=2)
    run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=out, top_k=3, chunk_size=4,
                       resume=True), _procs(index_dir, 3))
    assert out.read_bytes() == whole.read_bytes()


def test_a_worker_that_cannot_load_the_index_fails_the_job_with_its_reason(
    setup: tuple[Path, Path, Matcher], tmp_path: Path
) -> None:
    index_dir, needs_path, _ = setup
    wrong = ProcessExecutor(index_dir, 3, "needs-to-results", workers=2,
                            encoder_factory=functools.partial(FakeEncoder, 128))
    with pytest.raises(BatchError, match="IndexMismatchError"):
        run_batch(BatchJob(index_dir=index_dir, input_path=needs_path, out=tmp_path / "o.jsonl", top_k=3,
                           chunk_size=4), wrong)
