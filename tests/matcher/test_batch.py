"""The batch job with the fake encoder: streaming formats, checkpoints and resume, rejects, refusals."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from matcher.batch import (
    BatchError,
    BatchJob,
    LocalExecutor,
    SimulatedCrash,
    load_progress,
    match_chunk,
    progress_path,
    run_batch,
)
from matcher.batch_io import estimate_rows, read_chunks, read_output_rows, write_run_file
from matcher.loaders import load_needs, load_results
from matcher.matcher import Matcher
from matcher.records import EnterpriseNeed
from models.fake import FakeEncoder

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
N_NEEDS = 37  # not a multiple of the chunk sizes used, so the last chunk is short
FORMATS = ["jsonl", "csv", "parquet"]


def _need_rows() -> list[dict[str, str]]:
    """Needs written from real demo result titles and abstracts (so every need has matches)."""
    results = load_results(DEMO / "results.jsonl").records
    return [{"id": f"need-{n:03d}", "title": r.title, "description": r.description[:120]}
            for n, r in enumerate(results[1000 : 1000 + N_NEEDS])]


def write_input(rows: list[dict[str, str]], path: Path) -> Path:
    """Write need rows in the format named by ``path``'s extension."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "title", "description"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    return path


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real demo results and 20 needs, indexed with the fake encoder."""
    results = load_results(DEMO / "results.jsonl").records[:300]
    needs = [EnterpriseNeed(**r) for r in _need_rows()[:20]]
    target = tmp_path_factory.mktemp("batch") / "index"
    Matcher.build(results, needs, encoder=FakeEncoder(256)).save(target)
    return target


@pytest.fixture(scope="module")
def matcher(index_dir: Path) -> Matcher:
    return Matcher.load(index_dir, FakeEncoder(256))


def _job(index_dir: Path, needs: Path, out: Path, **kw: object) -> BatchJob:
    return BatchJob(index_dir=index_dir, input_path=needs, out=out, **kw)  # type: ignore[arg-type]


def _rows(path: Path) -> list[dict[str, object]]:
    return list(read_output_rows(path))


# ----- streaming input -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_chunks_streams_every_format_in_fixed_chunks(tmp_path: Path, fmt: str) -> None:
    rows = _need_rows()
    path = write_input(rows, tmp_path / f"needs.{fmt}")
    chunks = list(read_chunks(path, EnterpriseNeed, chunk_size=10))
    assert [len(c.records) for c in chunks] == [10, 10, 10, 7]
    assert [(c.start_row, c.end_row) for c in chunks] == [(0, 10), (10, 20), (20, 30), (30, 37)]
    assert [r.id for c in chunks for r in c.records] == [r["id"] for r in rows]
    assert chunks[2].records[3].title == rows[23]["title"]
    assert estimate_rows(path) == N_NEEDS
    # Skipping resumes at a chunk boundary with the chunk numbering continued.
    tail = list(read_chunks(path, EnterpriseNeed, chunk_size=10, skip_rows=20, first_index=2))
    assert [(c.index, c.start_row) for c in tail] == [(2, 20), (3, 30)]
    assert [r.id for c in tail for r in c.records] == [r["id"] for r in rows[20:]]


def test_read_chunks_validates_like_the_loaders(tmp_path: Path) -> None:
    rows = _need_rows()[:5]
    path = write_input(rows, tmp_path / "needs.jsonl")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "broken"\n')  # line 6: invalid JSON
        handle.write(json.dumps({"id": "no-title"}) + "\n")  # line 7: title missing
        handle.write(json.dumps(rows[0], ensure_ascii=False) + "\n")  # line 8: duplicate id
    (chunk,) = read_chunks(path, EnterpriseNeed, chunk_size=100)
    assert [r.id for r in chunk.records] == [r["id"] for r in rows]
    loaded = load_needs(path, on_error="report")
    # Same rejects, same lines, same reasons as the whole-file loader.
    assert [(r.line, r.field, r.message) for r in chunk.rejects] == [
        (r.line, r.field, r.message) for r in loaded.rejects
    ]
    assert [(r.line, r.field) for r in chunk.rejects] == [(6, "<json>"), (7, "title"), (8, "id")]
    assert "duplicate id" in chunk.rejects[2].message


# ----- the job -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_writes_the_matchers_rankings_in_every_format(
    tmp_path: Path, index_dir: Path, matcher: Matcher, fmt: str
) -> None:
    needs_path = write_input(_need_rows(), tmp_path / f"needs.{fmt}")
    out = tmp_path / f"matches.{fmt}"
    run_file = tmp_path / "run.json"
    summary = run_batch(_job(index_dir, needs_path, out, top_k=5, chunk_size=8, run_file=run_file),
                        LocalExecutor(matcher, 5, "needs-to-results"))
    rows = _rows(out)
    needs = [EnterpriseNeed(**r) for r in _need_rows()]
    expected = match_chunk(matcher, needs, 5, "needs-to-results")
    assert [(r["need_id"], r["result_id"], r["rank"]) for r in rows] == [
        (r["need_id"], r["result_id"], r["rank"]) for r in expected
    ]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in expected])
    assert list(rows[0]) == ["need_id", "result_id", "rank", "score", "tier", "reasons"]
    assert summary.needs_done == N_NEEDS and summary.matches_written == len(rows) == 5 * N_NEEDS
    assert summary.rejected == 0 and summary.rejects is None
    assert sum(summary.tiers.values()) == len(rows)
    # The run file is what `techmatch eval --run` reads.
    from eval.datasets import load_run

    run = load_run(run_file)
    assert set(run) == {n.id for n in needs}
    first = rows[0]
    assert run[str(first["need_id"])][str(first["result_id"])] == pytest.approx(first["score"])
    assert all(len(docs) == 5 for docs in run.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_after_a_crash_mid_file_equals_an_uninterrupted_run(
    tmp_path: Path, index_dir: Path, matcher: Matcher, fmt: str
) -> None:
    needs_path = write_input(_need_rows(), tmp_path / f"needs.{fmt}")
    whole = tmp_path / f"whole.{fmt}"
    run_batch(_job(index_dir, needs_path, whole, top_k=4, chunk_size=5, run_file=tmp_path / "whole.json"),
              LocalExecutor(matcher, 4, "needs-to-results"))

    out = tmp_path / f"crashed.{fmt}"
    job = _job(index_dir, needs_path, out, top_k=4, chunk_size=5, run_file=tmp_path / "crashed.json")
    with pytest.raises(SimulatedCrash):
        run_batch(job, LocalExecutor(matcher, 4, "needs-to-results"), crash_after_chunks=3)
    progress = load_progress(progress_path(out))
    assert (progress.chunks_done, progress.rows_done, progress.finished) == (3, 15, False)
    if fmt != "parquet":
        # The fourth chunk's rows reached the file but not the checkpoint.
        assert out.stat().st_size > progress.out_offset
    with pytest.raises(BatchError, match="refusing to overwrite"):
        run_batch(job, LocalExecutor(matcher, 4, "needs-to-results"))
    summary = run_batch(_job(index_dir, needs_path, out, top_k=4, chunk_size=5, resume=True,
                             run_file=tmp_path / "crashed.json"),
                        LocalExecutor(matcher, 4, "needs-to-results"))
    assert summary.resumed_from_row == 15 and summary.needs_done == N_NEEDS
    if fmt == "parquet":
        assert pq.read_table(out).equals(pq.read_table(whole))
        assert not out.with_name(out.name + ".parts").exists()
    else:
        assert out.read_bytes() == whole.read_bytes()
    assert json.loads((tmp_path / "crashed.json").read_text()) == json.loads(
        (tmp_path / "whole.json").read_text())
    need_ids = [r["need_id"] for r in _rows(out)]
    assert len(set(need_ids)) == N_NEEDS and len(need_ids) == 4 * N_NEEDS


def test_resume_with_a_different_chunk_size_still_covers_every_need_once(
    tmp_path: Path, index_dir: Path, matcher: Matcher
) -> None:
    needs_path = write_input(_need_rows(), tmp_path / "needs.jsonl")
    out = tmp_path / "m.jsonl"
    with pytest.raises(SimulatedCrash):
        run_batch(_job(index_dir, needs_path, out, top_k=3, chunk_size=4),
                  LocalExecutor(matcher, 3, "needs-to-results"), crash_after_chunks=2)
    run_batch(_job(index_dir, needs_path, out, top_k=3, chunk_size=11, resume=True),
              LocalExecutor(matcher, 3, "needs-to-results"))
    pairs = [(r["need_id"], r["rank"]) for r in _rows(out)]
    assert len(pairs) == len(set(pairs)) == 3 * N_NEEDS


KILLED_JOB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from matcher.batch import BatchJob, LocalExecutor, run_batch
    from matcher.matcher import Matcher
    from models.fake import FakeEncoder

    index_dir, needs, out = map(Path, sys.argv[1:4])

    class Slow(LocalExecutor):
        def map(self, chunks):
            for output in super().map(chunks):
                time.sleep(0.15)  # leave the test time to kill us mid-file
                yield output

    matcher = Matcher.load(index_dir, FakeEncoder(256))
    run_batch(BatchJob(index_dir=index_dir, input_path=needs, out=out, top_k=4, chunk_size=3,
                       resume=len(sys.argv) > 4),
              Slow(matcher, 4, "needs-to-results"))
""")


@pytest.mark.slow
def test_kill_9_then_resume_leaves_no_duplicate_and_no_missing_need(
    tmp_path: Path, index_dir: Path, matcher: Matcher
) -> None:
    needs_path = write_input(_need_rows(), tmp_path / "needs.jsonl")
    whole = tmp_path / "whole.jsonl"
    run_batch(_job(index_dir, needs_path, whole, top_k=4, chunk_size=3),
              LocalExecutor(matcher, 4, "needs-to-results"))
    script = tmp_path / "job.py"
    script.write_text(KILLED_JOB, encoding="utf-8")
    out = tmp_path / "killed.jsonl"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, str(script), str(index_dir), str(needs_path), str(out)],
                            env=env, cwd=repo)
    deadline = time.monotonic() + 60
    pfile = progress_path(out)
    while time.monotonic() < deadline:
        if pfile.exists() and load_progress(pfile).chunks_done >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    progress = load_progress(pfile)
    assert 3 <= progress.chunks_done < 13 and not progress.finished
    resumed = subprocess.run([sys.executable, str(script), str(index_dir), str(needs_path), str(out),
                              "--resume"], env=env, cwd=repo, timeout=120, check=False)
    assert resumed.returncode == 0
    assert out.read_bytes() == whole.read_bytes()


def test_rejects_are_reported_with_line_and_reason_and_written(
    tmp_path: Path, index_dir: Path, matcher: Matcher
) -> None:
    rows = _need_rows()[:9]
    path = tmp_path / "needs.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(2, "not json")  # line 3
    lines.insert(6, json.dumps({"id": "empty-title", "title": ""}))  # line 7
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "m.csv"
    summary = run_batch(_job(index_dir, path, out, top_k=2, chunk_size=4),
                        LocalExecutor(matcher, 2, "needs-to-results"))
    assert (summary.needs_done, summary.rejected) == (9, 2)
    assert summary.rejects == str(tmp_path / "m.csv.rejects.jsonl")
    rejects = [json.loads(line) for line in Path(summary.rejects).read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(3, "<json>"), (7, "title")]
    assert rejects[0]["raw"] == "not json" and "invalid JSON" in rejects[0]["message"]
    assert {r["need_id"] for r in _rows(out)} == {r["id"] for r in rows}
    assert any("rejected rows: 2" in line for line in summary.lines())


def test_an_existing_output_is_never_overwritten(tmp_path: Path, index_dir: Path, matcher: Matcher) -> None:
    needs_path = write_input(_need_rows()[:4], tmp_path / "needs.jsonl")
    out = tmp_path / "m.jsonl"
    out.write_text("precious\n", encoding="utf-8")
    executor = LocalExecutor(matcher, 2, "needs-to-results")
    with pytest.raises(BatchError, match="refusing to overwrite"):
        run_batch(_job(index_dir, needs_path, out), executor)
    with pytest.raises(BatchError, match="no progress file"):
        run_batch(_job(index_dir, needs_path, out, resume=True), executor)
    assert out.read_text(encoding="utf-8") == "precious\n"


def test_resume_refuses_another_jobs_output_and_finishes_once(
    tmp_path: Path, index_dir: Path, matcher: Matcher
) -> None:
    needs_path = write_input(_need_rows()[:6], tmp_path / "needs.jsonl")
    out = tmp_path / "m.jsonl"
    executor = LocalExecutor(matcher, 2, "needs-to-results")
    first = run_batch(_job(index_dir, needs_path, out, top_k=2), executor)
    content = out.read_bytes()
    with pytest.raises(BatchError, match="top_k"):
        run_batch(_job(index_dir, needs_path, out, top_k=3, resume=True), executor)
    again = run_batch(_job(index_dir, needs_path, out, top_k=2, resume=True), executor)
    assert again.already_finished and again.needs_done == first.needs_done == 6
    assert out.read_bytes() == content


def test_reverse_direction_puts_result_id_first(tmp_path: Path, index_dir: Path, matcher: Matcher) -> None:
    results = load_results(DEMO / "results.jsonl").records[:5]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
    out = tmp_path / "pushed.jsonl"
    run_file = tmp_path / "run.json"
    summary = run_batch(_job(index_dir, path, out, top_k=3, direction="results-to-needs",
                             run_file=run_file),
                        LocalExecutor(matcher, 3, "results-to-needs"))
    rows = _rows(out)
    assert list(rows[0]) == ["result_id", "need_id", "rank", "score", "tier", "reasons"]
    assert [r["result_id"] for r in rows[::3]] == [r.id for r in results]
    assert summary.needs_done == 5 and len(rows) == 15
    expected = matcher.match_needs_batch(results, top_k=3)
    assert [r["need_id"] for r in rows] == [m.need_id for ms in expected for m in ms]
    assert set(json.loads(run_file.read_text())) == {r.id for r in results}


def test_run_file_streams_each_query_once(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    rows = [{"need_id": "a", "result_id": "x", "rank": 1, "score": 0.9, "tier": None, "reasons": []},
            {"need_id": "a", "result_id": "y", "rank": 2, "score": 0.5, "tier": None, "reasons": []},
            {"need_id": "b", "result_id": "x", "rank": 1, "score": 0.7, "tier": "strong", "reasons": ["r"]}]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert write_run_file(out, tmp_path / "run.json", "needs-to-results") == 2
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": {"x": 0.9, "y": 0.5}, "b": {"x": 0.7}}


def test_cli_batch_end_to_end(tmp_path: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matcher import batch_cli
    from matcher.cli import app

    monkeypatch.setattr(batch_cli, "make_encoder", lambda settings, **_: FakeEncoder(256))
    needs_path = write_input(_need_rows(), tmp_path / "needs.parquet")
    out = tmp_path / "m.csv"
    args = ["batch", "--index-dir", str(index_dir), "--needs", str(needs_path), "--out", str(out),
            "--top-k", "3", "--chunk-size", "10", "--run-file", str(tmp_path / "run.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"needs done: {N_NEEDS}" in result.output
    assert f"matches written: {3 * N_NEEDS}" in result.output
    assert "tier distribution:" in result.output and "throughput:" in result.output
    with out.open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3 * N_NEEDS
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    bad = CliRunner().invoke(app, args[:-2] + ["--direction", "sideways"])
    assert bad.exit_code == 2 and "--direction must be one of" in bad.output
