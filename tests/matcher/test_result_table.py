"""The result table gathers exactly the profiles computed from the records, through writes,
deletes, replacements and a save → load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcher.need_analysis import analyse_need
from matcher.profiles import CandidateProfiles, csr_take, profiles_of, result_row
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.result_table import ResultTable
from matcher.signals import TermStats, compute_signals, result_terms
from matcher.text import render_need

RESULTS = [
    ResearchResult(id="r1", title="锂离子 电池 正极 材料 制备 方法", keywords=["正极材料", "锂电池"],
                   field="新能源汽车", maturity="产业化", transfer_modes=["技术转让", "许可"], region="郑州"),
    ResearchResult(id="r2", title="高安全性动力电池隔膜的研究",
                   description="针对锂离子电池热失控，提出陶瓷涂覆隔膜，通过针刺试验。", field="材料科学"),
    ResearchResult(id="r3", title="印染 废水 高级 氧化 处理 技术", keywords=["芬顿氧化", "COD"], region="河南"),
    ResearchResult(id="r4", title="的 和"),  # no terms
    ResearchResult(id="r5", title="膜生物反应器处理工业废水及回用", description="MBR工艺用于印染废水。"),
]
NEED = EnterpriseNeed(id="n1", title="防爆锂离子电池的研发", industry="新能源", region="河南省郑州市",
                      description="需求内容：开发高安全性锂离子电池正极材料，解决热失控问题。",
                      metadata={"maturity": "中试", "transfer_modes": "技术转让"})


def signals_of(profiles: CandidateProfiles) -> dict[str, np.ndarray]:
    stats = TermStats.from_token_lists(result_terms(r) for r in RESULTS)
    n = len(profiles)
    signals = compute_signals(NEED, render_need(NEED), profiles, np.linspace(0.9, 0.1, n), np.arange(n, dtype=float),
                              analyse_need(NEED).key_terms, stats=stats)
    return {**signals.values, "matched": list(signals.matched_terms), "matched_key": signals.matched_key_terms}


def assert_same(table: ResultTable, records: list[ResearchResult]) -> None:
    ids, gathered = table.gather([r.id for r in records])
    assert ids == [r.id for r in records]
    expected = profiles_of([result_row(r) for r in records])
    assert gathered.facets == expected.facets
    assert gathered.compact_texts == expected.compact_texts
    assert gathered.title_keys.tolist() == expected.title_keys.tolist()
    for n in range(len(records)):
        assert gathered.terms(n) == expected.terms(n)
    got, want = signals_of(gathered), signals_of(expected)
    for name in want:
        if isinstance(want[name], np.ndarray):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            assert got[name] == want[name], name


def test_gather_equals_profiles_of_the_records_in_any_order() -> None:
    table = ResultTable()
    table.add([r.id for r in RESULTS[:3]], [result_row(r) for r in RESULTS[:3]])
    table.add([r.id for r in RESULTS[3:]], [result_row(r) for r in RESULTS[3:]])  # a second segment
    order = [RESULTS[i] for i in (4, 0, 3, 2, 1)]
    assert_same(table, order)
    ids, profiles = table.gather(["r2", "missing", "r1"])
    assert ids == ["r2", "r1"] and len(profiles) == 2


def test_replace_remove_save_and_load(tmp_path: Path) -> None:
    table = ResultTable()
    table.add([r.id for r in RESULTS], [result_row(r) for r in RESULTS])
    edited = RESULTS[1].model_copy(update={"title": "小麦 抗病 品种 选育", "field": None, "transfer_modes": ["合作开发"]})
    table.add([edited.id], [result_row(edited)])
    assert table.remove(["r3", "nope"]) == 1
    live = [RESULTS[0], edited, RESULTS[3], RESULTS[4]]
    assert len(table) == 4 and "r3" not in table
    assert_same(table, live)
    table.save(tmp_path / "table")
    loaded = ResultTable.load(tmp_path / "table")
    assert len(loaded) == 4 and "r3" not in loaded
    assert "锂离子" in loaded.vocab and "印染" not in loaded.vocab  # vocabulary of live rows only
    assert_same(loaded, live)
    # Writes after loading go to a new segment next to the memory-mapped one.
    loaded.add(["r3"], [result_row(RESULTS[2])])
    assert_same(loaded, [RESULTS[2], *live])


def test_an_empty_table_saves_and_loads(tmp_path: Path) -> None:
    ResultTable().save(tmp_path / "t")
    loaded = ResultTable.load(tmp_path / "t")
    ids, profiles = loaded.gather(["x"])
    assert ids == [] and len(profiles) == 0


@pytest.mark.parametrize("rows", [[2, 0, 2], [1], []])
def test_csr_take_reads_rows_in_order_with_repeats(rows: list[int]) -> None:
    data = np.array([10, 11, 20, 30, 31, 32])
    offsets = np.array([0, 2, 3, 6])
    lengths, flat = csr_take(offsets, data, np.array(rows, np.int64))
    expected = [data[offsets[r] : offsets[r + 1]].tolist() for r in rows]
    assert lengths.tolist() == [len(e) for e in expected]
    assert flat.tolist() == [x for e in expected for x in e]
