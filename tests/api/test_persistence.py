"""Everything written over HTTP survives an app restart, with or without a clean shutdown."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from matcher.matcher import Matcher
from models.fake import FakeEncoder
from tests.api.conftest import KEY

HEADERS = {"X-API-Key": KEY}


def _app(index_dir: Path):  # type: ignore[no-untyped-def]
    return create_app(ApiSettings(index_dir=index_dir, api_keys=KEY), Matcher.load(index_dir, FakeEncoder()))


def _write_some(client: TestClient) -> None:
    assert client.put("/v1/results/r-plasma", json={"title": "等离子体废气处理设备"}, headers=HEADERS).status_code == 200
    assert client.put("/v1/needs/n-plasma", json={"title": "有机废气等离子体处理"}, headers=HEADERS).status_code == 200
    assert client.delete("/v1/results/r-acid", headers=HEADERS).status_code == 200
    assert client.post("/v1/feedback", json={"need_id": "n-plasma", "result_id": "r-plasma", "label": "strong"},
                       headers=HEADERS).status_code == 201


def _check_restored(client: TestClient) -> None:
    assert client.get("/readyz").json()["results"] == 4  # 4 built - 1 deleted + 1 added
    assert client.get("/v1/results/r-plasma").status_code == 200
    assert client.get("/v1/results/r-acid").status_code == 404
    body = client.post("/v1/match", json={"need": {"title": "等离子体废气处理"}, "top_k": 10}).json()
    ids = [m["result_id"] for m in body["matches"]]
    assert ids[0] == "r-plasma" and "r-acid" not in ids
    pushed = client.get("/v1/results/r-plasma/needs", params={"top_k": 1}).json()["matches"]
    assert pushed[0]["need_id"] == "n-plasma"
    assert client.get("/v1/feedback/stats").json()["overall"]["strong"] == 1


def test_writes_survive_a_clean_restart(index_dir: Path) -> None:
    with TestClient(_app(index_dir)) as client:
        _write_some(client)
    # The shutdown checkpoint folded the writes into the snapshot.
    with TestClient(_app(index_dir)) as client:
        _check_restored(client)
        assert client.get("/metrics").text.count("techmatch_changes_since_checkpoint 0") == 1


def test_writes_survive_a_crash_without_checkpoint(index_dir: Path) -> None:
    crashed = TestClient(_app(index_dir))
    crashed.__enter__()  # lifespan started; it is never shut down, so no checkpoint runs
    try:
        _write_some(crashed)
        # A second process opens the same directory: the store's change log is replayed.
        with TestClient(_app(index_dir)) as client:
            _check_restored(client)
    finally:
        crashed.__exit__(None, None, None)


def test_an_empty_directory_starts_an_empty_index(tmp_path: Path) -> None:
    index_dir = tmp_path / "fresh"
    settings = ApiSettings(index_dir=index_dir, allow_anonymous_writes=True)
    with TestClient(create_app(settings, encoder=FakeEncoder())) as client:
        assert client.get("/readyz").json()["results"] == 0
        assert client.post("/v1/match", json={"need": {"title": "任何需求"}}).json()["matches"] == []
        client.put("/v1/results/r1", json={"title": "酸雾净化"})
    with TestClient(create_app(settings, encoder=FakeEncoder())) as client:
        body = client.post("/v1/match", json={"need": {"title": "酸雾"}}).json()
        assert [m["result_id"] for m in body["matches"]] == ["r1"]


def test_a_directory_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    app = create_app(ApiSettings(index_dir=tmp_path / "other"), encoder=FakeEncoder())
    try:
        with TestClient(app):
            raise AssertionError("start-up should fail")
    except FileNotFoundError as exc:
        assert "is not an index directory" in str(exc)


def test_bulk_writes_trigger_a_background_checkpoint(index_dir: Path) -> None:
    settings = ApiSettings(index_dir=index_dir, api_keys=KEY, checkpoint_after=10)
    app = create_app(settings, Matcher.load(index_dir, FakeEncoder()))
    with TestClient(app) as client:
        items = [{"id": f"b-{i}", "title": f"成果{i}"} for i in range(12)]
        client.post("/v1/results:bulk", json={"results": items}, headers=HEADERS)
        # Background tasks run after the response, before TestClient returns.
        assert "techmatch_changes_since_checkpoint 0" in client.get("/metrics").text
    snapshot = Matcher.load(index_dir, FakeEncoder())
    assert len(snapshot.results) == 16
