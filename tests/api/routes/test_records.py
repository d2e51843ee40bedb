"""PUT / DELETE / bulk for results and needs: the next match sees every change."""

from __future__ import annotations

from fastapi.testclient import TestClient

NEW_RESULT = {"title": "等离子体废气处理设备", "description": "低温等离子体分解有机废气", "keywords": ["等离子体"]}


def _top(client: TestClient, title: str, k: int = 1) -> list[str]:
    body = client.post("/v1/match", json={"need": {"title": title}, "top_k": k}).json()
    return [m["result_id"] for m in body["matches"]]


def test_put_result_is_matched_next_and_readable(client: TestClient) -> None:
    response = client.put("/v1/results/r-plasma", json=NEW_RESULT)
    assert response.status_code == 200
    assert response.json() == {"ids": ["r-plasma"], "upserted": 1, "deleted": 0, "results": 5, "needs": 2}
    assert _top(client, "低温等离子体分解有机废气") == ["r-plasma"]
    assert client.get("/v1/results/r-plasma").json()["keywords"] == ["等离子体"]


def test_put_is_idempotent_and_replaces(client: TestClient) -> None:
    client.put("/v1/results/r-plasma", json=NEW_RESULT)
    replaced = {**NEW_RESULT, "title": "微波干燥设备", "description": "微波干燥中药材"}
    body = client.put("/v1/results/r-plasma", json=replaced).json()
    assert body["results"] == 5  # replaced, not duplicated
    assert _top(client, "微波干燥中药材") == ["r-plasma"]
    assert client.get("/v1/results/r-plasma").json()["title"] == "微波干燥设备"


def test_put_body_id_must_match_path(client: TestClient) -> None:
    response = client.put("/v1/results/r-a", json={**NEW_RESULT, "id": "r-b"})
    assert response.status_code == 422
    assert response.json()["field"] == "id"
    assert client.put("/v1/results/r-a", json={**NEW_RESULT, "id": "r-a"}).status_code == 200


def test_delete_result_removes_it_from_later_matches(client: TestClient) -> None:
    assert _top(client, "磺化车间酸雾净化") == ["r-acid"]
    response = client.delete("/v1/results/r-acid")
    assert response.status_code == 200 and response.json()["deleted"] == 1
    assert "r-acid" not in _top(client, "磺化车间酸雾净化", k=10)
    assert client.get("/v1/results/r-acid").status_code == 404
    assert client.delete("/v1/results/r-acid").status_code == 404
    assert client.get("/readyz").json()["results"] == 3


def test_bulk_results(client: TestClient) -> None:
    items = [{"id": f"b-{i}", "title": f"批量成果{i}号 纳米材料"} for i in range(30)]
    body = client.post("/v1/results:bulk", json={"results": items}).json()
    assert body["upserted"] == 30 and body["results"] == 34
    assert client.get("/v1/results/b-29").status_code == 200


def test_bulk_limits(client: TestClient) -> None:
    assert client.post("/v1/results:bulk", json={"results": []}).status_code == 422
    over = {"results": [{"id": f"b-{i}", "title": "x"} for i in range(1001)]}
    response = client.post("/v1/results:bulk", json=over)
    assert response.status_code == 422 and response.json()["field"] == "results"
    dup = {"results": [{"id": "same", "title": "x"}, {"id": "same", "title": "y"}]}
    response = client.post("/v1/results:bulk", json=dup)
    assert response.status_code == 422 and "appears twice" in response.json()["detail"]
    missing_id = {"results": [{"title": "x"}]}
    response = client.post("/v1/results:bulk", json=missing_id)
    assert response.status_code == 422 and response.json()["field"] == "results[0].id"


def test_bulk_of_1000_is_accepted(client: TestClient) -> None:
    items = [{"id": f"k-{i}", "title": f"成果{i}"} for i in range(1000)]
    assert client.post("/v1/results:bulk", json={"results": items}).json()["results"] == 1004


def test_field_limits_name_the_field(client: TestClient) -> None:
    cases = {
        "title": {"title": "长" * 20_001},
        "description": {"title": "t", "description": "长" * 20_001},
        "keywords": {"title": "t", "keywords": ["k"] * 51},
        "region": {"title": "t", "region": "区" * 201},
        "metadata": {"title": "t", "metadata": {"x": "y" * 20_001}},
        "transfer_modes": {"title": "t", "transfer_modes": ["m"] * 21},
    }
    for field, body in cases.items():
        response = client.put("/v1/results/r-x", json=body)
        assert response.status_code == 422, field
        assert response.json()["field"] == field, response.json()
    assert client.put("/v1/results/r-x", json={"title": "长" * 20_000}).status_code == 200
    assert client.put("/v1/results/r-x", json={"title": "   "}).status_code == 422


def test_bad_ids_in_path(client: TestClient) -> None:
    assert client.put("/v1/results/" + "a" * 201, json=NEW_RESULT).status_code == 422
    assert client.put("/v1/results/has%20space", json=NEW_RESULT).status_code == 422


def test_needs_put_get_delete_bulk(client: TestClient) -> None:
    need = {"title": "等离子体废气处理", "description": "需要低温等离子体分解有机废气技术", "industry": "化工"}
    assert client.put("/v1/needs/n-plasma", json=need).json()["needs"] == 3
    assert client.get("/v1/needs/n-plasma").json()["industry"] == "化工"
    client.put("/v1/results/r-plasma", json=NEW_RESULT)
    pushed = client.get("/v1/results/r-plasma/needs", params={"top_k": 1}).json()["matches"]
    assert [m["need_id"] for m in pushed] == ["n-plasma"]
    assert client.delete("/v1/needs/n-plasma").json()["needs"] == 2
    assert client.get("/v1/needs/n-plasma").status_code == 404
    pushed = client.get("/v1/results/r-plasma/needs").json()["matches"]
    assert "n-plasma" not in [m["need_id"] for m in pushed]
    bulk = {"needs": [{"id": f"nb-{i}", "title": f"需求{i}"} for i in range(5)]}
    assert client.post("/v1/needs:bulk", json=bulk).json()["needs"] == 7
    assert client.post("/v1/needs:bulk", json={"needs": [{"id": "x", "title": "t"}] * 2}).status_code == 422
