"""POST /v1/feedback, GET /v1/feedback/stats and the qrels export."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.feedback import FeedbackStore, iso_week
from api.schemas import FeedbackCreate


def test_feedback_is_stored_and_counted(client: TestClient) -> None:
    response = client.post("/v1/feedback", json={"need_id": "n-acid", "result_id": "r-acid",
                                                 "label": "strong", "reason": "工艺匹配", "user": "张经理",
                                                 "tier": "A", "rank": 1})
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == 1 and body["label"] == "strong" and body["created_at"].endswith("Z")
    client.post("/v1/feedback", json={"need_id": "n-acid", "result_id": "r-lith", "label": "unrelated",
                                      "tier": "C"})
    client.post("/v1/feedback", json={"need_id": "n-fruit", "result_id": "r-fruit", "label": "related",
                                      "tier": "A"})
    client.post("/v1/feedback", json={"need_id": "inline-need", "result_id": "r-fruit", "label": "unrelated",
                                      "tier": None})
    filled = client.post("/v1/feedback", json={"need_id": "n-fruit", "result_id": "r-mine", "label": "weak"})
    # No tier given and the need is stored: the service fills in the tier the matcher gives.
    tier = filled.json()["tier"]
    assert tier is not None
    stats = client.get("/v1/feedback/stats").json()
    assert stats["overall"]["count"] == 5
    assert stats["overall"]["strongly_related_rate"] == pytest.approx(0.4)
    assert stats["overall"]["strong_rate"] == pytest.approx(0.2)
    assert stats["by_tier"]["A"]["strongly_related_rate"] == 1.0
    assert stats["by_tier"]["C"]["strongly_related_rate"] == 0.0
    assert sum(group["count"] for group in stats["by_tier"].values()) == 5
    assert stats["by_tier"]["none"]["count"] == 1  # an unstored need: no tier to fill in
    assert stats["by_tier"][tier]["weak"] >= 1
    assert sum(w["count"] for w in stats["by_week"].values()) == 5
    assert "techmatch_feedback_total 5" in client.get("/metrics").text


def test_feedback_validation(client: TestClient) -> None:
    base = {"need_id": "n-acid", "result_id": "r-acid", "label": "strong"}
    response = client.post("/v1/feedback", json={**base, "label": "great"})
    assert response.status_code == 422 and response.json()["field"] == "label"
    response = client.post("/v1/feedback", json={**base, "result_id": "ghost"})
    assert response.status_code == 404 and response.json()["field"] == "result_id"
    response = client.post("/v1/feedback", json={**base, "reason": "长" * 2001})
    assert response.status_code == 422 and response.json()["field"] == "reason"
    response = client.post("/v1/feedback", json={**base, "need_id": "has\ttab"})
    assert response.status_code == 422


def test_empty_stats(client: TestClient) -> None:
    stats = client.get("/v1/feedback/stats").json()
    assert stats["overall"]["count"] == 0 and stats["overall"]["strongly_related_rate"] is None
    assert stats["by_tier"] == {} and stats["by_week"] == {}


def test_qrels_export_keeps_the_latest_verdict_and_eval_reads_it(client: TestClient, tmp_path: Path) -> None:
    client.post("/v1/feedback", json={"need_id": "n-acid", "result_id": "r-acid", "label": "weak"})
    client.post("/v1/feedback", json={"need_id": "n-acid", "result_id": "r-acid", "label": "strong"})
    client.post("/v1/feedback", json={"need_id": "n-acid", "result_id": "r-lith", "label": "unrelated"})
    client.post("/v1/feedback", json={"need_id": "n-fruit", "result_id": "r-fruit", "label": "related"})
    response = client.get("/v1/feedback/qrels")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/tab-separated-values")
    assert response.text == ("query-id\tcorpus-id\tscore\n"
                             "n-acid\tr-acid\t3\nn-acid\tr-lith\t0\nn-fruit\tr-fruit\t2\n")
    datasets = pytest.importorskip("eval.datasets")
    path = tmp_path / "feedback.tsv"
    path.write_text(response.text, encoding="utf-8")
    assert datasets.load_qrels(path) == {"n-acid": {"r-acid": 3, "r-lith": 0}, "n-fruit": {"r-fruit": 2}}


def test_store_weeks_and_export(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    item = FeedbackCreate(need_id="n", result_id="r", label="related")
    store.add(item, now=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    store.add(item.model_copy(update={"result_id": "s", "label": "unrelated"}),
              now=dt.datetime(2025, 2, 14, tzinfo=dt.UTC))
    weeks = store.stats().by_week
    assert list(weeks) == ["2025-W01", "2025-W07"]
    assert weeks["2025-W01"].strongly_related_rate == 1.0
    assert store.export_qrels(tmp_path / "q.tsv") == 2
    assert iso_week("2024-12-30T10:00:00Z") == "2025-W01"
    store.close()
