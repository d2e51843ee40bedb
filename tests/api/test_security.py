"""Auth rules: keys on writes, optional on reads, constant-time comparison, never logged."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from api.security import describe_auth, key_matches
from api.settings import ApiSettings
from tests.api.conftest import KEY, ClientFactory

WRITE = ("PUT", "/v1/results/r-new", {"title": "新成果"})
READ = ("POST", "/v1/match", {"need": {"title": "酸雾"}})


def _call(client: TestClient, route: tuple[str, str, dict], key: str | None = None) -> int:
    method, path, body = route
    headers = {"X-API-Key": key} if key is not None else {}
    return client.request(method, path, json=body, headers=headers).status_code


def test_without_keys_writes_are_refused_reads_are_open(make_client: ClientFactory) -> None:
    with make_client() as client:
        response = client.put("/v1/results/r-new", json={"title": "新成果"})
        assert response.status_code == 403
        assert response.json()["error"] == "writes_disabled"
        assert "TECHMATCH_ALLOW_ANONYMOUS_WRITES" in response.json()["detail"]
        for path in ("/v1/results/r-acid", "/v1/needs/n-acid"):
            assert client.delete(path).status_code == 403
        assert client.post("/v1/feedback", json={"need_id": "n", "result_id": "r-acid",
                                                 "label": "weak"}).status_code == 403
        assert _call(client, READ) == 200


def test_anonymous_writes_when_allowed(make_client: ClientFactory) -> None:
    with make_client(allow_anonymous_writes=True) as client:
        assert _call(client, WRITE) == 200


def test_with_keys_writes_need_a_valid_key(make_client: ClientFactory) -> None:
    with make_client(api_keys=f"other-key,{KEY}", allow_anonymous_writes=True) as client:
        response = client.put("/v1/results/r-new", json={"title": "新成果"})
        assert response.status_code == 401 and response.json()["error"] == "missing_api_key"
        response = client.put("/v1/results/r-new", json={"title": "新成果"}, headers={"X-API-Key": "wrong"})
        assert response.status_code == 401 and response.json()["error"] == "invalid_api_key"
        assert _call(client, WRITE, KEY) == 200
        assert _call(client, WRITE, "other-key") == 200
        assert _call(client, WRITE, KEY + "x") == 401
        assert _call(client, READ) == 200  # reads stay open by default


def test_protected_reads(make_client: ClientFactory) -> None:
    with make_client(api_keys=KEY, protect_reads=True) as client:
        assert _call(client, READ) == 401
        assert client.get("/v1/feedback/stats").status_code == 401
        assert client.get("/v1/results/r-acid").status_code == 401
        assert _call(client, READ, KEY) == 200
        assert client.get("/healthz").status_code == 200  # monitoring stays open
        assert client.get("/metrics").status_code == 200


def test_key_matches() -> None:
    keys = [b"alpha", b"beta"]
    assert key_matches("beta", keys)
    assert not key_matches("bet", keys)
    assert not key_matches("", keys)
    assert not key_matches("ключ", keys)  # non-ASCII compares as bytes, no error


def test_keys_never_appear_in_settings_repr_or_logs(make_client: ClientFactory,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = ApiSettings(api_keys=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert "1 configured" in describe_auth(settings)
    with caplog.at_level(logging.DEBUG), make_client(api_keys=KEY) as client:
        client.put("/v1/results/r-new", json={"title": "x"}, headers={"X-API-Key": KEY})
        client.put("/v1/results/r-new", json={"title": "x"}, headers={"X-API-Key": KEY + "-bad"})
    assert "API keys: 1 configured" in caplog.text
    assert KEY not in caplog.text


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHMATCH_API_KEYS", " k1 , k2,,")
    monkeypatch.setenv("TECHMATCH_ALLOW_ANONYMOUS_WRITES", "true")
    settings = ApiSettings()
    assert settings.key_bytes() == [b"k1", b"k2"]
    assert settings.allow_anonymous_writes is True


def test_startup_log_warns_about_anonymous_writes(make_client: ClientFactory,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="techmatch.api"), make_client(allow_anonymous_writes=True):
        pass
    assert "ANYONE who can reach this port may write" in caplog.text
