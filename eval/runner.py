"""Evaluation orchestration: rank with the Matcher (or read a run file), then measure.

Two modes, as in the data README:

* ``rerank``: each query's judged candidates are ranked, nothing else. Every
  ranked result has a label, so precision is exact.
* ``retrieve``: the whole corpus is searched; results judged for other
  queries, or not at all, count as not relevant and ``judged@k`` says how
  much of the top was judged.

The ranking itself is always the Matcher's (``rerank_batch`` / ``match_batch``),
the same code the API and the batch job call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Literal

from eval.datasets import DatasetError, Qrels, Run, ranking_from_scores
from eval.datasets import label_scale as scale_of
from eval.metrics import (
    BootstrapSettings,
    CalibrationRow,
    MetricSettings,
    PairedComparison,
    PerQuery,
    ReliabilityBin,
    bootstrap_cis,
    compare_configs,
    mean_metrics,
    metric_names,
    per_query_metrics,
    probability_calibration,
    tier_calibration,
)

if TYPE_CHECKING:
    from matcher.matcher import Matcher
    from matcher.records import EnterpriseNeed, Match

Mode = Literal["rerank", "retrieve"]
MODES: tuple[str, ...] = ("rerank", "retrieve")
DEFAULT_CONFIGS: tuple[str, ...] = ("dense", "lexical", "hybrid", "default")
RUN_CONFIG_NAME = "run"


@dataclass(frozen=True)
class RankedResult:
    """One ranked result of one query.

    Attributes:
        doc_id: Result id.
        score: The configuration's ranking score.
        tier: Predicted tier, if the configuration predicts one.
        p_strong: Predicted probability of "strongly related", if any.
    """

    doc_id: str
    score: float
    tier: str | None = None
    p_strong: float | None = None


Rankings = dict[str, list[RankedResult]]
"""``{query_id: [RankedResult, ...]}``, best first."""


@dataclass
class ConfigEvaluation:
    """Everything measured for one ranking configuration.

    Attributes:
        name: Configuration name.
        rankings: What was ranked, per query.
        per_query: Metric values per query.
        metrics: Means over queries.
        cis: Bootstrap intervals of the means.
        calibration: True-label distribution per predicted tier (empty if no tiers).
        reliability: Reliability bins of ``p_strong`` (empty if not predicted).
        scores_by_label: Scores of the ranked, judged results grouped by true label.
        missing_queries: Judged queries that got no ranking.
    """

    name: str
    rankings: Rankings
    per_query: PerQuery
    metrics: dict[str, float]
    cis: dict[str, tuple[float, float]]
    calibration: list[CalibrationRow] = field(default_factory=list)
    reliability: list[ReliabilityBin] = field(default_factory=list)
    scores_by_label: dict[int, list[float]] = field(default_factory=dict)
    missing_queries: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """The evaluation of one or more configurations on the same queries.

    Attributes:
        mode: ``rerank`` or ``retrieve``.
        settings: Metric settings.
        bootstrap: Resampling settings.
        configs: Per configuration, in the order evaluated.
        default_config: The configuration whose metrics head the report.
        comparisons: Paired bootstrap comparisons of every pair of configurations.
        label_scale: Every label of the scale, e.g. ``[0, 1, 2, 3]``.
        label_counts: How many judged pairs carry each label.
        query_titles: Titles of the evaluated queries, for readable reports.
    """

    mode: str
    settings: MetricSettings
    bootstrap: BootstrapSettings
    configs: dict[str, ConfigEvaluation]
    default_config: str
    comparisons: list[PairedComparison]
    label_scale: list[int]
    label_counts: dict[int, int]
    query_titles: dict[str, str] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        """Number of evaluated (judged) queries."""
        first = next(iter(self.configs.values()), None)
        return len(first.per_query) if first else 0


def check_mode(mode: str) -> Mode:
    """Validate a mode name.

    Args:
        mode: ``rerank`` or ``retrieve``.

    Returns:
        The mode.

    Raises:
        ValueError: Naming the allowed modes.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def check_qrels_ids(
    qrels: Qrels, query_ids: Sequence[str] | set[str], corpus_ids: Sequence[str] | set[str]
) -> None:
    """Every judged query and result must exist in the queries and the corpus.

    Args:
        qrels: Graded labels.
        query_ids: Ids of the queries file.
        corpus_ids: Ids of the corpus.

    Raises:
        DatasetError: Naming up to five unknown ids and how many there are.
    """
    known_queries = set(query_ids)
    known_docs = set(corpus_ids)
    unknown_queries = sorted(set(qrels) - known_queries)
    unknown_docs = sorted({doc for labels in qrels.values() for doc in labels} - known_docs)
    problems = []
    if unknown_queries:
        problems.append(
            f"{len(unknown_queries)} query ids of the qrels are not in the queries file "
            f"(e.g. {', '.join(unknown_queries[:5])})"
        )
    if unknown_docs:
        problems.append(
            f"{len(unknown_docs)} corpus ids of the qrels are not in the corpus "
            f"(e.g. {', '.join(unknown_docs[:5])})"
        )
    if problems:
        raise DatasetError("; ".join(problems))


def judged_candidates(labels: Mapping[str, int]) -> list[str]:
    """The candidates to rerank for one query, in a label-blind order.

    Sorting by id (random UUIDs on CCF) keeps tie-breaking in the ranker
    independent of the labels and of the qrels file order, which could be
    grouped by label.

    Args:
        labels: The query's graded labels.

    Returns:
        Candidate ids sorted ascending.
    """
    return sorted(labels)


def rankings_from_matches(query_ids: Sequence[str], matches: Sequence[Sequence[Match]]) -> Rankings:
    """Convert the Matcher's output to rankings.

    Args:
        query_ids: The needs' ids, in the order they were matched.
        matches: ``match_batch`` / ``rerank_batch`` output, one list per need.

    Returns:
        Rankings in the Matcher's order (its ``rank``), not re-sorted, so
        the Matcher's tie-breaking is what gets measured.
    """
    rankings: Rankings = {}
    for query_id, need_matches in zip(query_ids, matches, strict=True):
        ordered = sorted(need_matches, key=lambda match: match.rank)
        rankings[query_id] = [
            RankedResult(
                doc_id=match.result_id,
                score=float(match.score),
                tier=match.tier,
                p_strong=None if match.p_strong is None else float(match.p_strong),
            )
            for match in ordered
        ]
    return rankings


def rank_with_matcher(
    matcher: Matcher,
    needs: Sequence[EnterpriseNeed],
    qrels: Qrels,
    *,
    mode: Mode,
    config: str,
    top_k: int,
) -> Rankings:
    """Rank the judged needs with one configuration of the Matcher.

    Args:
        matcher: A built or loaded Matcher.
        needs: The needs to rank for (ids are the qrels' query ids).
        qrels: Graded labels; in rerank mode they give the candidates.
        mode: ``rerank`` ranks the judged candidates, ``retrieve`` the whole index.
        config: Matcher configuration name.
        top_k: Results kept per need in retrieve mode.

    Returns:
        Rankings of every need.
    """
    query_ids = [need.id for need in needs]
    if mode == "rerank":
        candidates = [judged_candidates(qrels.get(need.id, {})) for need in needs]
        matches = matcher.rerank_batch(needs, candidates, config=config)
    else:
        matches = matcher.match_batch(needs, top_k=top_k, config=config)
    return rankings_from_matches(query_ids, matches)


def rank_configs(
    matcher: Matcher,
    needs: Sequence[EnterpriseNeed],
    qrels: Qrels,
    *,
    mode: Mode,
    configs: Sequence[str],
    top_k: int,
) -> dict[str, Rankings]:
    """Rank the judged needs with each configuration.

    Args:
        matcher: A built or loaded Matcher.
        needs: The judged needs.
        qrels: Graded labels (the candidates in rerank mode).
        mode: ``rerank`` or ``retrieve``.
        configs: Configuration names, in report order.
        top_k: Results kept per need in retrieve mode.

    Returns:
        ``{config: rankings}``.

    Raises:
        ValueError: If a configuration is unknown to the Matcher.
    """
    unknown = [name for name in configs if name not in matcher.configs]
    if unknown:
        raise ValueError(
            f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(matcher.configs)}"
        )
    return {
        name: rank_with_matcher(matcher, needs, qrels, mode=mode, config=name, top_k=top_k)
        for name in configs
    }


def judged_needs(needs: Sequence[EnterpriseNeed], qrels: Qrels) -> list[EnterpriseNeed]:
    """The needs that have labels, in sorted id order (the order of the per-query tables).

    Args:
        needs: Every need of the queries file.
        qrels: Graded labels.

    Returns:
        The judged needs.

    Raises:
        DatasetError: If a judged query id is not among the needs.
    """
    by_id = {need.id: need for need in needs}
    unknown = sorted(set(qrels) - set(by_id))
    if unknown:
        raise DatasetError(
            f"{len(unknown)} query ids of the qrels are not among the needs "
            f"(e.g. {', '.join(unknown[:5])})"
        )
    return [by_id[query_id] for query_id in sorted(qrels)]


def rankings_from_run(run: Run, qrels: Qrels | None = None, *, mode: Mode = "retrieve") -> Rankings:
    """Rankings from a BEIR run file.

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: Graded labels; in rerank mode each query's list keeps only its
            judged candidates, as if the run had reranked them.
        mode: ``rerank`` or ``retrieve``.

    Returns:
        Rankings by descending score (ties by ascending doc id).
    """
    rankings: Rankings = {}
    for query_id, scores in run.items():
        if mode == "rerank" and qrels is not None:
            judged = qrels.get(query_id, {})
            scores = {doc_id: score for doc_id, score in scores.items() if doc_id in judged}
        rankings[query_id] = [
            RankedResult(doc_id=doc_id, score=scores[doc_id])
            for doc_id in ranking_from_scores(scores)
        ]
    return rankings


def rankings_to_run(rankings: Rankings) -> Run:
    """Write rankings as a BEIR run (what the batch job writes and ``--run`` reads).

    Args:
        rankings: Rankings.

    Returns:
        ``{query_id: {doc_id: score}}``; a result listed twice keeps its best score.
    """
    run: Run = {}
    for query_id, ranked in rankings.items():
        scores: dict[str, float] = {}
        for result in ranked:
            scores[result.doc_id] = max(result.score, scores.get(result.doc_id, result.score))
        run[query_id] = scores
    return run


def evaluate_rankings(
    name: str,
    rankings: Rankings,
    qrels: Qrels,
    settings: MetricSettings,
    bootstrap: BootstrapSettings,
    label_scale: Sequence[int],
) -> ConfigEvaluation:
    """Measure one configuration's rankings against the qrels.

    Args:
        name: Configuration name.
        rankings: Rankings; queries without qrels are ignored.
        qrels: Graded labels of the evaluated queries.
        settings: Metric settings.
        bootstrap: Resampling settings.
        label_scale: Every label of the scale.

    Returns:
        The configuration's evaluation.
    """
    id_rankings = {query_id: [r.doc_id for r in ranked] for query_id, ranked in rankings.items()}
    per_query = per_query_metrics(id_rankings, qrels, settings)
    scores_by_label: dict[int, list[float]] = {label: [] for label in label_scale}
    tier_observations: list[tuple[str, int, float]] = []
    probability_observations: list[tuple[float, int]] = []
    for query_id in sorted(qrels):
        labels = qrels[query_id]
        for result in rankings.get(query_id, ()):
            if result.doc_id not in labels:
                continue
            label = labels[result.doc_id]
            scores_by_label.setdefault(label, []).append(result.score)
            if result.tier is not None:
                tier_observations.append((result.tier, label, result.score))
            if result.p_strong is not None:
                probability_observations.append((result.p_strong, label))
    return ConfigEvaluation(
        name=name,
        rankings=rankings,
        per_query=per_query,
        metrics=mean_metrics(per_query),
        cis=bootstrap_cis(per_query, bootstrap),
        calibration=tier_calibration(
            tier_observations, label_scale=label_scale, strong_min=settings.strong_min
        ),
        reliability=probability_calibration(
            probability_observations, strong_min=settings.strong_min
        ),
        scores_by_label=scores_by_label,
        missing_queries=sorted(set(qrels) - set(rankings)),
    )


def evaluate_configs(
    rankings_by_config: Mapping[str, Rankings],
    qrels: Qrels,
    *,
    mode: Mode,
    settings: MetricSettings,
    bootstrap: BootstrapSettings | None = None,
    default_config: str | None = None,
    label_scale: Sequence[int] | None = None,
    query_titles: Mapping[str, str] | None = None,
) -> Evaluation:
    """Measure several configurations on the same queries and compare them pairwise.

    Args:
        rankings_by_config: ``{config_name: rankings}``, in report order.
        qrels: Graded labels of the evaluated queries.
        mode: ``rerank`` or ``retrieve`` (recorded in the report).
        settings: Metric settings.
        bootstrap: Resampling settings.
        default_config: The configuration heading the report; ``"default"``
            if evaluated, else the first.
        label_scale: Every label of the scale; from the qrels if not given.
        query_titles: Query titles for the report.

    Returns:
        The evaluation.

    Raises:
        ValueError: If there is no configuration or no judged query, or the
            default configuration was not evaluated.
    """
    if not rankings_by_config:
        raise ValueError("no configuration to evaluate")
    if not qrels:
        raise ValueError("the qrels hold no judged query")
    bootstrap = bootstrap or BootstrapSettings()
    if label_scale is None:
        label_scale = scale_of(qrels)
    if default_config is None:
        default_config = (
            "default" if "default" in rankings_by_config else next(iter(rankings_by_config))
        )
    if default_config not in rankings_by_config:
        raise ValueError(
            f"default configuration {default_config!r} is not among {', '.join(rankings_by_config)}"
        )
    configs = {
        name: evaluate_rankings(name, rankings, qrels, settings, bootstrap, label_scale)
        for name, rankings in rankings_by_config.items()
    }
    names = metric_names(settings.ks)
    comparisons: list[PairedComparison] = []
    for name_a, name_b in combinations(configs, 2):
        comparisons.extend(
            compare_configs(
                configs[name_a].per_query,
                configs[name_b].per_query,
                names,
                config_a=name_a,
                config_b=name_b,
                settings=bootstrap,
            )
        )
    label_counts = {label: 0 for label in label_scale}
    for per_query in qrels.values():
        for label in per_query.values():
            label_counts[label] = label_counts.get(label, 0) + 1
    return Evaluation(
        mode=mode,
        settings=settings,
        bootstrap=bootstrap,
        configs=configs,
        default_config=default_config,
        comparisons=comparisons,
        label_scale=list(label_scale),
        label_counts=dict(sorted(label_counts.items())),
        query_titles=dict(query_titles or {}),
    )
