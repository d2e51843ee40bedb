"""Approximate search against exact search on real m3e-small embeddings of the CSL papers."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib import Path

from indexes.ann_choice import IndexSpec, choose_index_spec
from indexes.vector import VectorIndex
from matcher.loaders import load_results

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def test_default_approximate_index_recall_at_10(m3e_encoder) -> None:  # type: ignore[no-untyped-def]
    papers = load_results(DEMO / "results.jsonl").records
    corpus, held_out = papers[:3000], papers[4600:4700]
    # Titles keep the test fast; the vectors still follow the model's real distribution.
    vectors = m3e_encoder.encode_documents([p.title for p in corpus])
    queries = m3e_encoder.encode_queries([f"{p.title}。{p.description[:100]}" for p in held_out])
    ids = [p.id for p in corpus]
    exact = VectorIndex(512, IndexSpec("flat"))
    # The structure the measured default picks at 500k results, here over real vectors.
    approx = VectorIndex(512, choose_index_spec(500_000, 512))
    assert exact.spec.kind == "flat" and approx.spec.kind != "flat"
    exact.add(ids, vectors)
    approx.add(ids, vectors)
    truth = exact.search(queries, 10)
    found = approx.search(queries, 10)
    recalls = []
    for t, f in zip(truth, found):
        # Ties at the 10th score may be ordered either way; count a tie as found.
        true_ids, cutoff = {doc for doc, _ in t}, t[-1][1] - 1e-6
        recalls.append(sum(1 for doc, score in f if doc in true_ids or score >= cutoff) / 10)
    assert float(np.mean(recalls)) >= 0.98
