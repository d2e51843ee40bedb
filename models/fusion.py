"""Learned fusion of pair signals into one score, a calibrated ``p_strong`` and a tier.

The scorer is a logistic regression over signals standardised *within each need's
candidates* (rerank quality depends on how a candidate stands among its rivals) plus the
raw cosine (so that a need whose candidates are all poor does not get confident scores).
Signals the CCF benchmark cannot teach — field, maturity, transfer mode, region, which its
records lack — enter with fixed, documented prior weights on the logit scale.

A model is a small JSON file (``models/weights/fusion-v1.json``) with its manifest: data
files and their sha256, the command and seed that made it, and its dev metrics. Without a
file, :data:`FALLBACK` holds fixed weights. Scoring is pure numpy: no scikit-learn at serve
time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matcher.signals import adapted_similarity, zscore_within

SCHEMA_VERSION = 1
DEFAULT_WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "fusion-v1.json"

# Signals standardised within the need's candidates, then the raw ones. Names are
# ``z:<signal>`` or ``raw:<signal>`` over ``matcher.signals.SIGNAL_NAMES``.
FEATURES: tuple[str, ...] = (
    "z:dense", "z:dense_title", "z:dense_sentence", "z:lexical", "z:term_overlap",
    "z:key_term_overlap", "z:bigram_coverage", "z:title_similarity", "z:mean_idf",
    "z:generic_share", "raw:dense", "z:dense_adapted",
)
# Logit bonus per unit of agreement (signals in [-1, 1], 0 when a side is missing). Chosen
# by judgement, not fitted: an explicit field match is worth about one sd of cosine.
PRIOR_WEIGHTS: dict[str, float] = {"field": 0.8, "maturity": 0.3, "transfer_mode": 0.3, "region": 0.1}

TIERS: tuple[str, ...] = ("强相关", "较强相关", "弱相关", "无相关")


def feature_matrix(values: Mapping[str, np.ndarray], names: Sequence[str] = FEATURES) -> np.ndarray:
    """Model inputs for one need's candidates, ``(n, len(names))``.

    Args:
        values: raw signals (``matcher.signals.compute_signals(...).values``).
        names: ``z:<signal>`` (standardised within these candidates) or ``raw:<signal>``.

    Raises:
        KeyError: a named signal is missing from ``values``.
        ValueError: a name has no ``z:`` / ``raw:`` prefix.
    """
    columns: list[np.ndarray] = []
    for name in names:
        kind, _, signal = name.partition(":")
        if kind not in ("z", "raw"):
            raise ValueError(f"feature '{name}' must start with 'z:' or 'raw:'")
        if signal not in values:
            raise KeyError(f"signal '{signal}' needed by feature '{name}' is missing; have {sorted(values)}")
        column = np.asarray(values[signal], np.float32)
        columns.append(zscore_within(column) if kind == "z" else column)
    n = len(next(iter(values.values()))) if values else 0
    return np.stack(columns, axis=1) if columns else np.zeros((n, 0), np.float32)


@dataclass(frozen=True)
class Calibration:
    """A monotone step map from score to probability (isotonic regression, as knots)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Probability per score, interpolated between knots and clipped at the ends."""
        if not self.x:
            return np.full(np.shape(scores), np.nan, np.float32)
        return np.interp(np.asarray(scores, np.float64), self.x, self.y).astype(np.float32)


@dataclass(frozen=True)
class TierThresholds:
    """Probability cut-offs: 强相关 and 较强相关 on ``p_strong`` (label ≥ 2), 弱相关 on
    ``p_related`` (label ≥ 1); below all of them 无相关."""

    strong: float = 0.7
    fairly_strong: float = 0.5
    weak: float = 0.5


@dataclass(frozen=True)
class FusionModel:
    """Linear scorer over :func:`feature_matrix` features, with calibration and tiers."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    prior_weights: Mapping[str, float] = field(default_factory=lambda: dict(PRIOR_WEIGHTS))
    p_strong_map: Calibration | None = None
    p_related_map: Calibration | None = None
    thresholds: TierThresholds = TierThresholds()
    version: str = "fallback"
    manifest: Mapping[str, Any] = field(default_factory=dict)
    adapter: np.ndarray | None = field(default=None, compare=False, repr=False)

    def adapted(self, need_vector: np.ndarray | None, result_vectors: np.ndarray | None,
                dense: np.ndarray) -> np.ndarray:
        """The ``dense_adapted`` signal: cosine after this model's need-side adapter
        (the plain cosine ``dense`` when the model has no adapter or vectors are missing)."""
        return adapted_similarity(need_vector, result_vectors, self.adapter, dense)

    def score(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The fused logit of each candidate (higher is better).

        Args:
            values: raw signals of one need's candidates; prior signals absent from
                ``values`` contribute nothing.
        """
        if "dense_adapted" not in values and "dense" in values:
            values = {**values, "dense_adapted": values["dense"]}  # no vectors: plain cosine
        x = feature_matrix(values, self.features)
        z = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.scale, np.float32)
        logit = z @ np.asarray(self.coef, np.float32) + np.float32(self.intercept)
        for name, weight in self.prior_weights.items():
            if name in values:
                logit = logit + np.float32(weight) * np.asarray(values[name], np.float32)
        return logit.astype(np.float32)

    def p_strong(self, scores: np.ndarray) -> np.ndarray | None:
        """Calibrated probability that label ≥ 2 (较强相关 or 强相关); None if uncalibrated."""
        return None if self.p_strong_map is None else self.p_strong_map(scores)

    def p_related(self, scores: np.ndarray) -> np.ndarray | None:
        """Calibrated probability that label ≥ 1; None if uncalibrated."""
        return None if self.p_related_map is None else self.p_related_map(scores)

    def tiers(self, scores: np.ndarray) -> list[str | None]:
        """The tier of each score; None for every score when the model is uncalibrated."""
        strong, related = self.p_strong(scores), self.p_related(scores)
        if strong is None:
            return [None] * len(scores)
        related = strong if related is None else related
        t = self.thresholds
        return [
            TIERS[0] if s >= t.strong else TIERS[1] if s >= t.fairly_strong
            else TIERS[2] if r >= t.weak else TIERS[3]
            for s, r in zip(strong.tolist(), related.tolist())
        ]

    # ----- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :func:`load_model`)."""
        def cal(c: Calibration | None) -> dict[str, list[float]] | None:
            return None if c is None else {"x": list(c.x), "y": list(c.y)}

        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "prior_weights": dict(self.prior_weights),
            "p_strong_map": cal(self.p_strong_map),
            "p_related_map": cal(self.p_related_map),
            "thresholds": vars(self.thresholds),
            "manifest": dict(self.manifest),
        }

    def save(self, path: str | Path) -> None:
        """Write the model as JSON and its adapter as ``<stem>.adapter.npy`` beside it,
        each atomically (a crash leaves the old files whole)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if self.adapter is not None:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(self.adapter, np.float32), allow_pickle=False)
            blob = buffer.getvalue()
            adapter_path = path.with_name(f"{path.stem}.adapter.npy")
            _atomic_write(adapter_path, blob)
            data["adapter"] = {"file": adapter_path.name, "sha256": hashlib.sha256(blob).hexdigest()}
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        _atomic_write(path, text.encode("utf-8"))


def _atomic_write(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the weights are meant to be shared
    os.replace(tmp, path)


def model_from_dict(data: Mapping[str, Any], adapter: np.ndarray | None = None) -> FusionModel:
    """Rebuild a model from :meth:`FusionModel.to_dict` output (and its adapter array).

    Raises:
        ValueError: an unknown schema version, or arrays whose lengths disagree.
    """
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"fusion model schema_version {data.get('schema_version')!r} is not supported "
            f"(expected {SCHEMA_VERSION}); retrain with `python -m models.train_fusion`"
        )
    features = tuple(data["features"])
    for key in ("mean", "scale", "coef"):
        if len(data[key]) != len(features):
            raise ValueError(f"fusion model '{key}' has {len(data[key])} values for {len(features)} features")

    def cal(raw: Mapping[str, Sequence[float]] | None) -> Calibration | None:
        return None if raw is None else Calibration(tuple(map(float, raw["x"])), tuple(map(float, raw["y"])))

    return FusionModel(
        features=features,
        mean=tuple(map(float, data["mean"])),
        scale=tuple(map(float, data["scale"])),
        coef=tuple(map(float, data["coef"])),
        intercept=float(data["intercept"]),
        prior_weights={k: float(v) for k, v in data.get("prior_weights", {}).items()},
        p_strong_map=cal(data.get("p_strong_map")),
        p_related_map=cal(data.get("p_related_map")),
        thresholds=TierThresholds(**data.get("thresholds", {})),
        version=str(data.get("version", "unknown")),
        manifest=dict(data.get("manifest", {})),
        adapter=adapter,
    )


def load_model(path: str | Path | None = None) -> FusionModel:
    """Load a saved model; ``None`` means the shipped ``models/weights/fusion-v1.json``,
    and :data:`FALLBACK` when that file does not exist.

    Raises:
        FileNotFoundError: an explicitly given ``path`` does not exist.
        ValueError: the file is not a model of this schema.
    """
    if path is None:
        if not DEFAULT_WEIGHTS_PATH.is_file():
            return FALLBACK
        path = DEFAULT_WEIGHTS_PATH
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fusion model file not found: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    adapter = None
    if data.get("adapter"):
        adapter_path = path.with_name(data["adapter"]["file"])
        blob = adapter_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != data["adapter"]["sha256"]:
            raise ValueError(f"{adapter_path} does not match the sha256 recorded in {path}; retrain")
        adapter = np.load(io.BytesIO(blob), allow_pickle=False)
        dim = adapter.shape[0]
        if adapter.shape != (dim, dim):
            raise ValueError(f"{adapter_path} has shape {adapter.shape}; expected a square matrix")
    return model_from_dict(data, adapter)


# Fixed-weight fallback, used when no trained file is present. Weights on within-need
# z-scores (mean 0, scale 1): dense cosine of the whole need and of its best key sentence
# carry most, BM25 and term overlap add the exact-term evidence dense misses. Uncalibrated,
# so it gives no tiers or p_strong. Set by hand, not fitted; on CCF rerank it scores
# strong_precision@1 / ndcg@10 = 0.357 / 0.636 on train and 0.431 / 0.676 on dev.
FALLBACK = FusionModel(
    features=("z:dense", "z:dense_title", "z:dense_sentence", "z:lexical", "z:term_overlap"),
    mean=(0.0,) * 5,
    scale=(1.0,) * 5,
    coef=(0.35, 0.25, 0.25, 0.25, 0.15),
    intercept=0.0,
    version="fallback-fixed-v1",
)
