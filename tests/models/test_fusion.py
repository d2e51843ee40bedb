"""The fusion scorer: features, persistence, calibration, and reproducible retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.fake import FakeEncoder
from models.fusion import (
    FALLBACK,
    FEATURES,
    Calibration,
    FusionModel,
    TierThresholds,
    feature_matrix,
    load_model,
    model_from_dict,
)
from models.train_fusion import train


def _values(n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    names = ["dense", "dense_title", "dense_sentence", "lexical", "term_overlap", "key_term_overlap",
             "bigram_coverage", "title_similarity", "mean_idf", "generic_share"]
    return {name: rng.random(n).astype(np.float32) for name in names}


def test_feature_matrix_standardises_within_need_and_checks_names() -> None:
    values = {"dense": np.array([0.5, 0.7, 0.9], np.float32)}
    x = feature_matrix(values, ["z:dense", "raw:dense"])
    assert x[:, 0].tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-5)
    assert x[:, 1].tolist() == pytest.approx([0.5, 0.7, 0.9])
    with pytest.raises(KeyError, match="lexical"):
        feature_matrix(values, ["z:lexical"])
    with pytest.raises(ValueError, match="z:"):
        feature_matrix(values, ["dense"])


def test_fallback_ranks_by_fixed_weights_and_priors() -> None:
    values = _values()
    scores = FALLBACK.score(values)
    assert scores.shape == (4,)
    boosted = FALLBACK.score({**values, "field": np.array([1.0, 0, 0, 0], np.float32)})
    assert boosted[0] - scores[0] == pytest.approx(FALLBACK.prior_weights["field"])
    assert np.allclose(boosted[1:], scores[1:])
    assert FALLBACK.tiers(scores) == [None] * 4
    assert FALLBACK.p_strong(scores) is None


def test_calibration_and_tiers_are_monotone() -> None:
    model = FusionModel(
        features=("raw:dense",), mean=(0.0,), scale=(1.0,), coef=(1.0,), intercept=0.0,
        p_strong_map=Calibration((0.0, 1.0, 2.0), (0.05, 0.55, 0.9)),
        p_related_map=Calibration((0.0, 1.0), (0.2, 0.8)),
        thresholds=TierThresholds(strong=0.7, fairly_strong=0.5, weak=0.5),
    )
    scores = np.array([-1.0, 0.6, 1.0, 3.0], np.float32)
    p = model.p_strong(scores)
    assert p is not None and np.all(np.diff(p) >= 0)
    assert p[0] == pytest.approx(0.05) and p[-1] == pytest.approx(0.9)
    assert model.tiers(scores) == ["无相关", "弱相关", "较强相关", "强相关"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = FusionModel(
        features=FEATURES, mean=tuple(range(len(FEATURES))), scale=(2.0,) * len(FEATURES),
        coef=(0.5,) * len(FEATURES), intercept=-1.0,
        p_strong_map=Calibration((0.0, 1.0), (0.1, 0.6)), version="t", manifest={"seed": 1},
    )
    path = tmp_path / "w" / "m.json"
    model.save(path)
    loaded = load_model(path)
    assert loaded == model
    values = {**_values(), "raw_only": np.zeros(4)}
    assert np.array_equal(loaded.score(values), model.score(values))
    data = json.loads(path.read_text(encoding="utf-8"))
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version"):
        model_from_dict(data)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.json")


def _write_bench(root: Path) -> Path:
    """A tiny BEIR rerank benchmark whose labels follow shared topic words."""
    topics = ["锂电池 正极 材料", "小麦 育种 施肥", "煤矿 瓦斯 监测", "污水 处理 膜", "机器人 采摘 视觉",
              "氮化硼 单晶 合成"]
    rng = np.random.default_rng(7)
    corpus, queries, rows = [], [], {"train": [], "dev": []}
    for q, topic in enumerate(topics):
        queries.append({"_id": f"q{q}", "title": topic.replace(" ", "") + "技术需求",
                        "text": f"需求内容：开发{topic.replace(' ', '')}的关键技术。"})
        split = "train" if q < 4 else "dev"
        for d in range(8):
            other = topics[(q + 1 + d) % len(topics)] if d >= 3 else topic
            words = other.split()
            rng.shuffle(words)
            corpus.append({"_id": f"q{q}d{d}", "title": " ".join(words[:2]) + " 技术", "text": ""})
            rows[split].append((f"q{q}", f"q{q}d{d}", 3 - d if d < 3 else 0))
    root.mkdir()
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in corpus), "utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), "utf-8")
    for split, split_rows in rows.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{a}\t{b}\t{s}" for a, b, s in split_rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", "utf-8")
    return root


def test_retraining_gives_identical_weights(tmp_path: Path) -> None:
    data = _write_bench(tmp_path / "bench")
    first, report = train(data, FakeEncoder(dimension=64), command="test")
    second, _ = train(data, FakeEncoder(dimension=64), command="test")
    assert first.to_dict() == second.to_dict()
    assert first.manifest["seed"] == second.manifest["seed"]
    assert set(first.manifest["data"]) == {"corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv"}
    assert report["dev"]["needs"] == 2
    # The topic words carry the labels, so the learned scorer ranks a relevant result first.
    assert report["dev"]["strong_precision@1"][0] == 1.0
    out = tmp_path / "m.json"
    first.save(out)
    assert load_model(out).coef == first.coef


def test_adapter_round_trip_and_tamper_check(tmp_path: Path) -> None:
    adapter = np.eye(4, dtype=np.float32) * 0.5
    model = FusionModel(features=("z:dense_adapted",), mean=(0.0,), scale=(1.0,), coef=(1.0,),
                        intercept=0.0, adapter=adapter)
    path = tmp_path / "m.json"
    model.save(path)
    loaded = load_model(path)
    assert loaded.adapter is not None and np.array_equal(loaded.adapter, adapter)
    q = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    docs = np.eye(4, dtype=np.float32)
    # q + A q = 1.5 q, re-normalised: the adapted cosine equals the plain one here
    assert loaded.adapted(q, docs, np.zeros(4)).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    # Missing vectors or an adapter of another dimension fall back to the plain cosine.
    assert loaded.adapted(None, docs, np.full(4, 0.3)).tolist() == pytest.approx([0.3] * 4)
    assert loaded.adapted(np.ones(3, np.float32), np.ones((2, 3), np.float32),
                          np.full(2, 0.2)).tolist() == pytest.approx([0.2, 0.2])
    # Scoring without the adapted signal uses the plain cosine in its place.
    assert np.allclose(loaded.score({"dense": np.array([0.1, 0.9])}),
                       loaded.score({"dense_adapted": np.array([0.1, 0.9])}))
    (tmp_path / "m.adapter.npy").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        load_model(path)
