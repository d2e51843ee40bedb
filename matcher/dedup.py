"""Near-duplicate folding: result libraries repeat themselves (the CCF results hold the same
title up to eight times), and a ranking should show distinct results with their twins attached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Sequence

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
    order: np.ndarray, title_keys: Sequence[Hashable], vectors: np.ndarray, top_k: int
) -> list[tuple[int, list[int]]]:
    """Walk candidates best first, keep the first ``top_k`` distinct ones, attach the rest.

    Args:
        order: candidate positions, best first.
        title_keys: the normalised title of each candidate position, or any key equal for
            equal normalised titles (``matcher.profiles.title_key``).
        vectors: unit embedding of each candidate position.
        top_k: how many distinct results to keep.

    Returns:
        ``(kept position, [positions of its near-duplicates])`` best first; a later
        candidate is a near-duplicate of a kept one when their normalised titles are equal
        or their cosine is at least :data:`DUPLICATE_COSINE`.
    """
    positions = [int(p) for p in order]
    kept: list[tuple[int, list[int]]] = []
    if not positions:
        return kept
    # All pairwise cosines in one product: a per-candidate product against the kept ones
    # cost more than the rest of the ranking. Only pairs at or above the threshold matter.
    rows = np.asarray(vectors, np.float32)[positions]
    close = (rows @ rows.T >= DUPLICATE_COSINE).tolist()
    by_title: dict[Hashable, int] = {}
    kept_rows: list[int] = []  # row in ``rows`` of each kept candidate
    for row, position in enumerate(positions):
        key = title_keys[position]
        twin_of = by_title.get(key)
        if twin_of is None and kept_rows:
            near = [k for k, r in enumerate(kept_rows) if close[row][r]]
            if len(near) == 1:
                twin_of = near[0]
            elif near:  # the most similar kept one, as a full argmax would pick
                sims = rows[[kept_rows[k] for k in near]] @ rows[row]
                twin_of = near[int(np.argmax(sims))]
        if twin_of is not None:
            kept[twin_of][1].append(position)
        elif len(kept) < top_k:
            by_title[key] = len(kept)
            kept.append((position, []))
            kept_rows.append(row)
    return kept
