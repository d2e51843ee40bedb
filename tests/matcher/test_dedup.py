from __future__ import annotations

import numpy as np

from matcher.dedup import fold_duplicates, normalise_title
from models.encoder import l2_normalise


def test_normalise_title_ignores_spacing_case_and_punctuation() -> None:
    assert normalise_title("高活性 氟化锂 制备 方法") == normalise_title("高活性氟化锂制备方法。")
    assert normalise_title("PLC Control") == normalise_title("plc-control")
    assert normalise_title("锂电池") != normalise_title("钠电池")


def test_fold_keeps_distinct_results_and_attaches_twins() -> None:
    rng = np.random.default_rng(0)
    base = l2_normalise(rng.standard_normal((4, 16)).astype(np.float32))
    near = l2_normalise(base[1:2] + 0.01 * rng.standard_normal((1, 16)).astype(np.float32))
    vectors = np.concatenate([base, near])
    titles = ["锂电池 正极", "硅碳 负极", "锂电池正极", "印染 废水", "硅碳负极材料 改性"]
    # Ranked: 0, 2 (same title as 0), 4 (embedding twin of 1), 1, 3
    groups = fold_duplicates(np.array([0, 2, 4, 1, 3]), [normalise_title(t) for t in titles], vectors, top_k=2)
    assert groups == [(0, [2]), (4, [1])]
    groups = fold_duplicates(np.array([0, 2, 4, 1, 3]), [normalise_title(t) for t in titles], vectors, top_k=5)
    assert groups == [(0, [2]), (4, [1]), (3, [])]
