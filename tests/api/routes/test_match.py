"""POST /v1/match, /v1/match/batch, GET /v1/needs/{id}/matches, GET /v1/results/{id}/needs."""

from __future__ import annotations

from fastapi.testclient import TestClient

ACID_NEED = {"title": "酸雾治理", "description": "磺化车间酸雾排放，需要酸雾净化技术"}


def test_match_inline_ranks_the_related_result_first(client: TestClient) -> None:
    response = client.post("/v1/match", json={"need": ACID_NEED, "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["need_id"] == "inline"
    assert [m["rank"] for m in body["matches"]] == [1, 2, 3]
    assert body["matches"][0]["result_id"] == "r-acid"
    assert body["matches"][0]["result"]["title"] == "磺化尾气酸雾净化装置"
    assert body["took_ms"] >= 0
    assert body["analysis"]["text"].startswith("酸雾治理。")
    assert body["analysis"]["key_sentences"][0] == "酸雾治理"
    assert "酸雾" in [t["term"] for t in body["analysis"]["key_terms"]]
    assert body["analysis"]["truncated"] is False


def test_match_by_stored_need_id(client: TestClient) -> None:
    body = client.post("/v1/match", json={"need_id": "n-fruit", "top_k": 1}).json()
    assert body["need_id"] == "n-fruit"
    assert [m["result_id"] for m in body["matches"]] == ["r-fruit"]


def test_match_unknown_need_id_is_404_naming_the_field(client: TestClient) -> None:
    response = client.post("/v1/match", json={"need_id": "nope"})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "need 'nope' does not exist", "field": "need_id"}


def test_match_needs_exactly_one_of_need_and_need_id(client: TestClient) -> None:
    for body in ({}, {"need": ACID_NEED, "need_id": "n-acid"}):
        response = client.post("/v1/match", json=body)
        assert response.status_code == 422
        assert "exactly one" in response.json()["detail"]


def test_match_top_k_bounds(client: TestClient) -> None:
    for top_k in (0, 101, -1):
        response = client.post("/v1/match", json={"need": ACID_NEED, "top_k": top_k})
        assert response.status_code == 422, top_k
        assert response.json()["field"] == "top_k"
    assert client.post("/v1/match", json={"need": ACID_NEED, "top_k": 100}).status_code == 200


def test_match_filters_and_unknown_config(client: TestClient) -> None:
    body = client.post("/v1/match", json={"need": ACID_NEED, "filters": {"region": "山东"}}).json()
    assert [m["result_id"] for m in body["matches"]] == ["r-fruit"]
    body = client.post("/v1/match", json={"need": ACID_NEED, "filters": {"transfer_mode": "许可"}}).json()
    assert [m["result_id"] for m in body["matches"]] == ["r-lith"]
    response = client.post("/v1/match", json={"need": ACID_NEED, "config": "magic"})
    assert response.status_code == 422 and response.json()["field"] == "config"
    response = client.post("/v1/match", json={"need": ACID_NEED, "filters": {"colour": "red"}})
    assert response.status_code == 422 and response.json()["field"] == "filters.colour"


def test_match_without_records(client: TestClient) -> None:
    body = client.post("/v1/match", json={"need": ACID_NEED, "include_records": False}).json()
    assert body["matches"] and all(m["result"] is None for m in body["matches"])


def test_batch_matches_inline_then_stored_needs_in_order(client: TestClient) -> None:
    response = client.post("/v1/match/batch", json={"needs": [{"id": "q1", **ACID_NEED}],
                                                    "need_ids": ["n-fruit"], "top_k": 1})
    assert response.status_code == 200
    responses = response.json()["responses"]
    assert [(r["need_id"], r["matches"][0]["result_id"]) for r in responses] == [
        ("q1", "r-acid"), ("n-fruit", "r-fruit")]


def test_batch_size_limits(client: TestClient) -> None:
    assert client.post("/v1/match/batch", json={"needs": []}).status_code == 422
    too_many = {"needs": [{"id": f"q{i}", "title": "酸雾"} for i in range(60)],
                "need_ids": [f"n{i}" for i in range(41)]}
    response = client.post("/v1/match/batch", json=too_many)
    assert response.status_code == 422 and "101 entries" in response.json()["detail"]
    hundred = {"needs": [{"id": f"q{i}", "title": "酸雾"} for i in range(100)], "top_k": 1}
    assert len(client.post("/v1/match/batch", json=hundred).json()["responses"]) == 100


def test_batch_unknown_need_id_names_its_position(client: TestClient) -> None:
    response = client.post("/v1/match/batch", json={"need_ids": ["n-acid", "ghost"]})
    assert response.status_code == 404
    assert response.json()["field"] == "need_ids[1]"


def test_get_matches_of_a_stored_need(client: TestClient) -> None:
    body = client.get("/v1/needs/n-acid/matches", params={"top_k": 2}).json()
    assert body["matches"][0]["result_id"] == "r-acid" and len(body["matches"]) == 2
    assert client.get("/v1/needs/ghost/matches").status_code == 404
    assert client.get("/v1/needs/n-acid/matches", params={"top_k": 500}).status_code == 422


def test_results_to_needs_push(client: TestClient) -> None:
    body = client.get("/v1/results/r-fruit/needs", params={"top_k": 1}).json()
    assert body["result_id"] == "r-fruit"
    assert [m["need_id"] for m in body["matches"]] == ["n-fruit"]
    assert body["matches"][0]["need"]["company"] is None
    assert client.get("/v1/results/ghost/needs").status_code == 404
