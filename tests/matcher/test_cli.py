"""The command line end to end, with the real default model on small real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.cli import app
from matcher.loaders import load_needs
from matcher.need_analysis import analyse_need

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    lines = (DEMO / "results.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_build_then_rebuild_embeds_nothing_then_match_json(small_corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    index_dir = tmp_path / "idx"
    first = runner.invoke(app, ["index", "build", "--results", str(small_corpus),
                                "--needs", str(DEMO / "needs.jsonl"), "--index-dir", str(index_dir)])
    assert first.exit_code == 0, first.output
    assert "indexed 60 results and 10 needs" in first.output
    # Each need's key sentences are embedded with it, so matching a stored need needs no model call.
    sentences = sum(len(analyse_need(need).key_sentences)
                    for need in load_needs(DEMO / "needs.jsonl").records)
    embedded = 70 + sentences
    assert sentences > 0
    assert f"{embedded} newly embedded, 0 from the cache" in first.output
    second = runner.invoke(app, ["index", "build", "--results", str(small_corpus),
                                 "--needs", str(DEMO / "needs.jsonl"), "--index-dir", str(index_dir)])
    assert second.exit_code == 0, second.output
    assert f"0 newly embedded, {embedded} from the cache" in second.output
    assert "no record was re-embedded" in second.output

    title = json.loads(small_corpus.read_text(encoding="utf-8").splitlines()[7])["title"]
    out = runner.invoke(app, ["match", "--index-dir", str(index_dir), "--need-text", title,
                              "--top-k", "5", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["title"] == title
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:]))
    assert {"result_id", "score", "rank"} <= set(rows[0])


def test_bad_input_is_reported_with_line_and_field(small_corpus: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(small_corpus.read_text(encoding="utf-8") + '{"_id": "x", "text": "no title"}\n',
                   encoding="utf-8")
    runner = CliRunner()
    out = runner.invoke(app, ["index", "build", "--results", str(bad), "--index-dir", str(tmp_path / "i")])
    assert out.exit_code == 2
    assert "line 61, field 'title'" in out.output
    assert not (tmp_path / "i").exists()
    out = runner.invoke(app, ["index", "build", "--results", str(bad), "--index-dir", str(tmp_path / "i"),
                              "--on-error", "report", "--rejects", str(tmp_path / "rej.jsonl")])
    assert out.exit_code == 0, out.output
    assert "indexed 60 results" in out.output
    assert json.loads((tmp_path / "rej.jsonl").read_text(encoding="utf-8"))["line"] == 61


def test_match_refuses_an_index_of_another_encoder(small_corpus: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from matcher import Matcher
    from matcher.loaders import load_results
    from models.fake import FakeEncoder

    Matcher.build(load_results(small_corpus).records, encoder=FakeEncoder()).save(tmp_path / "fake-idx")
    out = CliRunner().invoke(app, ["match", "--index-dir", str(tmp_path / "fake-idx"), "--need-text", "电池"])
    assert out.exit_code == 2
    assert "was built with encoder 'fake-hash-v1" in out.output and "Rebuild it" in out.output
