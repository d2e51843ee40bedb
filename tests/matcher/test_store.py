"""The record store keeps each result's profile columns with it, and reads older stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from matcher.records import ResearchResult
from matcher.profiles import ResultRow, result_row
from matcher.store import RecordStore

RESULTS = [
    ResearchResult(id="r1", title="锂离子 电池 正极 材料 制备 方法", keywords=["正极材料"], field="新能源"),
    ResearchResult(id="r2", title="印染废水深度处理与回用工艺", description="MBR 工艺用于印染废水。"),
    ResearchResult(id="r3", title="的 和"),  # no terms at all
]


def same_row(a: ResultRow, b: ResultRow) -> bool:
    return (a.terms, a.compact_text, a.grams.tolist(), a.generic_share, a.title_key, a.facets) == (
        b.terms, b.compact_text, b.grams.tolist(), b.generic_share, b.title_key, b.facets)


def test_stored_profiles_equal_profiles_computed_from_the_records(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.sqlite")
    store.upsert("results", RESULTS)
    got = store.result_rows(["r1", "r2", "r3", "missing"])
    assert set(got) == {"r1", "r2", "r3"}
    for record in RESULTS:
        assert same_row(got[record.id], result_row(record))
    assert got["r3"].terms == () and got["r3"].generic_share == 1.0
    assert got["r1"].facets.field == "新能源"


def test_an_edit_replaces_the_stored_profile(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.sqlite")
    store.upsert("results", RESULTS[:1])
    edited = RESULTS[0].model_copy(update={"title": "小麦 抗病 品种 选育"})
    store.upsert("results", [edited])
    row = store.result_rows(["r1"])["r1"]
    assert "小麦" in row.terms and "锂离子" not in row.terms


def test_a_store_written_before_profiles_existed_still_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE results (id TEXT PRIMARY KEY, json TEXT NOT NULL)")
    db.execute("INSERT INTO results VALUES (?, ?)", ("r1", RESULTS[0].model_dump_json()))
    db.commit()
    db.close()
    store = RecordStore(path)
    # The row predates the profile columns: its profile is computed from the record on read.
    assert same_row(store.result_rows(["r1"])["r1"], result_row(RESULTS[0]))
    assert store.results(["r1"])["r1"] == RESULTS[0]
    store.upsert("results", RESULTS[1:2])
    assert same_row(store.result_rows(["r2"])["r2"], result_row(RESULTS[1]))
