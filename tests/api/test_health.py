"""/healthz, /readyz, /metrics and the OpenAPI docs."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready == {"status": "ready", "results": 4, "needs": 2,
                     "encoder": "fake-hash-v1/dim=256/norm=l2", "index": "flat"}


def test_metrics_by_route_template(client: TestClient) -> None:
    client.post("/v1/match", json={"need": {"title": "酸雾"}})
    client.post("/v1/match", json={"need": {"title": "酸雾"}})
    client.post("/v1/match", json={"top_k": 0})
    client.get("/v1/needs/n-acid/matches")
    client.get("/v1/needs/n-fruit/matches")
    client.get("/nowhere")
    text = client.get("/metrics").text
    assert 'techmatch_http_requests_total{method="POST",route="/v1/match",status="200"} 2' in text
    assert 'techmatch_http_requests_total{method="POST",route="/v1/match",status="422"} 1' in text
    assert 'techmatch_http_requests_total{method="GET",route="/v1/needs/{need_id}/matches",status="200"} 2' in text
    assert 'route="<unmatched>",status="404"} 1' in text
    assert 'techmatch_http_request_duration_seconds_count{method="POST",route="/v1/match"} 3' in text
    assert re.search(r'duration_seconds_bucket\{method="POST",route="/v1/match",le="\+Inf"\} 3', text)
    assert "techmatch_index_results 4" in text and "techmatch_index_needs 2" in text
    assert "n-acid" not in text  # ids never become labels


def test_openapi_has_the_routes_and_chinese_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/v1/match", "/v1/match/batch", "/v1/needs/{need_id}/matches", "/v1/results/{result_id}/needs",
            "/v1/results/{result_id}", "/v1/results:bulk", "/v1/needs/{need_id}", "/v1/needs:bulk",
            "/v1/feedback", "/v1/feedback/stats", "/v1/feedback/qrels", "/healthz", "/readyz",
            "/metrics"} <= paths
    examples = spec["components"]["schemas"]["MatchRequest"]["examples"]
    assert "酸雾" in examples[0]["need"]["title"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200
