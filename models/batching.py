"""Length-sorted, token-budgeted batching for a SentenceTransformer.

Why: a BERT batch costs ``batch size x longest sequence in it``. Sorting the texts by
their *token* count puts texts of similar length together, so almost nothing is padding,
and a token budget lets batches of short texts (CCF titles, ~10 tokens) be large while
batches of long abstracts stay small enough for the CPU caches.

Truncation policy: a text is cut to ``max_seq_length`` tokens, counting [CLS]/[SEP]
(default :data:`DEFAULT_MAX_SEQ_LENGTH` = 512, the position limit of m3e-small, so the
default never cuts more than the model itself would). Texts are rendered title first
(``title + "。" + text``), so truncation drops the tail of the description, never the
title. A smaller limit is a speed/quality trade measured in ``bench/RESULTS.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_BATCH_SIZE = 128
DEFAULT_MAX_TOKENS_PER_BATCH = 8192


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
) -> list[np.ndarray]:
    """Group item positions into batches of similar length.

    Items are sorted longest first (a stable sort, so equal lengths keep their input
    order) and cut into consecutive batches; a batch closes when adding the next item
    would exceed ``batch_size`` items, make ``items x longest length`` (the padded
    size) exceed ``max_tokens_per_batch``, or pad the next item to more than twice its
    length. A single item longer than the budget still gets a batch of its own.

    The last rule matters for a need: its text (~300 tokens) and its short key sentences
    (~30) fit one budget, but padded to the need's width the sentences cost as much as
    the need itself each (single-need encoding was 7x the need's own cost).

    Args:
        lengths: Token count of each item.
        batch_size: Maximum number of items per batch.
        max_tokens_per_batch: Maximum padded size (items x longest) of a batch.

    Returns:
        A list of integer arrays of positions into ``lengths``; together they cover
        every position exactly once.

    Raises:
        ValueError: If ``batch_size`` or ``max_tokens_per_batch`` is not positive, or a
            length is negative.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if max_tokens_per_batch <= 0:
        raise ValueError(f"max_tokens_per_batch must be > 0, got {max_tokens_per_batch}")
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if lengths_arr.size and lengths_arr.min() < 0:
        raise ValueError(f"lengths must be >= 0, got minimum {int(lengths_arr.min())}")
    order = np.argsort(-lengths_arr, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # Longest first: the first item of a batch fixes its padded width.
        width = max(int(lengths_arr[order[start]]), 1)
        fit = max(1, min(batch_size, max_tokens_per_batch // width))
        # Sorted longest first, so the items worth padding to ``width`` are a prefix.
        fit = max(1, int(np.count_nonzero(2 * lengths_arr[order[start : start + fit]] >= width)))
        batches.append(order[start : start + fit])
        start += fit
    return batches


def token_lengths(
    model: SentenceTransformer, texts: Sequence[str], max_seq_length: int
) -> np.ndarray:
    """Token count of each text as the model will see it (special tokens included, truncated)."""
    encoded = model.tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=True,
        max_length=max_seq_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


@contextmanager
def _max_seq_length(model: SentenceTransformer, max_seq_length: int) -> Iterator[None]:
    previous = model.max_seq_length
    model.max_seq_length = max_seq_length
    try:
        yield
    finally:
        model.max_seq_length = previous


def encode_length_sorted(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    normalize: bool = True,
) -> np.ndarray:
    """Encode ``texts`` in token-length-sorted batches and return them in input order.

    Args:
        model: A loaded SentenceTransformer (fp32 or int8-quantised).
        texts: The texts to encode.
        batch_size: Maximum texts per forward pass.
        max_tokens_per_batch: Maximum padded tokens per forward pass.
        max_seq_length: Truncation limit in tokens (see the module docstring).
        normalize: L2-normalise the embeddings (needed for inner product = cosine).

    Returns:
        float32 array of shape ``(len(texts), dim)``, row ``i`` for ``texts[i]``.

    Raises:
        ValueError: If ``max_seq_length`` is not positive.
    """
    if max_seq_length <= 0:
        raise ValueError(f"max_seq_length must be > 0, got {max_seq_length}")
    dim = _embedding_dimension(model)
    out = np.empty((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    lengths = token_lengths(model, texts, max_seq_length)
    with _max_seq_length(model, max_seq_length):
        for positions in plan_batches(
            lengths, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch
        ):
            out[positions] = model.encode(
                [texts[i] for i in positions],
                batch_size=len(positions),
                normalize_embeddings=normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
    return out


def _embedding_dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension; accept both.
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dim = getter()
    if dim is None:
        raise ValueError("the model does not report its embedding dimension")
    return int(dim)
