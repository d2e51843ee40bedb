"""Reports: report.json keys and values, report.md, and a self-contained report.html."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from eval.datasets import sha256_file
from eval.metrics import BootstrapSettings, MetricSettings
from eval.report import build_manifest, build_report, render_markdown, write_reports
from eval.runner import Evaluation, RankedResult, evaluate_configs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _evaluation(with_tiers: bool) -> Evaluation:
    rng = np.random.default_rng(0)
    qrels = {
        f"q{i}": {f"d{i}_{j}": int(rng.choice(4, p=[0.45, 0.43, 0.09, 0.03])) for j in range(12)}
        for i in range(8)
    }
    qrels["q_zero"] = {"z1": 0, "z2": 0}
    rankings: dict[str, dict[str, list[RankedResult]]] = {}
    for name, noise in (("dense", 1.0), ("default", 0.5)):
        per_query = {}
        for query_id, labels in qrels.items():
            scores = {doc: label + rng.normal(0, noise) for doc, label in labels.items()}
            ordered = sorted(scores, key=lambda doc: -scores[doc])
            per_query[query_id] = [
                RankedResult(
                    doc,
                    float(scores[doc]),
                    tier=("强相关" if scores[doc] > 1.5 else "weak")
                    if with_tiers and name == "default"
                    else None,
                    p_strong=float(np.clip(scores[doc] / 3, 0, 1))
                    if with_tiers and name == "default"
                    else None,
                )
                for doc in ordered
            ]
        rankings[name] = per_query
    return evaluate_configs(
        rankings,
        qrels,
        mode="rerank",
        settings=MetricSettings(ks=(1, 3, 10)),
        bootstrap=BootstrapSettings(n_resamples=200),
        query_titles={"q0": "<script>alert(1)</script> 需求"},
    )


@pytest.fixture
def manifest(tmp_path: Path) -> dict:
    data = tmp_path / "qrels.tsv"
    data.write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    return build_manifest(
        data_files={"qrels": data, "run": None},
        model={"fingerprint": "fake-256"},
        index={"count": 3},
        settings={"candidates": 100},
        command=["techmatch", "eval"],
    )


def test_manifest_hashes_data_files(manifest: dict, tmp_path: Path) -> None:
    assert set(manifest["data_files"]) == {"qrels"}
    assert manifest["data_files"]["qrels"]["sha256"] == sha256_file(tmp_path / "qrels.tsv")
    assert manifest["model"]["fingerprint"] == "fake-256"
    assert manifest["versions"]["numpy"] == np.__version__
    assert re.match(r"\d{4}-\d\d-\d\dT", manifest["created_at"])


def test_report_json_structure(manifest: dict) -> None:
    evaluation = _evaluation(with_tiers=True)
    report = build_report(evaluation, manifest)
    assert set(report) == {"metrics", "configs", "comparisons", "per_query", "config", "manifest"}
    default = evaluation.configs["default"]
    assert report["metrics"]["strong_precision@1"] == default.metrics["strong_precision@1"]
    assert report["metrics"]["ndcg@10"] == default.metrics["ndcg@10"]
    assert report["config"]["default_config"] == "default"
    assert report["config"]["n_queries"] == 9
    low, high = report["configs"]["dense"]["ci95"]["ndcg@10"]
    assert low <= report["configs"]["dense"]["metrics"]["ndcg@10"] <= high
    assert report["per_query"]["dense"]["q_zero"]["ndcg@10"] == 0.0
    # One comparison per metric for the single pair of configurations.
    assert {c["config_a"] + ">" + c["config_b"] for c in report["comparisons"]} == {"dense>default"}
    calibration = report["configs"]["default"]["calibration"]
    assert {row["tier"] for row in calibration} == {"强相关", "weak"}
    assert sum(row["count"] for row in calibration) == 8 * 12 + 2
    assert report["configs"]["dense"]["calibration"] == []
    assert report["configs"]["default"]["score_by_label"]["0"]["count"] > 0
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere


def test_default_config_falls_back_to_first() -> None:
    qrels = {"q": {"a": 2}}
    rankings = {"x": {"q": [RankedResult("a", 1.0)]}, "y": {"q": []}}
    evaluation = evaluate_configs(rankings, qrels, mode="rerank", settings=MetricSettings(ks=(1,)))
    assert evaluation.default_config == "x"
    with pytest.raises(ValueError, match="not among"):
        evaluate_configs(
            rankings, qrels, mode="rerank", settings=MetricSettings(), default_config="z"
        )


def test_write_reports_html_is_self_contained(manifest: dict, tmp_path: Path) -> None:
    paths = write_reports(_evaluation(with_tiers=True), manifest, tmp_path / "out")
    for path in (paths.json, paths.markdown, paths.html):
        assert path.stat().st_size > 0
        assert path.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
    page = paths.html.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # precision@k, score distribution, calibration
    assert all(base64.b64decode(image).startswith(PNG_SIGNATURE) for image in images)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from outside
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; 需求" in page
    report = json.loads(paths.json.read_text(encoding="utf-8"))
    assert report["metrics"]["strong_precision@1"] == pytest.approx(
        report["configs"]["default"]["metrics"]["strong_precision@1"]
    )


def test_html_without_tiers_says_so(manifest: dict, tmp_path: Path) -> None:
    paths = write_reports(_evaluation(with_tiers=False), manifest, tmp_path)
    page = paths.html.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2
    assert "No configuration predicted tiers" in page


def test_markdown_lists_configs_and_comparisons(manifest: dict) -> None:
    evaluation = _evaluation(with_tiers=True)
    text = render_markdown(build_report(evaluation, manifest))
    dense = evaluation.configs["dense"].metrics["strong_precision@1"]
    assert re.search(rf"^\| dense \| {dense:.3f} \[", text, flags=re.MULTILINE)
    assert "| dense | default | strong_precision@1 |" in text
    assert "### default" in text and "| 强相关 |" in text
    assert "`fake-256`" in text
