"""Scoring: turn the signals of each (need, candidate) pair into one ranking score.

Pure functions of arrays and records, so that every configuration can be tested without a
model. The Matcher gathers a :class:`CandidateBatch` per need and calls :func:`score_batch`.

Configurations:
    dense    cosine of need and result embeddings.
    lexical  raw BM25 with whole-corpus statistics.
    hybrid   naive fusion: cosine + 0.3 × BM25 / the need's best BM25.
    default  the learned fusion of ``models/fusion.py`` over ``matcher.signals`` (fixed-weight
             fallback when no trained weights file is present), with calibrated ``p_strong``,
             tiers and reasons.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from matcher.need_analysis import NeedAnalysis, analyse_need
from matcher.reasons import Explanation, explain
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.profiles import CandidateProfiles
from matcher.signals import PairSignals, TermStats, compute_signals, max_normalise
from models.fusion import FusionModel, load_model

CONFIGS: tuple[str, ...] = ("dense", "lexical", "hybrid", "default")
# Weight of the within-query normalised BM25 next to cosine in the naive hybrid.
HYBRID_LEXICAL_WEIGHT = 0.3


@dataclass
class CandidateBatch:
    """One need and its candidate results with their raw retrieval signals.

    The optional fields feed the default (learned) configuration; each one missing makes a
    signal fall back (dense views → the whole-need cosine, IDF → uniform weights, analysis →
    computed here) rather than fail.
    """

    need: EnterpriseNeed
    need_text: str
    profiles: CandidateProfiles  # the candidates' signal inputs (matcher.profiles)
    dense: np.ndarray  # cosine of need and result embeddings
    lexical: np.ndarray  # raw BM25 with whole-corpus statistics
    need_vector: np.ndarray | None = None  # (dim,) encode_queries([need_text])[0]
    result_vectors: np.ndarray | None = None  # (n, dim) the candidates' unit vectors
    view_vectors: np.ndarray | None = None  # (k, dim) encode_queries(analysis.key_sentences)
    analysis: NeedAnalysis | None = None  # analyse_need(need), if the Matcher already has it
    term_stats: TermStats | None = None  # document frequencies of the result corpus


@dataclass
class Scored:
    """Scores of a batch's candidates, aligned with ``CandidateBatch.profiles``."""

    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)
    tiers: list[str | None] = field(default_factory=list)
    p_strong: np.ndarray | None = None
    analysis: NeedAnalysis | None = None
    signals: PairSignals | None = None


def normalise_within_query(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the query's best value; BM25 magnitudes differ wildly between queries."""
    return max_normalise(values)


def fuse_hybrid(dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Naive fusion: cosine plus a fixed share of the within-query normalised BM25."""
    return np.asarray(dense, np.float32) + HYBRID_LEXICAL_WEIGHT * normalise_within_query(lexical)


def same_vector_space(trained_on: str | None, fingerprint: str) -> bool:
    """Whether a model trained on ``trained_on`` embeddings fits ``fingerprint``'s vectors.

    Quantising the document side keeps the space (cosine 0.98 to fp32), so it does not count.
    """
    if not trained_on:
        return False
    return trained_on.split("/docs=")[0] == fingerprint.split("/docs=")[0]


@functools.lru_cache(maxsize=1)
def default_model() -> FusionModel:
    """The shipped fusion model (``models/weights/fusion-v1.json``), or the fixed fallback."""
    return load_model()


def score_batch(batch: CandidateBatch, config: str = "default", model: FusionModel | None = None) -> Scored:
    """Score every candidate of ``batch`` under the named configuration.

    Args:
        batch: one need and its candidates.
        config: a name from :data:`CONFIGS`.
        model: the fusion model for ``default``; :func:`default_model` when None.

    Raises:
        ValueError: for a configuration name not in :data:`CONFIGS`.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown scoring config '{config}'; expected one of {', '.join(CONFIGS)}")
    n = len(batch.profiles)
    analysis = batch.analysis or analyse_need(batch.need)
    signals = compute_signals(
        batch.need, batch.need_text, batch.profiles, batch.dense, batch.lexical, analysis.key_terms,
        stats=batch.term_stats, view_vectors=batch.view_vectors, result_vectors=batch.result_vectors,
    )
    components = dict(signals.values)
    components["lexical_norm"] = normalise_within_query(batch.lexical)
    tiers: list[str | None] = [None] * n
    p_strong: np.ndarray | None = None
    if config == "dense":
        scores = np.asarray(batch.dense, np.float32)
    elif config == "lexical":
        scores = np.asarray(batch.lexical, np.float32)
    elif config == "hybrid":
        scores = fuse_hybrid(batch.dense, batch.lexical)
    else:
        model = model or default_model()
        components["dense_adapted"] = model.adapted(batch.need_vector, batch.result_vectors, batch.dense)
        scores = model.score(components)
        p_strong = model.p_strong(scores)
        tiers = model.tiers(scores)
        components["fused"] = scores
    return Scored(scores=np.asarray(scores, np.float32), components=components, tiers=tiers,
                  p_strong=p_strong, analysis=analysis, signals=signals)


def explain_candidate(batch: CandidateBatch, scored: Scored, row: int, result: ResearchResult) -> Explanation:
    """Reasons and marked spans for candidate ``row`` of ``batch``, whose record is ``result``.

    Called for the matches that are shown only: explaining every candidate is wasted work.
    """
    signals = scored.signals
    if signals is None:
        raise ValueError("explain_candidate needs a Scored from score_batch (it carries signals)")
    pair = {name: float(values[row]) for name, values in signals.values.items()}
    terms = list(signals.matched_key_terms[row]) + list(signals.matched_terms[row])
    return explain(batch.need, batch.need_text, result, pair, terms)
