"""The record store keeps each result's signal profile with it, and reads older stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from matcher.records import ResearchResult
from matcher.signals import result_profile
from matcher.store import RecordStore

RESULTS = [
    ResearchResult(id="r1", title="锂离子 电池 正极 材料 制备 方法", keywords=["正极材料"], field="新能源"),
    ResearchResult(id="r2", title="印染废水深度处理与回用工艺", description="MBR 工艺用于印染废水。"),
    ResearchResult(id="r3", title="的 和"),  # no terms at all
]


def test_stored_profiles_equal_profiles_computed_from_the_records(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.sqlite")
    store.upsert("results", RESULTS)
    got = store.profiled_results(["r1", "r2", "r3", "missing"])
    assert set(got) == {"r1", "r2", "r3"}
    for record in RESULTS:
        stored_record, profile = got[record.id]
        assert stored_record == record
        assert profile == result_profile(record)
    assert got["r3"][1] is not None and got["r3"][1].terms == ()


def test_an_edit_replaces_the_stored_profile(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.sqlite")
    store.upsert("results", RESULTS[:1])
    edited = RESULTS[0].model_copy(update={"title": "小麦 抗病 品种 选育"})
    store.upsert("results", [edited])
    _, profile = store.profiled_results(["r1"])["r1"]
    assert profile is not None and "小麦" in profile.terms and "锂离子" not in profile.terms


def test_a_store_written_before_profiles_existed_still_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE results (id TEXT PRIMARY KEY, json TEXT NOT NULL)")
    db.execute("INSERT INTO results VALUES (?, ?)", ("r1", RESULTS[0].model_dump_json()))
    db.commit()
    db.close()
    store = RecordStore(path)
    record, profile = store.profiled_results(["r1"])["r1"]
    assert record == RESULTS[0] and profile is None  # the Matcher profiles such rows on read
    store.upsert("results", RESULTS[1:2])
    assert store.profiled_results(["r2"])["r2"][1] == result_profile(RESULTS[1])
