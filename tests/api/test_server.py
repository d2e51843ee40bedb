"""The real thing: uvicorn on a loopback port, called over HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from api.app import create_app
from api.settings import ApiSettings
from matcher.matcher import Matcher
from models.fake import FakeEncoder
from tests.api.conftest import KEY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(port: int, method: str, path: str, body: dict | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_uvicorn_on_loopback_over_real_http(index_dir: Path) -> None:
    port = _free_port()
    app = create_app(ApiSettings(index_dir=index_dir, api_keys=KEY), Matcher.load(index_dir, FakeEncoder()))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            assert thread.is_alive(), "uvicorn exited during start-up"
            time.sleep(0.05)
        assert _call(port, "GET", "/healthz") == (200, {"status": "ok"})
        status, body = _call(port, "POST", "/v1/match", {"need": {"title": "磺化车间酸雾治理"}, "top_k": 2})
        assert status == 200 and body["matches"][0]["result_id"] == "r-acid"
        status, body = _call(port, "PUT", "/v1/results/r-http", {"title": "远程写入的成果"})
        assert status == 401 and body["error"] == "missing_api_key"
        status, body = _call(port, "PUT", "/v1/results/r-http", {"title": "远程写入的成果"}, {"X-API-Key": KEY})
        assert status == 200 and body["results"] == 5
        status, body = _call(port, "POST", "/v1/match", {"need": {"title": "远程写入"}, "top_k": 1})
        assert body["matches"][0]["result_id"] == "r-http"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
    # The lifespan's shutdown checkpoint ran: the write is in the snapshot.
    assert "r-http" in Matcher.load(index_dir, FakeEncoder()).results.vector


def test_serve_is_mounted_on_the_cli() -> None:
    from matcher.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--index-dir" in result.output and "--port" in result.output and "--host" in result.output
