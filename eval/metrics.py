"""Graded-relevance metrics for ranked lists, as pure functions.

Conventions (they match the reference figures in the data README):

* ``strong_precision@k`` is the share of the top ``k`` whose label is at
  least ``strong_min``; ``strict_precision@k`` the share whose label equals
  the top of the label scale. Both divide by ``k`` even when fewer than
  ``k`` results were ranked, as TREC precision does, so a short list is
  not rewarded.
* ``ndcg@k`` uses gains ``2**label - 1`` and the ideal ordering of *all* the
  query's judged labels (not only the ranked ones). A query whose labels
  are all 0 has no ideal gain and counts as 0.
* ``mrr@k`` and ``recall@k`` call a result relevant when its label is at
  least ``strong_min``. A query with no such result counts as 0 for both,
  in line with the nDCG convention: means then stay comparable with the
  reference figures, which average over every judged query.
* ``judged@k`` is the share of the top ``k`` that has any judgement; in
  retrieve mode, unjudged results count as not relevant, so this says how
  far the other figures are lower bounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Labels = Mapping[str, int]
"""Graded labels of one query: ``{doc_id: label}``."""

Qrels = Mapping[str, Mapping[str, int]]
"""Graded labels of every query: ``{query_id: {doc_id: label}}``."""

PerQuery = dict[str, dict[str, float]]
"""Metric values of each query: ``{query_id: {metric_name: value}}``."""

METRIC_FAMILIES: tuple[str, ...] = (
    "strong_precision",
    "strict_precision",
    "ndcg",
    "mrr",
    "recall",
    "judged",
)


@dataclass(frozen=True)
class MetricSettings:
    """What counts as relevant and at which cut-offs to measure.

    Attributes:
        strong_min: Smallest label counted as strongly related.
        scale_top: Top of the label scale (``strict_precision`` counts it).
        ks: Cut-offs, strictly positive.
    """

    strong_min: int = 2
    scale_top: int = 3
    ks: tuple[int, ...] = (1, 3, 5, 10)

    def __post_init__(self) -> None:
        if not self.ks:
            raise ValueError("ks is empty; give at least one cut-off such as 10")
        bad = [k for k in self.ks if k < 1]
        if bad:
            raise ValueError(f"cut-offs must be >= 1, got {bad}")
        if self.strong_min > self.scale_top:
            raise ValueError(
                f"strong_min {self.strong_min} is above the top of the label scale {self.scale_top}"
            )

    @property
    def max_k(self) -> int:
        """The deepest cut-off."""
        return max(self.ks)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _top_labels(ranking: Sequence[str], labels: Labels, k: int) -> list[int]:
    # Unjudged results are not relevant: label 0.
    return [labels.get(doc_id, 0) for doc_id in ranking[:k]]


def strong_precision_at_k(
    ranking: Sequence[str], labels: Labels, k: int, strong_min: int = 2
) -> float:
    """Share of the top ``k`` results whose label is at least ``strong_min``.

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels; missing ids count as 0.
        k: Cut-off (the denominator, even if fewer results were ranked).
        strong_min: Smallest label counted as strongly related.

    Returns:
        A value in [0, 1].
    """
    _check_k(k)
    return sum(1 for label in _top_labels(ranking, labels, k) if label >= strong_min) / k


def strict_precision_at_k(
    ranking: Sequence[str], labels: Labels, k: int, scale_top: int = 3
) -> float:
    """Share of the top ``k`` results whose label equals the top of the scale.

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels; missing ids count as 0.
        k: Cut-off (the denominator).
        scale_top: The top label of the scale.

    Returns:
        A value in [0, 1].
    """
    _check_k(k)
    return sum(1 for label in _top_labels(ranking, labels, k) if label == scale_top) / k


def dcg(labels_in_rank_order: Sequence[int]) -> float:
    """Discounted cumulative gain with exponential gains ``2**label - 1``.

    Args:
        labels_in_rank_order: Labels of the ranked results, best first.

    Returns:
        ``sum((2**l - 1) / log2(rank + 1))`` over ranks starting at 1.
    """
    if not labels_in_rank_order:
        return 0.0
    gains = np.power(2.0, np.asarray(labels_in_rank_order, dtype=np.float64)) - 1.0
    discounts = np.log2(np.arange(2, len(gains) + 2, dtype=np.float64))
    return float(np.sum(gains / discounts))


def ndcg_at_k(ranking: Sequence[str], labels: Labels, k: int) -> float:
    """Normalised DCG at ``k``; the ideal ordering uses all the query's labels.

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels; missing ids count as 0.
        k: Cut-off.

    Returns:
        A value in [0, 1]; 0 when the query has no positive label.
    """
    _check_k(k)
    ideal = dcg(sorted(labels.values(), reverse=True)[:k])
    if ideal <= 0.0:
        return 0.0
    return dcg(_top_labels(ranking, labels, k)) / ideal


def mrr_at_k(ranking: Sequence[str], labels: Labels, k: int, strong_min: int = 2) -> float:
    """Reciprocal rank of the first result with label >= ``strong_min`` in the top ``k``.

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels; missing ids count as 0.
        k: Cut-off: a first relevant result below it scores as none.
        strong_min: Smallest label counted as relevant.

    Returns:
        ``1 / rank`` of the first relevant result, or 0 if none is in the top ``k``.
    """
    _check_k(k)
    for rank, label in enumerate(_top_labels(ranking, labels, k), start=1):
        if label >= strong_min:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Sequence[str], labels: Labels, k: int, strong_min: int = 2) -> float:
    """Share of the query's results with label >= ``strong_min`` found in the top ``k``.

    Args:
        ranking: Result ids, best first; an id listed twice is found once.
        labels: The query's graded labels; all those >= ``strong_min`` make
            the denominator, ranked or not.
        k: Cut-off.
        strong_min: Smallest label counted as relevant.

    Returns:
        A value in [0, 1]; 0 when the query has no relevant result.
    """
    _check_k(k)
    relevant = {doc_id for doc_id, label in labels.items() if label >= strong_min}
    if not relevant:
        return 0.0
    # A set, so a result listed twice is not counted twice.
    found = relevant.intersection(ranking[:k])
    return len(found) / len(relevant)


def judged_at_k(ranking: Sequence[str], labels: Labels, k: int) -> float:
    """Share of the top ``k`` that has a judgement (any label, including 0).

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels.
        k: Cut-off (the denominator).

    Returns:
        A value in [0, 1].
    """
    _check_k(k)
    return sum(1 for doc_id in ranking[:k] if doc_id in labels) / k


def metric_names(ks: Iterable[int]) -> list[str]:
    """Metric keys in report order, e.g. ``strong_precision@1``.

    Args:
        ks: Cut-offs.

    Returns:
        Names, family by family, each family in increasing ``k``.
    """
    ordered = sorted(set(ks))
    return [f"{family}@{k}" for family in METRIC_FAMILIES for k in ordered]


def query_metrics(
    ranking: Sequence[str], labels: Labels, settings: MetricSettings
) -> dict[str, float]:
    """Every metric of one query.

    Args:
        ranking: Result ids, best first.
        labels: The query's graded labels.
        settings: Relevance threshold, scale top and cut-offs.

    Returns:
        ``{metric_name: value}`` with the keys of :func:`metric_names`.
    """
    values: dict[str, float] = {}
    for k in sorted(set(settings.ks)):
        values[f"strong_precision@{k}"] = strong_precision_at_k(
            ranking, labels, k, settings.strong_min
        )
        values[f"strict_precision@{k}"] = strict_precision_at_k(
            ranking, labels, k, settings.scale_top
        )
        values[f"ndcg@{k}"] = ndcg_at_k(ranking, labels, k)
        values[f"mrr@{k}"] = mrr_at_k(ranking, labels, k, settings.strong_min)
        values[f"recall@{k}"] = recall_at_k(ranking, labels, k, settings.strong_min)
        values[f"judged@{k}"] = judged_at_k(ranking, labels, k)
    return {name: values[name] for name in metric_names(settings.ks)}


def per_query_metrics(
    rankings: Mapping[str, Sequence[str]], qrels: Qrels, settings: MetricSettings
) -> PerQuery:
    """Metrics of every judged query.

    Every query of ``qrels`` is evaluated; a query absent from ``rankings``
    counts as an empty ranking (all zeros), so a run cannot look better by
    skipping hard queries. Rankings of unjudged queries are ignored.

    Args:
        rankings: ``{query_id: [doc_id, ...]}``, best first.
        qrels: Graded labels of the evaluated queries.
        settings: Relevance threshold, scale top and cut-offs.

    Returns:
        ``{query_id: {metric_name: value}}`` in sorted query-id order.
    """
    return {
        query_id: query_metrics(rankings.get(query_id, ()), qrels[query_id], settings)
        for query_id in sorted(qrels)
    }


def metric_matrix(
    per_query: PerQuery, names: Sequence[str], query_ids: Sequence[str]
) -> np.ndarray:
    """Per-query values as an array of shape ``(len(query_ids), len(names))``.

    Args:
        per_query: Output of :func:`per_query_metrics`.
        names: Metric names (columns).
        query_ids: Query ids (rows), in the order wanted.

    Returns:
        A float64 array.
    """
    return np.array(
        [[per_query[query_id][name] for name in names] for query_id in query_ids], dtype=np.float64
    ).reshape(len(query_ids), len(names))


def mean_metrics(per_query: PerQuery) -> dict[str, float]:
    """Mean of each metric over queries (every query weighs the same).

    Args:
        per_query: Output of :func:`per_query_metrics`.

    Returns:
        ``{metric_name: mean}``; empty if there are no queries.
    """
    if not per_query:
        return {}
    query_ids = list(per_query)
    names = list(per_query[query_ids[0]])
    means = metric_matrix(per_query, names, query_ids).mean(axis=0)
    return {name: float(value) for name, value in zip(names, means, strict=True)}


@dataclass(frozen=True)
class BootstrapSettings:
    """Resampling settings; the seed is fixed so reports are reproducible.

    Attributes:
        n_resamples: Bootstrap samples.
        confidence: Two-sided coverage of the intervals.
        seed: Seed of the random generator.
    """

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 20191024

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


def _bootstrap(
    values: np.ndarray, settings: BootstrapSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of resampled query sets and their percentile interval.

    ``values`` has one row per query (and one column per metric, if 2-d); the
    same resampled query sets serve every column. Returns ``(means, low, high)``
    with ``means`` of shape ``(n_resamples, ...)``.
    """
    n_queries = len(values)
    rng = np.random.default_rng(settings.seed)
    indices = rng.integers(0, n_queries, size=(settings.n_resamples, n_queries))
    means = values[indices].mean(axis=1)
    tail = (1.0 - settings.confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return means, low, high


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, settings: BootstrapSettings | None = None
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling queries.

    Args:
        values: One value per query.
        settings: Resampling settings (defaults: 2000 samples, 95 %, fixed seed).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when there are no values.
    """
    settings = settings or BootstrapSettings()
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return (float("nan"), float("nan"))
    _, low, high = _bootstrap(array, settings)
    return (float(low), float(high))


def bootstrap_cis(
    per_query: PerQuery, settings: BootstrapSettings | None = None
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of every metric, all from the same resampled query sets.

    Args:
        per_query: Output of :func:`per_query_metrics`.
        settings: Resampling settings.

    Returns:
        ``{metric_name: (low, high)}``.
    """
    settings = settings or BootstrapSettings()
    if not per_query:
        return {}
    query_ids = sorted(per_query)
    names = list(per_query[query_ids[0]])
    _, low, high = _bootstrap(metric_matrix(per_query, names, query_ids), settings)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}


@dataclass(frozen=True)
class PairedComparison:
    """Difference of means between two configurations on the same queries.

    Attributes:
        metric: Metric name.
        config_a: First configuration.
        config_b: Second configuration.
        mean_a: Mean of ``config_a``.
        mean_b: Mean of ``config_b``.
        diff: ``mean_b - mean_a``.
        ci_low: Lower bound of the bootstrap interval of ``diff``.
        ci_high: Upper bound of the bootstrap interval of ``diff``.
        p_value: Two-sided bootstrap p-value of ``diff == 0``.
        n_queries: Queries compared.
    """

    metric: str
    config_a: str
    config_b: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int


def paired_bootstrap(
    values_a: Sequence[float] | np.ndarray,
    values_b: Sequence[float] | np.ndarray,
    settings: BootstrapSettings | None = None,
) -> tuple[float, float, float, float]:
    """Paired bootstrap of ``mean(b) - mean(a)``, resampling queries jointly.

    Resampling the same queries for both sides keeps the pairing, so the
    between-query variance (which dominates with ~50 queries) cancels.

    Args:
        values_a: One value per query for configuration A.
        values_b: Values for configuration B, same queries in the same order.
        settings: Resampling settings.

    Returns:
        ``(diff, ci_low, ci_high, p_value)``. The p-value is twice the
        smaller share of resampled differences on either side of 0
        (capped at 1), a percentile test of "no difference".

    Raises:
        ValueError: If the two sides have different lengths.
    """
    settings = settings or BootstrapSettings()
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        nan = float("nan")
        return (nan, nan, nan, nan)
    differences = b - a
    samples, low, high = _bootstrap(differences, settings)
    p_value = min(1.0, 2.0 * min(float(np.mean(samples <= 0.0)), float(np.mean(samples >= 0.0))))
    return (float(differences.mean()), float(low), float(high), p_value)


def compare_configs(
    per_query_a: PerQuery,
    per_query_b: PerQuery,
    metrics: Sequence[str],
    *,
    config_a: str,
    config_b: str,
    settings: BootstrapSettings | None = None,
) -> list[PairedComparison]:
    """Paired bootstrap comparisons of two configurations on their shared queries.

    Args:
        per_query_a: Per-query metrics of configuration A.
        per_query_b: Per-query metrics of configuration B.
        metrics: Metric names to compare.
        config_a: Name of A.
        config_b: Name of B.
        settings: Resampling settings.

    Returns:
        One :class:`PairedComparison` per metric.

    Raises:
        ValueError: If the two configurations were measured on different queries.
    """
    if set(per_query_a) != set(per_query_b):
        raise ValueError(
            f"configurations {config_a!r} and {config_b!r} were measured on different queries"
        )
    query_ids = sorted(per_query_a)
    comparisons = []
    for metric in metrics:
        a = [per_query_a[q][metric] for q in query_ids]
        b = [per_query_b[q][metric] for q in query_ids]
        diff, low, high, p_value = paired_bootstrap(a, b, settings)
        comparisons.append(
            PairedComparison(
                metric=metric,
                config_a=config_a,
                config_b=config_b,
                mean_a=float(np.mean(a)) if a else float("nan"),
                mean_b=float(np.mean(b)) if b else float("nan"),
                diff=diff,
                ci_low=low,
                ci_high=high,
                p_value=p_value,
                n_queries=len(query_ids),
            )
        )
    return comparisons


@dataclass
class CalibrationRow:
    """True-label distribution of the results given one predicted tier.

    Attributes:
        tier: Predicted tier.
        count: Judged results in the tier.
        label_counts: ``{label: count}`` over the whole label scale.
        mean_score: Mean model score of those results (orders the rows).
        strong_share: Share with label >= strong_min.
    """

    tier: str
    count: int
    label_counts: dict[int, int] = field(default_factory=dict)
    mean_score: float = float("nan")
    strong_share: float = float("nan")


def tier_calibration(
    observations: Iterable[tuple[str, int, float]],
    *,
    label_scale: Sequence[int],
    strong_min: int = 2,
) -> list[CalibrationRow]:
    """For each predicted tier, the distribution of true labels.

    Args:
        observations: ``(tier, true_label, score)`` of every judged, ranked
            result that has a tier.
        label_scale: Every label of the scale, e.g. ``[0, 1, 2, 3]``; labels
            without results still appear with count 0.
        strong_min: Smallest label counted as strongly related.

    Returns:
        One row per tier, best tier first (highest mean model score, so
        the order does not depend on the true labels it is checking).
    """
    by_tier: dict[str, list[tuple[int, float]]] = {}
    for tier, label, score in observations:
        by_tier.setdefault(tier, []).append((label, score))
    rows = []
    for tier, items in by_tier.items():
        labels = [label for label, _ in items]
        counts = {label: 0 for label in label_scale}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        rows.append(
            CalibrationRow(
                tier=tier,
                count=len(items),
                label_counts=dict(sorted(counts.items())),
                mean_score=float(np.mean([score for _, score in items])),
                strong_share=sum(1 for label in labels if label >= strong_min) / len(labels),
            )
        )
    rows.sort(key=lambda row: (-row.mean_score, row.tier))
    return rows


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of predicted probabilities of "strongly related".

    Attributes:
        low: Lower edge of the bin.
        high: Upper edge of the bin.
        count: Results in the bin.
        mean_predicted: Mean predicted probability.
        observed: Share whose true label is >= strong_min.
    """

    low: float
    high: float
    count: int
    mean_predicted: float
    observed: float


def probability_calibration(
    observations: Iterable[tuple[float, int]], *, strong_min: int = 2, n_bins: int = 10
) -> list[ReliabilityBin]:
    """Reliability table of predicted ``p_strong`` against the true labels.

    Args:
        observations: ``(p_strong, true_label)`` of judged, ranked results.
        strong_min: Smallest label counted as strongly related.
        n_bins: Equal-width bins over [0, 1].

    Returns:
        The non-empty bins, lowest first.

    Raises:
        ValueError: If ``n_bins`` < 1.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    pairs = list(observations)
    if not pairs:
        return []
    probabilities = np.clip(np.array([p for p, _ in pairs], dtype=np.float64), 0.0, 1.0)
    strong = np.array([label >= strong_min for _, label in pairs], dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # p = 1.0 belongs to the last bin, not to a bin of its own.
    which = np.minimum(np.digitize(probabilities, edges[1:-1], right=False), n_bins - 1)
    bins = []
    for index in range(n_bins):
        mask = which == index
        if not mask.any():
            continue
        bins.append(
            ReliabilityBin(
                low=float(edges[index]),
                high=float(edges[index + 1]),
                count=int(mask.sum()),
                mean_predicted=float(probabilities[mask].mean()),
                observed=float(strong[mask].mean()),
            )
        )
    return bins
