"""Near-duplicate folding: result libraries repeat themselves (the CCF results hold the same
title up to eight times), and a ranking should show distinct results with their twins attached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from matcher.text import join_cjk

# Two results whose embeddings are at least this close are the same result for a reader.
# Measured on the 12,252 CCF results (int8 m3e-small, 5 nearest neighbours each; see
# bench/RESULTS.md "near-duplicates"): same-title neighbours sit at cosine 1.0; of 41,063
# different-title neighbour pairs the median is 0.833, the 99th percentile 0.951, and the
# 0.18% at or above 0.97 are re-typed titles (a word dropped or repeated, 设备/装置,
# 锂电池/锂离子电池), e.g. 上肢运动康复训练装置 ~ 上肢康复训练装置 at 0.978.
DUPLICATE_COSINE = 0.97
_NOT_WORD = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=65_536)
def normalise_title(title: str) -> str:
    """Lower-cased title without spaces or punctuation: equal for trivially re-typed titles."""
    return _NOT_WORD.sub("", join_cjk(title).lower())


def fold_duplicates(
    order: np.ndarray, titles: Sequence[str], vectors: np.ndarray, top_k: int
) -> list[tuple[int, list[int]]]:
    """Walk candidates best first, keep the first ``top_k`` distinct ones, attach the rest.

    Args:
        order: candidate positions, best first.
        titles: title of each candidate position.
        vectors: unit embedding of each candidate position.
        top_k: how many distinct results to keep.

    Returns:
        ``(kept position, [positions of its near-duplicates])`` best first; a later
        candidate is a near-duplicate of a kept one when their normalised titles are equal
        or their cosine is at least :data:`DUPLICATE_COSINE`.
    """
    kept: list[tuple[int, list[int]]] = []
    by_title: dict[str, int] = {}
    for position in (int(p) for p in order):
        key = normalise_title(titles[position])
        twin_of = by_title.get(key)
        if twin_of is None and kept:
            sims = vectors[[k for k, _ in kept]] @ vectors[position]
            best = int(np.argmax(sims))
            if sims[best] >= DUPLICATE_COSINE:
                twin_of = best
        if twin_of is not None:
            kept[twin_of][1].append(position)
        elif len(kept) < top_k:
            by_title[key] = len(kept)
            kept.append((position, []))
    return kept
