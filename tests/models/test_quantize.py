"""Tests of dynamic int8 quantisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.quantize import count_linear_layers, is_quantized, quantize_dynamic_int8


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32))


def test_quantises_every_linear_layer_and_keeps_the_original() -> None:
    model = _mlp()
    quantized = quantize_dynamic_int8(model)
    assert count_linear_layers(quantized) == 0
    assert is_quantized(quantized)
    # Not in place by default: the fp32 model is untouched.
    assert count_linear_layers(model) == 2
    assert not is_quantized(model)


def test_inplace_returns_the_same_object() -> None:
    model = _mlp()
    assert quantize_dynamic_int8(model, inplace=True) is model
    assert is_quantized(model)


def test_quantised_outputs_stay_close_to_fp32() -> None:
    model = _mlp()
    quantized = quantize_dynamic_int8(model)
    x = torch.randn(16, 64)
    with torch.inference_mode():
        ref, got = model(x), quantized(x)
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=1)
    assert float(cos.min()) > 0.99
    assert not torch.equal(ref, got)  # it really is a different (int8) computation


def test_refuses_a_model_without_linear_layers() -> None:
    with pytest.raises(ValueError, match="has no torch.nn.Linear layer"):
        quantize_dynamic_int8(torch.nn.Sequential(torch.nn.ReLU()))


@pytest.mark.slow
def test_int8_m3e_embeddings_stay_close_to_fp32() -> None:
    from sentence_transformers import SentenceTransformer

    from models.sentence_transformer import default_model_path

    torch.set_num_threads(2)
    fp32 = SentenceTransformer(str(default_model_path()), device="cpu")
    int8 = quantize_dynamic_int8(fp32)
    texts = [
        "一种高活性氟化锂的制备方法",
        "防爆锂离子电池的研发。随着社会的不断发展，锂电池的普及率越来越高。",
        "基于深度学习的农作物病虫害图像识别系统研究",
        "城市污水处理厂污泥的资源化利用技术",
    ]
    a = fp32.encode(texts, normalize_embeddings=True)
    b = int8.encode(texts, normalize_embeddings=True)
    cos = np.einsum("ij,ij->i", a, b)
    # Measured on 2,000 CSL abstracts: mean ~0.98 (bench/RESULTS.md); 0.9 is a safe floor.
    assert cos.min() > 0.9
    assert is_quantized(int8) and not is_quantized(fp32)
    # Ranking survives: each text is still nearest to itself across the two models.
    assert (np.argmax(b @ a.T, axis=1) == np.arange(len(texts))).all()
