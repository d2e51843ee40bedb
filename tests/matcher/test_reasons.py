"""Reasons name only terms found in both texts, and mark where they are."""

from __future__ import annotations

import numpy as np

from matcher.need_analysis import analyse_need
from matcher.reasons import explain, find_spans, mark, reason_line, shared_terms
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.profiles import profiles_of, result_row
from matcher.signals import compute_signals

NEED = EnterpriseNeed(
    id="n1", title="高镍三元锂电池正极材料开发",
    description="需求内容：开发高镍三元正极材料，提高锂电池循环寿命。", industry="新能源",
)
RESULT = ResearchResult(id="r1", title="锂电池 高镍 正极材料 制备 方法", field="新能源")
OTHER = ResearchResult(id="r2", title="小麦 育种 施肥")


def _text(need: EnterpriseNeed) -> str:
    return f"{need.title}。{need.description}"


def test_shared_terms_requires_both_texts_and_drops_contained_terms() -> None:
    terms = shared_terms("锂电池正极材料", "锂电池 正极材料 制备", ["锂电池", "电池", "正极材料", "隔膜"])
    assert terms == ["锂电池", "正极材料"]
    assert shared_terms("锂电池", "小麦 育种", ["锂电池"]) == []


def test_find_spans_allow_spaces_inside_presegmented_terms() -> None:
    text = "锂离子 电池 正极"
    spans = find_spans(text, ["锂离子电池"])
    assert len(spans) == 1
    assert text[spans[0].start : spans[0].end] == "锂离子 电池"
    assert mark(text, spans) == "【锂离子 电池】 正极"


def test_explain_names_real_shared_terms_with_spans() -> None:
    text = _text(NEED)
    analysis = analyse_need(NEED)
    signals = compute_signals(NEED, text, profiles_of([result_row(RESULT), result_row(OTHER)]), np.array([0.82, 0.4]), np.array([5.0, 0.0]),
                              analysis.key_terms)
    for row, result in enumerate([RESULT, OTHER]):
        pair = {k: float(v[row]) for k, v in signals.values.items()}
        candidates = list(signals.matched_key_terms[row]) + list(signals.matched_terms[row])
        explanation = explain(NEED, text, result, pair, candidates)
        result_text = result.title
        for term in explanation.terms:
            assert find_spans(text, [term]) and find_spans(result_text, [term])
        for span in explanation.need_spans:
            assert text[span.start : span.end].replace(" ", "") == span.term
        for span in explanation.result_spans:
            assert result_text[span.start : span.end].replace(" ", "") == span.term
        assert explanation.reasons
    good = explain(NEED, text, RESULT, {k: float(v[0]) for k, v in signals.values.items()},
                   list(signals.matched_key_terms[0]) + list(signals.matched_terms[0]))
    line = reason_line(good)
    assert line.startswith("关键词重合: ")
    assert "锂电池" in good.terms
    assert "语义相似度 0.82" in line
    assert "领域一致: 新能源" in line
    bad = explain(NEED, text, OTHER, {k: float(v[1]) for k, v in signals.values.items()},
                  ["小麦", "锂电池"])
    assert bad.terms == []
    assert not any(r.startswith("关键词重合") for r in bad.reasons)
    assert bad.reasons == ["语义相似度 0.40"]
