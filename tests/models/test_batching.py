"""Tests of length-sorted, token-budgeted batching."""

from __future__ import annotations

import numpy as np
import pytest

from models.batching import encode_length_sorted, plan_batches, token_lengths


def test_plan_batches_covers_every_position_once() -> None:
    lengths = [5, 300, 12, 12, 40, 512, 7, 1, 90]
    batches = plan_batches(lengths, batch_size=3, max_tokens_per_batch=600)
    positions = np.concatenate(batches)
    assert sorted(positions.tolist()) == list(range(len(lengths)))


def test_plan_batches_sorts_longest_first_and_groups_similar_lengths() -> None:
    lengths = [3, 100, 4, 101, 5, 102]
    batches = plan_batches(lengths, batch_size=3, max_tokens_per_batch=10_000)
    assert [b.tolist() for b in batches] == [[5, 3, 1], [4, 2, 0]]


def test_plan_batches_respects_the_token_budget() -> None:
    lengths = [100] * 10 + [10] * 30
    batches = plan_batches(lengths, batch_size=64, max_tokens_per_batch=250)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) * width <= 250
    # Short texts share a batch: 250 // 10 = 25 of them fit where only 2 long ones do.
    assert max(len(b) for b in batches) == 25
    assert len(batches[0]) == 2


def test_plan_batches_gives_an_over_budget_item_its_own_batch() -> None:
    batches = plan_batches([1000, 2], batch_size=8, max_tokens_per_batch=100)
    assert [b.tolist() for b in batches] == [[0], [1]]


def test_plan_batches_is_stable_for_equal_lengths() -> None:
    batches = plan_batches([7, 7, 7, 7], batch_size=2, max_tokens_per_batch=1000)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3]]


def test_plan_batches_empty() -> None:
    assert plan_batches([], batch_size=4) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be > 0, got 0"),
        ({"max_tokens_per_batch": -1}, "max_tokens_per_batch must be > 0, got -1"),
    ],
)
def test_plan_batches_rejects_bad_limits(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_batches([1, 2], **kwargs)


def test_plan_batches_rejects_negative_lengths() -> None:
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        plan_batches([3, -1])


@pytest.fixture(scope="module")
def m3e():  # the SentenceTransformer type is imported lazily
    import torch
    from sentence_transformers import SentenceTransformer

    from models.sentence_transformer import default_model_path

    torch.set_num_threads(2)
    return SentenceTransformer(str(default_model_path()), device="cpu")


TEXTS = [
    "一种高活性氟化锂的制备方法",
    "锂离子电池",
    (
        "基于深度学习的农作物病虫害图像识别系统研究。本文提出了一种卷积神经网络模型，"
        "在自建的病虫害数据集上取得了较高的识别准确率，并在移动端完成了部署。"
    ),
    "防爆锂离子电池的研发。随着社会的不断发展，锂电池的普及率越来越高。",
    "污水处理",
]


@pytest.mark.slow
def test_encode_length_sorted_matches_plain_encode_in_input_order(m3e) -> None:
    expected = m3e.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = encode_length_sorted(m3e, TEXTS, batch_size=2, max_tokens_per_batch=64)
    assert got.shape == (len(TEXTS), 512)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Same rows in the same order; padding differences only move the last digits.
    np.testing.assert_allclose(np.einsum("ij,ij->i", got, expected), 1.0, atol=1e-4)


@pytest.mark.slow
def test_truncation_policy_cuts_long_texts_and_restores_the_model_limit(m3e) -> None:
    long_text = TEXTS[2] * 20
    assert token_lengths(m3e, [long_text], 32).tolist() == [32]
    before = m3e.max_seq_length
    cut = encode_length_sorted(m3e, [long_text, TEXTS[0]], max_seq_length=32)
    assert m3e.max_seq_length == before
    # The first 32 tokens are the whole information the cut embedding has.
    head = m3e.tokenizer.decode(m3e.tokenizer(long_text)["input_ids"][1:31]).replace(" ", "")
    head_emb = m3e.encode([head], normalize_embeddings=True)
    assert float(cut[0] @ head_emb[0]) > 0.99
    full = encode_length_sorted(m3e, [long_text])
    assert float(cut[0] @ full[0]) < 0.999


def test_encode_length_sorted_rejects_bad_truncation() -> None:
    with pytest.raises(ValueError, match="max_seq_length must be > 0, got 0"):
        encode_length_sorted(object(), ["x"], max_seq_length=0)  # type: ignore[arg-type]


def test_short_items_are_not_padded_to_a_long_one() -> None:
    # A need (300 tokens) and its key sentences (~30): together they fit the token budget,
    # but padded to 300 each sentence would cost as much as the need.
    batches = plan_batches([30, 300, 28, 151, 25], batch_size=128, max_tokens_per_batch=8192)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2, 4]]
