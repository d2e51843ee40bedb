"""Body cap, malformed input and the error shape: bad input is a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import KEY, ClientFactory


@pytest.fixture
def small_client(make_client: ClientFactory) -> TestClient:
    with make_client(api_keys=KEY, max_body_bytes=4096) as client:
        client.headers["X-API-Key"] = KEY
        yield client


def test_body_over_the_cap_is_413(small_client: TestClient) -> None:
    big = {"title": "长" * 3000}  # 9,000 bytes of UTF-8
    response = small_client.put("/v1/results/r-big", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert "4096 bytes" in response.json()["detail"]
    assert small_client.get("/v1/results/r-big").status_code == 404


def test_streamed_body_over_the_cap_is_413(small_client: TestClient) -> None:
    payload = json.dumps({"title": "长" * 3000}, ensure_ascii=False).encode()

    def chunks():  # no Content-Length: sent chunked
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    response = small_client.put("/v1/results/r-big", content=chunks(),
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_body_under_the_cap_passes(small_client: TestClient) -> None:
    assert small_client.put("/v1/results/r-ok", json={"title": "长" * 1000}).status_code == 200


BAD_BODIES = [
    b"{bad json",
    b"",
    b"[]",
    b"null",
    b'"text"',
    b'{"need": "not an object"}',
    b'{"need": {"title": 5}}',
    b'{"need": {"title": ["x"]}}',
    b'{"need": {"title": "x", "keywords": "a;b", "budget": {"x": 1}}}',
    b'{"need": {"title": "x"}, "top_k": "ten"}',
    b'{"need": {"title": "x"}, "top_k": 1e308}',
    b'{"need": {"title": "x"}, "filters": []}',
    b'{"need": {"title": "x"}, "extra": 1}',
    b'{"need_id": ""}',
    b'\xff\xfe',
    '{"need": {"title": "\ud800"}}'.encode("utf-8", "surrogatepass"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_match_bodies_are_4xx_with_the_error_shape(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/match", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    payload = response.json()
    assert set(payload) >= {"error", "detail"} and payload["detail"]


def test_invalid_json_names_the_problem(client: TestClient) -> None:
    response = client.post("/v1/match", content=b"{bad", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize("path,body", [
    ("/v1/results:bulk", b'{"results": [{"id": "a", "title": "t", "transfer_modes": 7}]}'),
    ("/v1/needs:bulk", b'{"needs": "x"}'),
    ("/v1/feedback", b'{"need_id": "n", "result_id": "r-acid", "label": 3}'),
    ("/v1/match/batch", b'{"needs": [{"title": ""}]}'),
])
def test_bad_write_bodies_are_422(client: TestClient, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    response = client.get("/v1/match")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
