"""The optimised signal path gives exactly what the per-pair signal functions give.

``compute_signals`` prepares the need once per call and reads each result's side from its
profile (``matcher.profiles``); these tests pin it to the plain per-pair functions on real-looking records, pin a
few values computed by hand, and pin a small Matcher ranking, including after a record edit
(a memo keyed by id would serve the stale text).
"""

from __future__ import annotations

import numpy as np
import pytest

from matcher.matcher import Matcher
from matcher.need_analysis import KeyTerm, analyse_need, key_terms
from matcher.profiles import CandidateProfiles, profiles_of, result_row
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.signals import (
    TermStats,
    bigram_coverage,
    compute_signals,
    field_agreement,
    key_term_overlap,
    maturity_compatibility,
    region_match,
    result_terms,
    result_text,
    specificity,
    term_overlap,
    title_similarity,
    transfer_mode_compatibility,
)
from matcher.text import join_cjk, render_need
from models.fake import FakeEncoder

NEEDS = [
    EnterpriseNeed(
        id="n-battery",
        title="防爆锂离子电池的研发",
        description="需求内容：开发高安全性锂离子电池正极材料，解决热失控问题。预期目标：通过针刺试验。"
        "现有工作基础：公司有员工200人。",
        industry="新能源",
        region="河南省郑州市",
        metadata={"maturity": "中试", "transfer_modes": "技术转让；合作开发"},
    ),
    EnterpriseNeed(
        id="n-water",
        title="印染废水深度处理技术",
        description="印染企业废水COD高、色度大，需要低成本的深度处理与回用工艺。",
        keywords=["废水处理"],
    ),
]
RESULTS = [
    ResearchResult(id="r-cathode", title="锂离子 电池 正极 材料 制备 方法", keywords=["正极材料", "锂电池"],
                   field="新能源汽车", maturity="产业化", transfer_modes=["技术转让"], region="郑州"),
    ResearchResult(id="r-separator", title="高安全性动力电池隔膜的研究",
                   description="针对锂离子电池热失控，提出陶瓷涂覆隔膜，通过针刺试验。",
                   field="材料科学", maturity="小试", transfer_modes=["许可"]),
    ResearchResult(id="r-dye", title="印染 废水 高级 氧化 处理 技术", keywords=["芬顿氧化", "COD"],
                   field="环境工程", region="河南"),
    ResearchResult(id="r-membrane", title="膜生物反应器处理工业废水及回用",
                   description="MBR工艺用于印染与化工废水的深度处理。"),
    ResearchResult(id="r-generic", title="的 和", description=""),  # no terms at all
    ResearchResult(id="r-wheat", title="小麦 抗病 品种 选育", keywords=["小麦"], field="农学"),
]


def profiled(results: list[ResearchResult]) -> CandidateProfiles:
    return profiles_of([result_row(r) for r in results])


def reference_signals(need: EnterpriseNeed, need_text: str, results: list[ResearchResult],
                      keys: list[KeyTerm], stats: TermStats | None) -> dict[str, list[object]]:
    """The per-pair definition of every text and record signal, as the functions state it."""
    out: dict[str, list[object]] = {name: [] for name in (
        "term_overlap", "key_term_overlap", "bigram_coverage", "title_similarity", "mean_idf",
        "generic_share", "field", "maturity", "transfer_mode", "region", "matched", "matched_key")}
    for r in results:
        terms = result_terms(r)
        overlap = term_overlap(need_text, terms, stats)
        key_overlap = key_term_overlap(keys, result_text(r))
        mean_idf, generic = specificity(terms, stats)
        out["term_overlap"].append(overlap.score)
        out["key_term_overlap"].append(key_overlap.score)
        out["bigram_coverage"].append(bigram_coverage(need_text, join_cjk(r.title)))
        out["title_similarity"].append(title_similarity(need.title, r.title))
        out["mean_idf"].append(mean_idf)
        out["generic_share"].append(generic)
        out["field"].append(field_agreement(need, r))
        out["maturity"].append(maturity_compatibility(need, r))
        out["transfer_mode"].append(transfer_mode_compatibility(need, r))
        out["region"].append(region_match(need, r))
        out["matched"].append(overlap.matched)
        out["matched_key"].append(key_overlap.matched)
    return out


@pytest.mark.parametrize("with_stats", [True, False])
@pytest.mark.parametrize("need", NEEDS, ids=lambda n: n.id)
def test_compute_signals_equals_the_per_pair_functions(need: EnterpriseNeed, with_stats: bool) -> None:
    stats = TermStats.from_token_lists(result_terms(r) for r in RESULTS) if with_stats else None
    need_text = render_need(need)
    keys = analyse_need(need).key_terms
    n = len(RESULTS)
    signals = compute_signals(need, need_text, profiled(RESULTS), np.linspace(0.9, 0.1, n), np.arange(n, dtype=float),
                              keys, stats=stats)
    ref = reference_signals(need, need_text, RESULTS, keys, stats)
    for name, expected in ref.items():
        if name == "matched":
            assert list(signals.matched_terms) == expected
        elif name == "matched_key":
            assert signals.matched_key_terms == expected
        else:  # bit-identical, not merely close: rankings and tiers must not move
            np.testing.assert_array_equal(signals.values[name], np.asarray(expected, np.float32), err_msg=name)
    # Twice, with every memo warm, the same answer.
    again = compute_signals(need, need_text, profiled(RESULTS), np.linspace(0.9, 0.1, n), np.arange(n, dtype=float),
                            keys, stats=stats)
    for name in signals.values:
        np.testing.assert_array_equal(again.values[name], signals.values[name])


def test_pinned_signal_values() -> None:
    need = NEEDS[0]
    need_text = render_need(need)
    cathode, separator, generic = RESULTS[0], RESULTS[1], RESULTS[4]
    keys = [KeyTerm("锂离子电池", 2.0), KeyTerm("热失控", 1.0), KeyTerm("氢燃料", 1.0)]
    signals = compute_signals(need, need_text, profiled([cathode, separator, generic]), np.zeros(3), np.zeros(3), keys)
    values = signals.values
    # cathode terms: 锂离子 电池 正极 材料 制备 方法 正极材料 锂电池; the need text holds
    # 锂离子, 电池, 正极, 材料 and 正极材料 → 5 of 8 with uniform weights.
    assert result_terms(cathode) == ["锂离子", "电池", "正极", "材料", "制备", "方法", "正极材料", "锂电池"]
    assert values["term_overlap"][0] == pytest.approx(5 / 8)
    assert set(signals.matched_terms[0]) == {"锂离子", "电池", "正极", "材料", "正极材料"}
    # generic share: 材料, 制备, 方法 are generic → 3 / 8; a title without terms is all generic.
    assert values["generic_share"][0] == pytest.approx(3 / 8)
    assert values["generic_share"][2] == 1.0 and values["term_overlap"][2] == 0.0
    # key terms: the separator's text holds 锂离子电池 and 热失控 (3 of 4 weight); the
    # cathode's pre-segmented 锂离子 电池 compacts to 锂离子电池 (2 of 4), 热失控 is absent.
    assert values["key_term_overlap"][1] == pytest.approx(3 / 4)
    assert signals.matched_key_terms[1] == ("锂离子电池", "热失控")
    assert values["key_term_overlap"][0] == pytest.approx(2 / 4)
    assert signals.matched_key_terms[0] == ("锂离子电池",)
    # record agreements: 新能源 ⊂ 新能源汽车; 产业化 ≥ 中试 asked; 技术转让 wanted; 郑州 ⊂ 河南省郑州市.
    assert [values[k][0] for k in ("field", "maturity", "transfer_mode", "region")] == [1.0, 1.0, 1.0, 1.0]
    # the separator is less mature than asked and offers only a licence.
    assert values["maturity"][1] == -1.0 and values["transfer_mode"][1] == -1.0
    # title bigrams: 锂离子电池正极材料制备方法 vs 防爆锂离子电池的研发 share 锂离 离子 子电 电池.
    a, b = 13 - 1, 10 - 1
    assert values["title_similarity"][0] == pytest.approx(4 / (a + b - 4))
    assert values["bigram_coverage"][0] == pytest.approx(bigram_coverage(need_text, "锂离子电池正极材料制备方法"))


def test_key_terms_are_a_fresh_list_each_call() -> None:
    text = "开发高安全性锂离子电池正极材料，解决热失控问题"
    first = key_terms(text)
    first.clear()  # a caller mutating its list must not empty the memoised answer
    assert key_terms(text) and key_terms(text) == key_terms(text)


def test_matcher_ranking_is_pinned_and_follows_record_edits() -> None:
    matcher = Matcher.build(RESULTS, encoder=FakeEncoder(dimension=256))
    battery, water = matcher.match_batch(NEEDS, top_k=3)
    # Pinned from the implementation before the optimisations (same records, same encoder);
    # the scores re-pinned when fusion-v1 was retrained on dictionary-tagged key terms.
    assert [m.result_id for m in battery] == ["r-cathode", "r-separator", "r-membrane"]
    assert [m.result_id for m in water] == ["r-membrane", "r-dye", "r-separator"]
    assert [m.score for m in battery] == pytest.approx([-6.459966, -9.053858, -11.968981], abs=1e-5)
    assert battery[0].reasons[:2] == ["关键词重合: 锂离子、电池、正极材料", "领域一致: 新能源汽车"]
    assert water[1].reasons == ["关键词重合: 废水、印染、cod、处理", "标题相近", "语义相似度 0.40"]
    # Same call again (every memo warm): identical output.
    assert [[m.model_dump() for m in ms] for ms in matcher.match_batch(NEEDS, top_k=3)] == [
        [m.model_dump() for m in ms] for ms in (battery, water)]
    # Re-title r-wheat into a battery result: its signals must follow the new text.
    matcher.upsert_results([RESULTS[5].model_copy(update={"title": "锂离子 电池 热失控 防护 技术"})])
    edited = {m.result_id: m for m in matcher.match(NEEDS[0], top_k=6)}
    assert "r-wheat" in edited and edited["r-wheat"].components["term_overlap"] > 0.5
