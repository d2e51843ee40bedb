"""Each signal function on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matcher.need_analysis import KeyTerm, analyse_need, split_sections
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.profiles import profiles_of, result_row
from matcher.signals import (
    SIGNAL_NAMES,
    TermStats,
    bigram_coverage,
    compute_signals,
    dense_views,
    field_agreement,
    key_term_overlap,
    maturity_compatibility,
    max_normalise,
    region_match,
    result_terms,
    specificity,
    term_overlap,
    title_similarity,
    transfer_mode_compatibility,
    zscore_within,
)


def need(**kw: object) -> EnterpriseNeed:
    return EnterpriseNeed(**{"id": "n1", "title": "防爆锂离子电池的研发", **kw})  # type: ignore[arg-type]


def result(**kw: object) -> ResearchResult:
    return ResearchResult(**{"id": "r1", "title": "锂离子 电池 正极 材料", **kw})  # type: ignore[arg-type]


def test_zscore_within_standardises_and_handles_constants() -> None:
    z = zscore_within(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0, abs=1e-6)
    assert z.std() == pytest.approx(1.0, abs=1e-5)
    assert z[2] > z[1] > z[0]
    assert np.all(zscore_within(np.array([5.0, 5.0])) == 0)
    assert zscore_within(np.array([])).shape == (0,)


def test_max_normalise_scales_by_best() -> None:
    assert max_normalise(np.array([2.0, 4.0, 0.0])).tolist() == [0.5, 1.0, 0.0]
    assert max_normalise(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]


def test_term_stats_idf_orders_rare_above_common() -> None:
    stats = TermStats.from_token_lists([["技术", "锂电池"], ["技术", "钢"], ["技术"]])
    assert stats.documents == 3
    assert stats.document_frequency["技术"] == 3
    assert stats.idf("锂电池") > stats.idf("技术")
    assert stats.idf("未见") == pytest.approx(math.log(4 / 1) + 1)


def test_result_terms_keep_presegmented_boundaries_and_keywords() -> None:
    terms = result_terms(result(keywords=["储能"]))
    assert terms[:4] == ["锂离子", "电池", "正极", "材料"]
    assert terms[-1] == "储能"


def test_term_overlap_weights_matches_by_idf() -> None:
    stats = TermStats.from_token_lists([["电池"], ["电池"], ["电池", "正极"], ["材料"]])
    terms = ["锂离子", "电池", "正极", "材料"]
    overlap = term_overlap("锂离子电池的正极", terms, stats)
    weights = {t: stats.idf(t) for t in terms}
    expected = (weights["锂离子"] + weights["电池"] + weights["正极"]) / sum(weights.values())
    assert overlap.score == pytest.approx(expected)
    assert set(overlap.matched) == {"锂离子", "电池", "正极"}
    assert overlap.matched[-1] == "电池"  # the most common matched term is quoted last
    assert term_overlap("无关文本", terms, None).score == 0.0
    assert term_overlap("任何", [], stats) == term_overlap("", [], None)


def test_key_term_overlap_matches_across_spaces() -> None:
    terms = [KeyTerm("锂离子电池", 2.0), KeyTerm("防爆", 1.0), KeyTerm("隔膜", 1.0)]
    overlap = key_term_overlap(terms, "锂离子 电池 防爆 装置")
    assert overlap.score == pytest.approx(3.0 / 4.0)
    assert overlap.matched == ("锂离子电池", "防爆")
    assert key_term_overlap([], "任何").score == 0.0


def test_bigram_coverage_and_title_similarity() -> None:
    assert bigram_coverage("立方氮化硼单晶", "氮化硼") == 1.0
    assert bigram_coverage("钢铁", "氮化硼") == 0.0
    assert bigram_coverage("任何", "") == 0.0
    assert title_similarity("氮化硼单晶", "氮化硼 单晶") == 1.0
    # {氮化, 化硼} vs {氮化, 化铝}: one shared of three
    assert title_similarity("氮化硼", "氮化铝") == pytest.approx(1 / 3)


def test_dense_views_title_row_and_best_sentence() -> None:
    views = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    results = np.array([[0.6, 0.8], [1.0, 0.0]], np.float32)
    title, best = dense_views(views, results, np.zeros(2))
    assert title.tolist() == pytest.approx([0.6, 1.0])
    assert best.tolist() == pytest.approx([0.8, 1.0])
    fallback = np.array([0.3, 0.4], np.float32)
    title, best = dense_views(None, results, fallback)
    assert title.tolist() == best.tolist() == pytest.approx([0.3, 0.4])


def test_specificity_penalises_generic_titles() -> None:
    stats = TermStats.from_token_lists([["高性能", "材料", "制备", "工艺"]] * 50 + [["氟化锂"]])
    generic_idf, generic_share = specificity(["高性能", "材料", "制备", "工艺"], stats)
    specific_idf, specific_share = specificity(["氟化锂", "制备"], stats)
    assert generic_share == 1.0 and specific_share == 0.5
    assert specific_idf > generic_idf
    assert specificity([], stats) == (0.0, 1.0)


def test_record_compatibility_signals() -> None:
    assert field_agreement(need(industry="新能源"), result(field="新能源汽车")) == 1.0
    assert field_agreement(need(industry="新能源"), result(field="生物医药")) == -1.0
    assert field_agreement(need(), result(field="新能源")) == 0.0
    assert maturity_compatibility(need(metadata={"maturity": "中试"}), result(maturity="产业化")) == 1.0
    assert maturity_compatibility(need(metadata={"maturity": "产业化"}), result(maturity="小试")) == -1.0
    assert maturity_compatibility(need(), result(maturity="小试")) == 0.0
    wants = need(metadata={"transfer_modes": "技术转让；合作开发"})
    assert transfer_mode_compatibility(wants, result(transfer_modes=["合作开发"])) == 1.0
    assert transfer_mode_compatibility(wants, result(transfer_modes=["许可"])) == -1.0
    assert transfer_mode_compatibility(need(), result(transfer_modes=["许可"])) == 0.0
    assert region_match(need(region="河南"), result(region="河南省")) == 1.0
    assert region_match(need(region="河南"), result(region="北京")) == 0.0


def test_compute_signals_degrades_without_optional_inputs() -> None:
    results = [result(), result(id="r2", title="钢铁 冶炼 技术")]
    signals = compute_signals(
        need(), "防爆锂离子电池的研发", profiles_of([result_row(r) for r in results]), np.array([0.8, 0.5]), np.array([3.0, 0.0]),
        [KeyTerm("锂离子", 1.0), KeyTerm("防爆", 1.0)],
    )
    assert set(signals.values) == set(SIGNAL_NAMES)
    assert all(len(v) == 2 for v in signals.values.values())
    assert signals.values["dense_title"].tolist() == pytest.approx([0.8, 0.5])
    assert signals.values["term_overlap"][0] > signals.values["term_overlap"][1] == 0.0
    assert signals.values["key_term_overlap"].tolist() == pytest.approx([0.5, 0.0])
    assert "锂离子" in signals.matched_terms[0]
    assert signals.values["field"].tolist() == [0.0, 0.0]


def test_split_sections_and_analysis_ignore_company_background() -> None:
    text = ("一、需求内容：\n开发高韧性立方氮化硼单晶。\n二、预期目标：\n抗冲击韧性≥67%。\n"
            "三、现有工作基础：\n公司现有标准化厂房3栋，销售收入2002万元。")
    sections = split_sections(text)
    assert set(sections) == {"需求内容", "预期目标", "现有工作基础"}
    assert sections["需求内容"].startswith("开发高韧性立方氮化硼单晶")
    analysis = analyse_need(need(title="高韧性立方氮化硼单晶的研制", description=text))
    assert analysis.key_sentences[0] == "高韧性立方氮化硼单晶的研制"
    assert not any("厂房" in s for s in analysis.key_sentences)
    terms = [t.term for t in analysis.key_terms]
    assert any("氮化硼" in t for t in terms)
    assert "厂房" not in terms
    assert split_sections("没有标题的需求") == {}


def test_analysis_puts_given_keywords_first() -> None:
    analysis = analyse_need(need(description="研发防爆的锂电池。", keywords=["防爆电池"]))
    assert analysis.key_terms[0].term == "防爆电池"
