"""Scoring: turn the signals of each (need, candidate) pair into one ranking score.

Pure functions of arrays and records, so that every configuration can be tested without a
model. The Matcher gathers a :class:`CandidateBatch` per need and calls :func:`score_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from matcher.records import EnterpriseNeed, ResearchResult

CONFIGS: tuple[str, ...] = ("dense", "lexical", "hybrid", "default")
# Weight of the within-query normalised BM25 next to cosine in the naive hybrid.
HYBRID_LEXICAL_WEIGHT = 0.3


@dataclass
class CandidateBatch:
    """One need and its candidate results with their raw retrieval signals."""

    need: EnterpriseNeed
    need_text: str
    results: list[ResearchResult]
    dense: np.ndarray  # cosine of need and result embeddings
    lexical: np.ndarray  # raw BM25 with whole-corpus statistics


@dataclass
class Scored:
    """Scores of a batch's candidates, aligned with ``CandidateBatch.results``."""

    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)
    tiers: list[str | None] = field(default_factory=list)
    p_strong: np.ndarray | None = None
    reasons: list[list[str]] = field(default_factory=list)


def normalise_within_query(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the query's best value; BM25 magnitudes differ wildly between queries."""
    values = np.asarray(values, dtype=np.float32)
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def fuse_hybrid(dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Naive fusion: cosine plus a fixed share of the within-query normalised BM25."""
    return np.asarray(dense, np.float32) + HYBRID_LEXICAL_WEIGHT * normalise_within_query(lexical)


def score_batch(batch: CandidateBatch, config: str = "default") -> Scored:
    """Score every candidate of ``batch`` under the named configuration.

    Raises:
        ValueError: for a configuration name not in :data:`CONFIGS`.
    """
    lexical_norm = normalise_within_query(batch.lexical)
    components = {"dense": np.asarray(batch.dense, np.float32), "lexical": lexical_norm}
    if config == "dense":
        scores = components["dense"]
    elif config == "lexical":
        scores = np.asarray(batch.lexical, np.float32)
    elif config in ("hybrid", "default"):
        scores = fuse_hybrid(batch.dense, batch.lexical)
    else:
        raise ValueError(f"unknown scoring config '{config}'; expected one of {', '.join(CONFIGS)}")
    n = len(batch.results)
    return Scored(scores=scores, components=components, tiers=[None] * n, reasons=[[] for _ in range(n)])
