"""Metrics against hand-computed cases, sklearn's nDCG and a brute-force reimplementation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from eval.metrics import (
    BootstrapSettings,
    MetricSettings,
    bootstrap_ci,
    bootstrap_cis,
    compare_configs,
    dcg,
    judged_at_k,
    mean_metrics,
    metric_names,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    per_query_metrics,
    probability_calibration,
    query_metrics,
    recall_at_k,
    strict_precision_at_k,
    strong_precision_at_k,
    tier_calibration,
)

# a:3 b:0 c:2 d:1 are ranked; e:3 is judged but never ranked.
LABELS = {"a": 3, "b": 0, "c": 2, "d": 1, "e": 3}
RANKING = ["a", "b", "c", "d"]


# ---------------------------------------------------------------- hand-computed


def test_strong_precision_hand_computed() -> None:
    assert strong_precision_at_k(RANKING, LABELS, 1) == 1.0
    assert strong_precision_at_k(RANKING, LABELS, 3) == pytest.approx(2 / 3)
    # Only 4 results ranked: still divided by k = 5.
    assert strong_precision_at_k(RANKING, LABELS, 5) == pytest.approx(2 / 5)
    assert strong_precision_at_k(RANKING, LABELS, 3, strong_min=3) == pytest.approx(1 / 3)
    assert strong_precision_at_k(["b", "d"], LABELS, 2) == 0.0


def test_strict_precision_counts_only_scale_top() -> None:
    assert strict_precision_at_k(RANKING, LABELS, 1) == 1.0
    assert strict_precision_at_k(RANKING, LABELS, 3) == pytest.approx(1 / 3)
    assert strict_precision_at_k(["c", "d"], LABELS, 2) == 0.0
    assert strict_precision_at_k(["c", "d"], LABELS, 2, scale_top=2) == 0.5


def test_ndcg_hand_computed() -> None:
    # DCG@3 = (2^3-1)/log2(2) + 0/log2(3) + (2^2-1)/log2(4) = 7 + 1.5 = 8.5
    # ideal from all labels 3,3,2: 7 + 7/log2(3) + 3/2
    ideal = 7 + 7 / math.log2(3) + 1.5
    assert ndcg_at_k(RANKING, LABELS, 3) == pytest.approx(8.5 / ideal)
    assert ndcg_at_k(["a", "e", "c", "d", "b"], LABELS, 5) == pytest.approx(1.0)
    assert dcg([3, 0, 2]) == pytest.approx(8.5)
    assert dcg([]) == 0.0


def test_ndcg_ideal_uses_unranked_labels() -> None:
    # Ranking only the weak result is not perfect: the ideal knows about "strong".
    labels = {"weak": 1, "strong": 3}
    assert ndcg_at_k(["weak"], labels, 1) == pytest.approx(1 / 7)


def test_ndcg_all_zero_labels_counts_zero() -> None:
    assert ndcg_at_k(["x", "y"], {"x": 0, "y": 0}, 10) == 0.0


def test_mrr_hand_computed() -> None:
    assert mrr_at_k(RANKING, LABELS, 10) == 1.0
    assert mrr_at_k(["b", "d", "c"], LABELS, 3) == pytest.approx(1 / 3)
    assert mrr_at_k(["b", "d", "c"], LABELS, 2) == 0.0
    # Label 1 is not relevant at strong_min 2, but is at 1.
    assert mrr_at_k(["b", "d"], LABELS, 2, strong_min=1) == 0.5


def test_recall_hand_computed() -> None:
    # relevant = {a, c, e}
    assert recall_at_k(RANKING, LABELS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RANKING, LABELS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING + ["e"], LABELS, 10) == 1.0
    assert recall_at_k(["x"], {"x": 1}, 1) == 0.0  # no relevant result: 0
    assert recall_at_k(["a", "a"], LABELS, 2) == pytest.approx(1 / 3)  # no double counting


def test_judged_and_unjudged_results() -> None:
    ranking = ["a", "zzz", "c"]
    assert judged_at_k(ranking, LABELS, 3) == pytest.approx(2 / 3)
    assert judged_at_k(ranking, LABELS, 4) == pytest.approx(2 / 4)
    # The unjudged result counts as not relevant.
    assert strong_precision_at_k(ranking, LABELS, 2) == 0.5
    assert ndcg_at_k(["zzz"], {"x": 2}, 1) == 0.0


@pytest.mark.parametrize(
    "function",
    [strong_precision_at_k, strict_precision_at_k, ndcg_at_k, mrr_at_k, recall_at_k, judged_at_k],
)
def test_k_must_be_positive(function) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        function(RANKING, LABELS, 0)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="cut-offs"):
        MetricSettings(ks=(0, 1))
    with pytest.raises(ValueError, match="above the top"):
        MetricSettings(strong_min=4, scale_top=3)
    assert MetricSettings(ks=(10, 1)).max_k == 10


def test_metric_names_order() -> None:
    names = metric_names([10, 1])
    assert names[:2] == ["strong_precision@1", "strong_precision@10"]
    assert "judged@10" in names and len(names) == 12


def test_per_query_missing_query_counts_zero_and_unjudged_ignored() -> None:
    qrels = {"q1": {"a": 3}, "q2": {"b": 2}}
    rankings = {"q1": ["a"], "other": ["b"]}
    per_query = per_query_metrics(rankings, qrels, MetricSettings(ks=(1,)))
    assert list(per_query) == ["q1", "q2"]
    assert per_query["q1"]["strong_precision@1"] == 1.0
    assert all(value == 0.0 for value in per_query["q2"].values())
    assert mean_metrics(per_query)["strong_precision@1"] == 0.5
    assert mean_metrics({}) == {}


# ---------------------------------------------------------------- independent implementations


def _random_query(rng: np.random.Generator) -> tuple[list[str], dict[str, int], np.ndarray]:
    n = int(rng.integers(1, 30))
    labels_array = rng.choice(4, size=n, p=[0.45, 0.43, 0.09, 0.03])
    scores = rng.normal(size=n)  # continuous: no ties, so sklearn's tie averaging is moot
    ids = [f"d{i}" for i in range(n)]
    ranking = [ids[i] for i in np.argsort(-scores)]
    return ranking, dict(zip(ids, labels_array.tolist(), strict=True)), scores


@pytest.mark.parametrize("k", [1, 3, 5, 10, 50])
def test_ndcg_matches_sklearn_with_exponential_gains(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(200):
        ranking, labels, scores = _random_query(rng)
        if len(labels) < 2:
            continue  # sklearn needs at least two documents
        gains = np.array([2.0 ** labels[f"d{i}"] - 1.0 for i in range(len(labels))])
        expected = ndcg_score(gains[np.newaxis, :], scores[np.newaxis, :], k=k)
        assert ndcg_at_k(ranking, labels, k) == pytest.approx(expected, abs=1e-12)


def _naive_metrics(
    ranking: list[str], labels: dict[str, int], k: int, strong_min: int, top: int
) -> dict[str, float]:
    """Deliberately different code: explicit loops and a brute-force ideal DCG."""
    top_k = ranking[:k]
    got = [labels.get(doc, 0) for doc in top_k]
    dcg_value = 0.0
    for position, label in enumerate(got):
        dcg_value += (2**label - 1) / math.log2(position + 2)
    all_labels = list(labels.values())
    best = 0.0
    # The ideal DCG is the best over all orderings of the judged labels.
    for perm in itertools.permutations(all_labels, min(k, len(all_labels))):
        value = sum((2**label - 1) / math.log2(i + 2) for i, label in enumerate(perm))
        best = max(best, value)
    first = next((i + 1 for i, label in enumerate(got) if label >= strong_min), None)
    relevant = [doc for doc, label in labels.items() if label >= strong_min]
    return {
        "strong_precision": len([x for x in got if x >= strong_min]) / k,
        "strict_precision": len([x for x in got if x == top]) / k,
        "ndcg": dcg_value / best if best > 0 else 0.0,
        "mrr": 1 / first if first else 0.0,
        "recall": len([doc for doc in relevant if doc in top_k]) / len(relevant)
        if relevant
        else 0.0,
        "judged": len([doc for doc in top_k if doc in labels]) / k,
    }


def test_all_metrics_match_naive_implementation() -> None:
    rng = np.random.default_rng(7)
    settings = MetricSettings(strong_min=2, scale_top=3, ks=(1, 2, 3, 5))
    for _ in range(150):
        n = int(rng.integers(1, 7))  # small: the naive ideal enumerates permutations
        labels = {f"d{i}": int(rng.integers(0, 4)) for i in range(n)}
        # Rankings may include unjudged ids and skip judged ones.
        pool = list(labels) + ["u1", "u2"]
        ranking = [
            pool[i] for i in rng.permutation(len(pool))[: int(rng.integers(0, len(pool) + 1))]
        ]
        values = query_metrics(ranking, labels, settings)
        for k in settings.ks:
            naive = _naive_metrics(ranking, labels, k, settings.strong_min, settings.scale_top)
            for family, expected in naive.items():
                assert values[f"{family}@{k}"] == pytest.approx(expected, abs=1e-12), (family, k)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_deterministic_and_brackets_mean() -> None:
    values = np.random.default_rng(1).random(45)
    first = bootstrap_ci(values)
    assert first == bootstrap_ci(values)
    assert first[0] < values.mean() < first[1]
    # About mean ± 1.96 standard errors for a mean of 45 values.
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    assert first[1] - first[0] == pytest.approx(2 * 1.96 * standard_error, rel=0.15)


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        BootstrapSettings(n_resamples=0)
    with pytest.raises(ValueError):
        BootstrapSettings(confidence=1.0)


def test_bootstrap_cis_agree_with_single_metric_ci() -> None:
    rng = np.random.default_rng(3)
    per_query = {f"q{i:02d}": {"m": float(rng.random()), "n": 1.0} for i in range(30)}
    settings = BootstrapSettings(n_resamples=500, seed=11)
    intervals = bootstrap_cis(per_query, settings)
    values = [per_query[q]["m"] for q in sorted(per_query)]
    assert intervals["m"] == pytest.approx(bootstrap_ci(values, settings))
    assert intervals["n"] == (1.0, 1.0)


def test_paired_bootstrap_detects_consistent_gain_and_not_noise() -> None:
    rng = np.random.default_rng(5)
    a = rng.random(50)
    diff, low, high, p_value = paired_bootstrap(a, a + 0.05)
    assert diff == pytest.approx(0.05)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05)
    assert p_value == 0.0
    same = paired_bootstrap(a, a)
    assert same[0] == 0.0 and same[3] == 1.0
    noisy = paired_bootstrap(a, rng.permutation(a))
    assert noisy[1] < 0.0 < noisy[2]
    assert noisy[3] > 0.05
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_compare_configs_requires_same_queries() -> None:
    a = {"q1": {"m": 0.0}, "q2": {"m": 1.0}}
    b = {"q1": {"m": 1.0}, "q2": {"m": 1.0}}
    (comparison,) = compare_configs(a, b, ["m"], config_a="A", config_b="B")
    assert (comparison.mean_a, comparison.mean_b, comparison.diff) == (0.5, 1.0, 0.5)
    assert comparison.n_queries == 2
    with pytest.raises(ValueError, match="different queries"):
        compare_configs(a, {"q1": {"m": 1.0}}, ["m"], config_a="A", config_b="B")


# ---------------------------------------------------------------- calibration


def test_tier_calibration_counts_and_order() -> None:
    observations = [
        ("weak", 0, 0.1),
        ("weak", 1, 0.2),
        ("strong", 3, 0.9),
        ("strong", 2, 0.8),
        ("strong", 0, 0.7),
    ]
    rows = tier_calibration(observations, label_scale=[0, 1, 2, 3], strong_min=2)
    assert [row.tier for row in rows] == ["strong", "weak"]  # by mean score, not by label
    assert rows[0].label_counts == {0: 1, 1: 0, 2: 1, 3: 1}
    assert rows[0].count == 3 and rows[0].strong_share == pytest.approx(2 / 3)
    assert rows[1].label_counts == {0: 1, 1: 1, 2: 0, 3: 0}
    assert rows[1].strong_share == 0.0
    assert tier_calibration([], label_scale=[0, 1]) == []


def test_probability_calibration_bins() -> None:
    observations = [(0.05, 0), (0.08, 2), (0.95, 3), (1.0, 2), (0.91, 0)]
    bins = probability_calibration(observations, strong_min=2, n_bins=10)
    assert [(b.low, b.count) for b in bins] == [(0.0, 2), (pytest.approx(0.9), 3)]
    assert bins[0].observed == 0.5
    assert bins[1].observed == pytest.approx(2 / 3)
    assert bins[1].mean_predicted == pytest.approx((0.95 + 1.0 + 0.91) / 3)
    with pytest.raises(ValueError):
        probability_calibration(observations, n_bins=0)
