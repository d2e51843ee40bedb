"""``techmatch eval`` end to end on a tiny generated BEIR dataset with the fake encoder.

The last test is the acceptance check on real data: the dense configuration
reproduces the reference figures of the data README (slow; skipped without
``../shared``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import eval.cli as eval_cli
from eval.datasets import load_qrels, write_qrels
from matcher.cli import app
from matcher.loaders import load_results
from matcher.matcher import Matcher
from models.fake import FakeEncoder

SHARED_BENCH = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bench" / "ccf_titles"
)

TOPICS = {
    "battery": [
        "锂离子 电池 正极 材料",
        "锂电池 防爆 隔膜",
        "电池 电解液 添加剂",
        "固态 电池 制备",
    ],
    "farm": [
        "水肥 一体化 灌溉 系统",
        "小麦 抗旱 品种 选育",
        "温室 大棚 智能 监测",
        "果园 滴灌 控制",
    ],
    "drug": ["中药 提取 工艺", "疫苗 制备 方法", "抗体 药物 筛选", "缓释 片剂 配方"],
    "steel": ["高强 钢材 热处理", "焊接 机器人 视觉", "轴承 钢 淬火 工艺", "铸造 缺陷 检测"],
}
NEEDS = {
    "n_battery": ("锂离子电池正极材料研发", "需要开发高容量的锂离子电池正极材料，提升电池安全"),
    "n_farm": ("水肥一体化灌溉", "果园需要智能灌溉和水肥一体化监测系统"),
    "n_drug": ("疫苗制备", "兽用疫苗制备方法与工艺改进"),
    "n_steel": ("轴承钢热处理", "提高轴承钢淬火热处理工艺的稳定性"),
}

# The results an expert would grade 3 (强相关) or 2 (较强相关) for each need.
STRONG = {
    "n_battery": {"battery-0": 3, "battery-1": 2},
    "n_farm": {"farm-0": 3, "farm-3": 2},
    "n_drug": {"drug-1": 3},
    "n_steel": {"steel-2": 3, "steel-0": 2},
}


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    """A BEIR dataset: 16 results in 4 topics, 4 needs, each judged against every result."""
    results = []
    for topic, titles in TOPICS.items():
        for index, title in enumerate(titles):
            results.append({"_id": f"{topic}-{index}", "title": title, "text": "", "metadata": {}})
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", results)
    queries = _write_jsonl(
        tmp_path / "queries.jsonl",
        [{"_id": qid, "title": title, "text": text} for qid, (title, text) in NEEDS.items()]
        + [{"_id": "n_unjudged", "title": "无标注需求", "text": ""}],
    )
    qrels: dict[str, dict[str, int]] = {}
    for query_id in NEEDS:
        topic = query_id.removeprefix("n_")
        # Same topic: weakly related (1) unless graded higher in STRONG; other topics 0.
        qrels[query_id] = {
            r["_id"]: STRONG[query_id].get(r["_id"], 1 if r["_id"].startswith(topic) else 0)
            for r in results
        }
    write_qrels(qrels, tmp_path / "qrels.tsv")
    return {"corpus": corpus, "queries": queries, "qrels": tmp_path / "qrels.tsv", "dir": tmp_path}


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI builds its encoder from the settings; give it the fake one.
    monkeypatch.setattr(eval_cli, "make_encoder", lambda settings, use_cache=None: FakeEncoder(256))


def _eval_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--corpus", str(data["corpus"]),
        "--queries", str(data["queries"]),
        "--qrels", str(data["qrels"]),
        "--out", str(out),
        "--bootstrap-samples", "200",
        *extra,
    ]  # fmt: skip


def test_eval_rerank_writes_three_reports(dataset: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, _eval_args(dataset, out, "--mode", "rerank"))
    assert result.exit_code == 0, result.output
    assert "strong_precision@1" in result.output and "default*" in result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for key in ("strong_precision@1", "strong_precision@3", "ndcg@10", "mrr@10"):
        assert 0.0 <= report["metrics"][key] <= 1.0
    assert list(report["configs"]) == ["dense", "lexical", "hybrid", "default"]
    assert report["metrics"] == report["configs"]["default"]["metrics"]
    assert sorted(report["per_query"]["dense"]) == sorted(NEEDS)
    assert report["config"]["mode"] == "rerank" and report["config"]["scale_top"] == 3
    assert report["manifest"]["model"]["fingerprint"] == FakeEncoder(256).fingerprint
    assert set(report["manifest"]["data_files"]) == {"corpus", "queries", "qrels"}
    # Every judged candidate was ranked: judged@k is exact in rerank mode.
    assert report["configs"]["dense"]["metrics"]["judged@10"] == 1.0
    # Each need shares words with its 强相关 result, so word overlap puts it first.
    assert report["configs"]["lexical"]["metrics"]["strong_precision@1"] == 1.0
    assert report["configs"]["lexical"]["metrics"]["strict_precision@1"] == 1.0
    assert (
        (out / "report.md")
        .read_text(encoding="utf-8")
        .startswith("# techmatch relevance evaluation")
    )
    assert "data:image/png;base64," in (out / "report.html").read_text(encoding="utf-8")
    run = json.loads((out / "runs" / "dense.json").read_text(encoding="utf-8"))
    assert sorted(run) == sorted(NEEDS) and all(len(scores) == 16 for scores in run.values())


def test_run_file_reproduces_the_configuration(dataset: dict[str, Path], tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert (
        CliRunner()
        .invoke(app, _eval_args(dataset, first, "--mode", "rerank", "--config", "dense"))
        .exit_code
        == 0
    )
    second = tmp_path / "second"
    result = CliRunner().invoke(
        app,
        _eval_args(
            dataset, second, "--mode", "rerank", "--run", str(first / "runs" / "dense.json")
        ),
    )
    assert result.exit_code == 0, result.output
    ranked = json.loads((first / "report.json").read_text(encoding="utf-8"))
    from_run = json.loads((second / "report.json").read_text(encoding="utf-8"))
    assert list(from_run["configs"]) == ["run"]
    assert from_run["metrics"] == ranked["configs"]["dense"]["metrics"]
    assert "run" in from_run["manifest"]["data_files"]


def test_eval_retrieve_reports_judged(dataset: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _eval_args(dataset, out, "--mode", "retrieve", "--config", "dense,lexical", "--k", "1,3")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert list(report["configs"]) == ["dense", "lexical"]
    assert report["config"]["default_config"] == "dense"  # no "default": the first one
    assert "judged@3" in report["metrics"] and "ndcg@10" not in report["metrics"]
    run = json.loads((out / "runs" / "lexical.json").read_text(encoding="utf-8"))
    assert all(len(scores) <= 3 for scores in run.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "missing --mode"),
        (["--mode", "sideways"], "mode 'sideways' is not one of rerank, retrieve"),
        (["--mode", "rerank", "--config", "bogus"], "unknown configuration(s) bogus"),
        (["--mode", "rerank", "--k", "1,x"], "--k takes positive integers"),
        (["--mode", "rerank", "--run", "r.json", "--config", "dense"], "give one or the other"),
    ],
)
def test_eval_usage_errors(
    dataset: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, _eval_args(dataset, tmp_path / "out", *extra))
    assert result.exit_code == 2
    assert message in result.output


def test_eval_rejects_qrels_with_unknown_ids(dataset: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nn_farm\tno-such-result\t2\n", encoding="utf-8")
    data = dict(dataset, qrels=bad)
    result = CliRunner().invoke(app, _eval_args(data, tmp_path / "out", "--mode", "rerank"))
    assert result.exit_code == 2
    assert "1 corpus ids of the qrels are not in the corpus (e.g. no-such-result)" in result.output


def test_labelling_loop(dataset: dict[str, Path], tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    Matcher.build(load_results(dataset["corpus"]).records, encoder=FakeEncoder(256)).save(index_dir)
    pool = tmp_path / "pool.csv"
    needs = dataset["queries"]
    result = CliRunner().invoke(
        app,
        ["eval", "export-candidates", "--needs", str(needs), "--index-dir", str(index_dir),
         "--top-k", "2", "--out", str(pool)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = pool.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("query-id,corpus-id,rank,")
    # 5 needs, the union over 4 configurations of the top 2: at least 2 per need.
    assert len(lines) - 1 >= 10
    # Grade everything 1, except one label out of range.
    graded = [lines[0]] + [line[:-2] + ",1," for line in lines[1:]]
    graded[2] = graded[2][:-3] + ",7,"
    pool.write_text("\n".join(graded) + "\n", encoding="utf-8")
    qrels_path = tmp_path / "graded.tsv"
    args = ["eval", "import-labels", str(pool), "--out", str(qrels_path),
            "--corpus", str(dataset["corpus"]), "--queries", str(needs)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert f"{pool}:3: field 'label': 7 is out of range 0–3" in result.output
    assert not qrels_path.exists()
    graded[2] = graded[2][:-3] + ",3,"
    pool.write_text("\n".join(graded) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    qrels = load_qrels(qrels_path)
    assert sum(len(labels) for labels in qrels.values()) == len(lines) - 1
    assert max(label for labels in qrels.values() for label in labels.values()) == 3


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_BENCH.is_dir(), reason="shared CCF data not present")
def test_dense_reproduces_reference_figures(m3e_encoder) -> None:
    """README reference on test, rerank: dense P@1(>=2) 0.333, nDCG@10 0.580 (±0.02).

    Only the judged candidates are indexed: the dense score is a cosine, which
    does not depend on the rest of the corpus.
    """
    from eval.metrics import MetricSettings
    from eval.runner import evaluate_configs, judged_needs, rank_configs
    from matcher.loaders import load_needs

    qrels = load_qrels(SHARED_BENCH / "qrels" / "test.tsv")
    judged = {doc for labels in qrels.values() for doc in labels}
    results = [r for r in load_results(SHARED_BENCH / "corpus.jsonl").records if r.id in judged]
    matcher = Matcher.build(results, encoder=m3e_encoder)
    needs = judged_needs(load_needs(SHARED_BENCH / "queries.jsonl").records, qrels)
    rankings = rank_configs(matcher, needs, qrels, mode="rerank", configs=["dense"], top_k=10)
    evaluation = evaluate_configs(rankings, qrels, mode="rerank", settings=MetricSettings())
    metrics = evaluation.configs["dense"].metrics
    assert evaluation.n_queries == 45
    assert metrics["strong_precision@1"] == pytest.approx(0.333, abs=0.02)
    assert metrics["ndcg@10"] == pytest.approx(0.580, abs=0.02)
