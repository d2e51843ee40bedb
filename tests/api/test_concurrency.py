"""Matching while records are written from other threads: no error, no lost record."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from matcher.matcher import Matcher
from models.fake import FakeEncoder


def test_concurrent_writes_during_matching(client: TestClient, index_dir: Path) -> None:
    errors: list[str] = []
    stop = threading.Event()
    matches_done = [0]

    def reader() -> None:
        while not stop.is_set():
            response = client.post("/v1/match", json={"need": {"title": "纳米材料酸雾"}, "top_k": 20})
            if response.status_code != 200:
                errors.append(f"match {response.status_code} {response.text[:200]}")
                return
            matches_done[0] += 1

    def writer(n: int) -> None:
        for i in range(25):
            rid = f"w{n}-{i}"
            response = client.put(f"/v1/results/{rid}", json={"title": f"纳米材料成果{n}-{i}"})
            if response.status_code != 200:
                errors.append(f"put {rid} {response.status_code}")
            if i % 5 == 4:  # delete one of this writer's earlier records
                gone = f"w{n}-{i - 2}"
                if client.delete(f"/v1/results/{gone}").status_code != 200:
                    errors.append(f"delete {gone}")
        bulk = [{"id": f"w{n}-bulk-{i}", "title": f"批量纳米成果{i}"} for i in range(40)]
        if client.post("/v1/results:bulk", json={"results": bulk}).status_code != 200:
            errors.append(f"bulk {n}")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=60)
    assert not errors, errors[:5]
    assert matches_done[0] > 0
    expected = {f"w{n}-{i}" for n in range(3) for i in range(25) if i % 5 != 2}
    expected |= {f"w{n}-bulk-{i}" for n in range(3) for i in range(40)}
    deleted = {f"w{n}-{i}" for n in range(3) for i in range(25) if i % 5 == 2}
    assert client.get("/readyz").json()["results"] == 4 + len(expected)
    for rid in sorted(expected)[:: 7]:
        assert client.get(f"/v1/results/{rid}").status_code == 200, rid
    for rid in deleted:
        assert client.get(f"/v1/results/{rid}").status_code == 404, rid
    # The index agrees with the store: a fresh load holds exactly the same ids.
    reloaded = Matcher.load(index_dir, FakeEncoder())
    assert set(reloaded.results.vector.ids) == expected | {"r-acid", "r-lith", "r-fruit", "r-mine"}
