"""Train the fusion scorer on CCF ``train``, tune and calibrate it on ``dev``.

    python -m models.train_fusion --data ../shared/data/bench/ccf_titles \\
        --out models/weights/fusion-v1.json

Signals are computed exactly as the Matcher computes them at serve time (same renderings,
same BM25 with whole-corpus statistics, same ``matcher.signals`` functions), for every
judged (need, result) pair of the rerank benchmark. ``test`` is never read here.
"""

from __future__ import annotations

from indexes.persistence import sha256_file

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexes.lexical import LexicalIndex
from indexes.tokenizer import tokenize
from matcher.need_analysis import analyse_need
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.profiles import profiles_of, result_row
from matcher.signals import TermStats, adapted_similarity, compute_signals
from matcher.text import render_need, render_result
from models.encoder import Encoder
from models.fusion import FEATURES, Calibration, FusionModel, TierThresholds, feature_matrix

log = logging.getLogger("train_fusion")
SEED = 20191
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)


@dataclass
class PairTable:
    """Signals of every judged pair, grouped by need (rows of one need are contiguous)."""

    need_ids: list[str]
    groups: list[slice]
    values: dict[str, np.ndarray]
    labels: np.ndarray
    result_ids: list[str]
    need_vectors: np.ndarray  # (needs, dim)
    vectors: np.ndarray  # (rows, dim) result vectors

    def subset(self, keep: Sequence[str]) -> PairTable:
        """The rows of the given needs, in the given order."""
        pos = {q: n for n, q in enumerate(self.need_ids)}
        rows = np.concatenate([np.arange(self.groups[pos[q]].start, self.groups[pos[q]].stop) for q in keep])
        groups, start = [], 0
        for q in keep:
            size = self.groups[pos[q]].stop - self.groups[pos[q]].start
            groups.append(slice(start, start + size))
            start += size
        return PairTable(list(keep), groups, {k: v[rows] for k, v in self.values.items()},
                         self.labels[rows], [self.result_ids[r] for r in rows],
                         self.need_vectors[[pos[q] for q in keep]], self.vectors[rows])

    def features(self, names: Sequence[str] = FEATURES) -> np.ndarray:
        """Model inputs, standardised within each need's group."""
        return np.concatenate(
            [feature_matrix({k: v[g] for k, v in self.values.items()}, names) for g in self.groups]
        )


def build_pair_table(
    results: Sequence[ResearchResult],
    needs: Sequence[EnterpriseNeed],
    qrels: Mapping[str, Mapping[str, int]],
    encoder: Encoder,
) -> PairTable:
    """Compute the signals of every judged pair as the Matcher would.

    Args:
        results: the whole result corpus (for BM25 and IDF statistics).
        needs: the needs; only those with qrels are used.
        qrels: ``{need_id: {result_id: label}}``.
        encoder: the encoder of the index (m3e-small by default).
    """
    by_id = {r.id: r for r in results}
    lexical = LexicalIndex()
    tokens = [tokenize(render_result(r)) for r in results]
    lexical.add_tokens([r.id for r in results], tokens)
    stats = TermStats.from_token_lists(tokens)
    judged = sorted({rid for labels in qrels.values() for rid in labels})
    t0 = time.time()
    doc_vectors = dict(zip(judged, encoder.encode_documents([render_result(by_id[r]) for r in judged])))
    log.info("encoded %d judged results in %.0fs", len(judged), time.time() - t0)
    todo = [n for n in needs if n.id in qrels]
    texts = [render_need(n) for n in todo]
    need_vectors = encoder.encode_queries(texts)
    analyses = [analyse_need(n) for n in todo]
    view_texts = [a.key_sentences for a in analyses]
    flat = encoder.encode_queries([s for views in view_texts for s in views])
    values: dict[str, list[np.ndarray]] = {}
    labels: list[int] = []
    result_ids: list[str] = []
    groups: list[slice] = []
    row_vectors: list[np.ndarray] = []
    start = offset = 0
    for need, text, query, analysis, views in zip(todo, texts, need_vectors, analyses, view_texts):
        ids = sorted(qrels[need.id])
        vectors = np.stack([doc_vectors[i] for i in ids])
        signals = compute_signals(
            need, text, profiles_of([result_row(by_id[i]) for i in ids]), vectors @ query,
            lexical.scores_for(text, ids),
            analysis.key_terms, stats=stats, view_vectors=flat[offset : offset + len(views)],
            result_vectors=vectors,
        )
        offset += len(views)
        for name, column in signals.values.items():
            values.setdefault(name, []).append(column)
        row_vectors.append(vectors)
        labels.extend(qrels[need.id][i] for i in ids)
        result_ids.extend(ids)
        groups.append(slice(start, start + len(ids)))
        start += len(ids)
    return PairTable([n.id for n in todo], groups, {k: np.concatenate(v) for k, v in values.items()},
                     np.asarray(labels, np.int64), result_ids, np.asarray(need_vectors, np.float32),
                     np.concatenate(row_vectors).astype(np.float32))


def rank_metrics(table: PairTable, scores: np.ndarray) -> np.ndarray:
    """Per need ``[strong_precision@1, ndcg@10, strict_precision@1]``, ``(needs, 3)``.

    Ties keep the table's order (stable sort), as the evaluator does.
    """
    from eval.metrics import ndcg_at_k, strict_precision_at_k, strong_precision_at_k

    rows = []
    for g in table.groups:
        order = np.argsort(-scores[g], kind="stable")
        ids = [table.result_ids[g.start + p] for p in order]
        labels = {table.result_ids[i]: int(table.labels[i]) for i in range(g.start, g.stop)}
        rows.append([strong_precision_at_k(ids, labels, 1), ndcg_at_k(ids, labels, 10),
                     strict_precision_at_k(ids, labels, 1)])
    return np.asarray(rows)


def bootstrap(per_need: np.ndarray, seed: int = SEED, samples: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% percentile interval over needs resampled with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_need), (samples, len(per_need)))
    means = per_need[idx].mean(axis=1)
    return per_need.mean(axis=0), np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def fit_linear(train: PairTable, c: float, names: Sequence[str] = FEATURES, target_min: int = 2) -> FusionModel:
    """Logistic regression of ``label >= target_min`` on standardised features."""
    from sklearn.linear_model import LogisticRegression

    x = train.features(names)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    y = (train.labels >= target_min).astype(int)
    clf = LogisticRegression(C=c, max_iter=5000, random_state=SEED)
    clf.fit((x - mean) / scale, y)
    return FusionModel(
        features=tuple(names), mean=tuple(map(float, mean)), scale=tuple(map(float, scale)),
        coef=tuple(map(float, clf.coef_[0])), intercept=float(clf.intercept_[0]),
    )


ADAPTER_L2 = 0.003
ADAPTER_EPOCHS = 60
ADAPTER_TAU = 0.05
ADAPTER_FOLDS = 5


def fit_adapter(table: PairTable, l2: float = ADAPTER_L2, epochs: int = ADAPTER_EPOCHS,
                tau: float = ADAPTER_TAU) -> np.ndarray:
    """A need-side linear adapter ``A`` so that ``(q + A q) · r`` ranks by expert label.

    Listwise loss per need (softmax cross-entropy against ``softmax(1.5 × label)``) with an
    L2 pull of ``A`` towards 0, i.e. towards the plain cosine. Full-batch Adam from zeros on
    one thread: deterministic, a few seconds on CPU.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed summation order, so retraining is bit-identical
    try:
        size = max(g.stop - g.start for g in table.groups)
        dim = table.vectors.shape[1]
        docs = np.zeros((len(table.groups), size, dim), np.float32)
        labels = np.zeros((len(table.groups), size), np.float32)
        mask = np.zeros((len(table.groups), size), bool)
        for n, g in enumerate(table.groups):
            docs[n, : g.stop - g.start] = table.vectors[g]
            labels[n, : g.stop - g.start] = table.labels[g]
            mask[n, : g.stop - g.start] = True
        informative = np.array([table.labels[g].min() < table.labels[g].max() for g in table.groups])
        q = torch.from_numpy(table.need_vectors[informative])
        d = torch.from_numpy(docs[informative])
        m = torch.from_numpy(mask[informative])
        neg = torch.tensor(-1e9)
        target = torch.softmax(torch.where(m, torch.from_numpy(labels[informative]) * 1.5, neg), dim=1)
        a = torch.zeros(dim, dim, requires_grad=True)
        opt = torch.optim.Adam([a], lr=1e-2)
        for _ in range(epochs):
            opt.zero_grad()
            q2 = q + q @ a.T
            logits = torch.where(m, torch.einsum("gnd,gd->gn", d, q2) / tau, neg)
            loss = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean() + l2 * (a**2).sum()
            loss.backward()
            opt.step()
        return a.detach().numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)


def adapted_column(table: PairTable, adapter: np.ndarray) -> np.ndarray:
    """The ``dense_adapted`` signal of every row under ``adapter``."""
    return np.concatenate([_adapted_rows(table, n, adapter) for n in range(len(table.groups))])


def out_of_fold_adapted(table: PairTable, folds: int = ADAPTER_FOLDS, seed: int = SEED) -> np.ndarray:
    """``dense_adapted`` for every row from adapters that never saw the row's need, so the
    fusion learns how much to trust the adapter on unseen needs, not on memorised ones."""
    order = np.random.default_rng(seed).permutation(len(table.need_ids))
    out = np.zeros(len(table.labels), np.float32)
    for k in range(folds):
        held = {table.need_ids[i] for i in order[k::folds]}
        fit_on = table.subset([q for q in table.need_ids if q not in held])
        adapter = fit_adapter(fit_on)
        for n, q in enumerate(table.need_ids):
            if q in held:
                g = table.groups[n]
                out[g] = _adapted_rows(table, n, adapter)
    return out


def _adapted_rows(table: PairTable, n: int, adapter: np.ndarray) -> np.ndarray:
    g = table.groups[n]
    return adapted_similarity(table.need_vectors[n], table.vectors[g], adapter, table.values["dense"][g])


def score_table(model: FusionModel, table: PairTable) -> np.ndarray:
    """Fused scores of every row, need by need."""
    return np.concatenate([model.score({k: v[g] for k, v in table.values.items()}) for g in table.groups])


def isotonic(scores: np.ndarray, positive: np.ndarray) -> Calibration:
    """Isotonic map score → P(positive), stored as knots."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(scores.astype(np.float64), positive.astype(np.float64))
    return Calibration(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))


def train(
    data: Path, encoder: Encoder, *, features: Sequence[str] = FEATURES, command: str = "",
) -> tuple[FusionModel, dict[str, object]]:
    """Fit on train, choose C and calibrate on dev; return the model and a report."""
    from eval.datasets import load_qrels
    from matcher.loaders import load_needs, load_results

    results = load_results(data / "corpus.jsonl").records
    needs = load_needs(data / "queries.jsonl").records
    qrels_train = load_qrels(data / "qrels" / "train.tsv")
    qrels_dev = load_qrels(data / "qrels" / "dev.tsv")
    table = build_pair_table(results, needs, {**qrels_train, **qrels_dev}, encoder)
    train_t = table.subset([q for q in table.need_ids if q in qrels_train])
    dev_t = table.subset([q for q in table.need_ids if q in qrels_dev])
    adapter: np.ndarray | None = None
    if any(name.endswith(":dense_adapted") for name in features):
        train_t.values["dense_adapted"] = out_of_fold_adapted(train_t)
        adapter = fit_adapter(train_t)
        dev_t.values["dense_adapted"] = adapted_column(dev_t, adapter)
    best: tuple[float, float, FusionModel] | None = None
    report: dict[str, object] = {}
    for c in C_GRID:
        model = fit_linear(train_t, c, features)
        m = rank_metrics(dev_t, score_table(model, dev_t)).mean(axis=0)
        report[f"dev_C={c}"] = {"strong_precision@1": float(m[0]), "ndcg@10": float(m[1])}
        key = float(m[1] + 0.5 * m[0])  # nDCG is the steadier of the two on 51 needs
        if best is None or key > best[0]:
            best = (key, c, model)
    if best is None:  # C_GRID is a non-empty constant; this guards edits to it
        raise RuntimeError("C_GRID is empty: nothing was fitted")
    _, c, model = best
    dev_scores = score_table(model, dev_t)
    mean, lo, hi = bootstrap(rank_metrics(dev_t, dev_scores))
    manifest = {
        "data": {str(p.relative_to(data)): sha256_file(p) for p in
                 [data / "corpus.jsonl", data / "queries.jsonl", data / "qrels" / "train.tsv",
                  data / "qrels" / "dev.tsv"]},
        "command": command,
        "seed": SEED,
        "C": c,
        "adapter": None if adapter is None else {"l2": ADAPTER_L2, "epochs": ADAPTER_EPOCHS,
                                                 "tau": ADAPTER_TAU, "oof_folds": ADAPTER_FOLDS},
        "encoder": encoder.fingerprint,
        "fit_on": "train", "calibrated_on": "dev",
        "dev_metrics": {
            "strong_precision@1": [round(float(mean[0]), 4), round(float(lo[0]), 4), round(float(hi[0]), 4)],
            "ndcg@10": [round(float(mean[1]), 4), round(float(lo[1]), 4), round(float(hi[1]), 4)],
            "strict_precision@1": round(float(mean[2]), 4),
            "needs": len(dev_t.need_ids),
        },
    }
    model = FusionModel(
        features=model.features, mean=model.mean, scale=model.scale, coef=model.coef,
        intercept=model.intercept, prior_weights=model.prior_weights,
        p_strong_map=isotonic(dev_scores, dev_t.labels >= 2),
        p_related_map=isotonic(dev_scores, dev_t.labels >= 1),
        thresholds=TierThresholds(), version="fusion-v1", manifest=manifest, adapter=adapter,
    )
    report["chosen_C"] = c
    report["dev"] = manifest["dev_metrics"]
    return model, report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m models.train_fusion", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder with corpus, queries, qrels/")
    parser.add_argument("--out", type=Path, required=True, help="where to write the model JSON")
    parser.add_argument("--model", default=None, help="encoder folder (default: bundled m3e-small)")
    parser.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from models.sentence_transformer import SentenceTransformerEncoder

    encoder: Encoder = SentenceTransformerEncoder(args.model)
    if not args.no_cache:
        from matcher.settings import Settings
        from models.cache import CachedEncoder, EmbeddingCache

        encoder = CachedEncoder(encoder, EmbeddingCache(Settings().cache_dir / "embeddings.sqlite"))
    command = "python -m models.train_fusion " + " ".join(argv if argv is not None else sys.argv[1:])
    model, report = train(args.data, encoder, command=command)
    model.save(args.out)
    print(f"wrote {args.out}; chosen C={report['chosen_C']}; dev {report['dev']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
