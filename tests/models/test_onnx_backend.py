"""The ONNX Runtime backend on the real m3e-small: export, fidelity to torch, cache, wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import onnx_backend
from models.onnx_backend import (
    QUANTIZATION_TAG,
    OnnxEncoder,
    UnsupportedModelError,
    cache_entry_name,
    check_exportable,
    ensure_artifacts,
)
from models.sentence_transformer import SentenceTransformerEncoder, _model_id, default_model_path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "锂离子电池正极材料的制备方法",
    "一种基于深度学习的水稻病虫害图像识别系统",
    "高强度铝合金焊接工艺及其在轨道交通车辆中的应用研究",
    "短",
    "",
    "  前后带空格的 需求 ",
    "本发明涉及一种新型复合材料。" * 60,  # > 512 tokens: truncated like torch
]


@pytest.fixture(scope="module")
def st_model() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def onnx_encoder(st_model: Any, onnx_cache: Path) -> OnnxEncoder:
    return OnnxEncoder(
        st_model, model_id=_model_id(default_model_path()), cache_dir=onnx_cache, quantize=True
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_writes_both_graphs_and_a_manifest(onnx_encoder: OnnxEncoder) -> None:
    artifacts = onnx_encoder.artifacts
    assert artifacts.exported_now
    assert artifacts.fp32.stat().st_size > artifacts.int8.stat().st_size > 1_000_000
    manifest = json.loads((artifacts.directory / onnx_backend.MANIFEST_FILE).read_text())
    assert manifest["input_names"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert manifest["model_id"] == _model_id(default_model_path())
    assert not [p for p in artifacts.directory.parent.iterdir() if p.name.startswith(".tmp-")]


def test_fp32_queries_match_torch(
    onnx_encoder: OnnxEncoder, m3e_encoder: SentenceTransformerEncoder
) -> None:
    got = onnx_encoder.encode_queries(TEXTS)
    expected = m3e_encoder.encode_queries(TEXTS)
    assert got.shape == (len(TEXTS), 512) and got.dtype == np.float32
    assert _cosines(got, expected).min() >= 0.9999


def test_int8_documents_are_close_to_torch_fp32_and_normalised(
    onnx_encoder: OnnxEncoder, m3e_encoder: SentenceTransformerEncoder
) -> None:
    got = onnx_encoder.encode_documents(TEXTS)
    expected = m3e_encoder.encode_documents(TEXTS)
    assert got.shape == (len(TEXTS), 512) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(got, expected)
    assert cosines.min() >= 0.97
    # int8, so not identical to fp32: the documents really went through the int8 graph.
    assert cosines.max() < 0.99999
    assert onnx_encoder.encode_documents([]).shape == (0, 512)


def test_order_does_not_depend_on_length_sorting(onnx_encoder: OnnxEncoder) -> None:
    forward = onnx_encoder.encode_queries(TEXTS)
    backward = onnx_encoder.encode_queries(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(forward, backward, atol=1e-5)


def test_fingerprints(
    onnx_encoder: OnnxEncoder,
    m3e_encoder: SentenceTransformerEncoder,
    st_model: Any,
    onnx_cache: Path,
) -> None:
    assert onnx_encoder.fingerprint == f"{m3e_encoder.fingerprint}/docs={QUANTIZATION_TAG}"
    assert onnx_encoder.fingerprint != m3e_encoder.fingerprint
    assert "int8-dynamic" not in onnx_encoder.fingerprint  # not the torch int8 space either
    fp32 = OnnxEncoder(
        st_model, model_id=_model_id(default_model_path()), cache_dir=onnx_cache, quantize=False
    )
    # fp32 ONNX reproduces torch fp32, so it shares the torch fingerprint (and its indexes).
    assert fp32.fingerprint == m3e_encoder.fingerprint
    assert onnx_encoder.dimension == fp32.dimension == 512


def test_second_construction_reuses_the_cache(
    onnx_encoder: OnnxEncoder, st_model: Any, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p: p.stat().st_mtime_ns for p in onnx_encoder.artifacts.directory.iterdir()}

    def no_export(*_args: object, **_kw: object) -> None:
        raise AssertionError("the cached graphs should have been reused")

    monkeypatch.setattr(onnx_backend, "export_fp32", no_export)
    again = OnnxEncoder(st_model, model_id=_model_id(default_model_path()), cache_dir=onnx_cache)
    assert not again.artifacts.exported_now
    assert again.artifacts.directory == onnx_encoder.artifacts.directory
    assert {p: p.stat().st_mtime_ns for p in again.artifacts.directory.iterdir()} == before
    np.testing.assert_array_equal(
        again.encode_queries(TEXTS[:2]), onnx_encoder.encode_queries(TEXTS[:2])
    )


def test_another_process_reuses_the_cache_and_gets_the_same_fingerprint(
    onnx_encoder: OnnxEncoder, onnx_cache: Path
) -> None:
    code = (
        "import json, sys; from pathlib import Path\n"
        "from models.onnx_backend import load_onnx_encoder\n"
        "e = load_onnx_encoder(cache_dir=Path(sys.argv[1]))\n"
        "print(json.dumps([e.fingerprint, e.artifacts.exported_now, "
        "e.encode_queries(['锂离子电池正极材料的制备方法'])[0][:4].tolist()]))\n"
    )
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(onnx_cache)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    fingerprint, exported_now, head = json.loads(out.stdout.strip().splitlines()[-1])
    assert fingerprint == onnx_encoder.fingerprint and exported_now is False
    np.testing.assert_allclose(head, onnx_encoder.encode_queries(TEXTS[:1])[0][:4], atol=1e-6)


def test_concurrent_encodes_from_threads_agree_with_serial(onnx_encoder: OnnxEncoder) -> None:
    texts = [f"第{i}种 锂电池 正极材料 包覆 工艺" for i in range(40)]
    expected_docs = onnx_encoder.encode_documents(texts)
    expected_queries = onnx_encoder.encode_queries(texts[:5])
    results: list[tuple[str, np.ndarray]] = []
    errors: list[BaseException] = []

    def run(side: str) -> None:
        try:
            if side == "docs":
                results.append((side, onnx_encoder.encode_documents(texts)))
            else:
                results.append((side, onnx_encoder.encode_queries(texts[:5])))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(side,)) for side in ["docs", "queries"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 6
    for side, out in results:
        np.testing.assert_allclose(
            out, expected_docs if side == "docs" else expected_queries, atol=1e-5
        )


def test_a_lost_export_race_keeps_the_winner_and_cleans_up(
    st_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_id = "race-model"
    final = tmp_path / cache_entry_name(model_id)

    def fake_export(_model: object, path: Path, **_kw: object) -> tuple[tuple[str, ...], bool]:
        path.write_bytes(b"ours")
        # Another process completes the same entry while this one is still exporting.
        final.mkdir()
        (final / onnx_backend.FP32_FILE).write_bytes(b"theirs")
        (final / onnx_backend.MANIFEST_FILE).write_text(
            json.dumps({"input_names": ["input_ids", "attention_mask"]})
        )
        return ("input_ids", "attention_mask"), False

    monkeypatch.setattr(onnx_backend, "export_fp32", fake_export)
    monkeypatch.setattr(onnx_backend, "quantize_int8", lambda src, dst: dst.write_bytes(b"q"))
    artifacts = ensure_artifacts(st_model, model_id, tmp_path)
    assert not artifacts.exported_now and artifacts.directory == final
    assert (final / onnx_backend.FP32_FILE).read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_stale_temporary_directories_are_removed_fresh_ones_kept(
    st_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale, fresh = tmp_path / ".tmp-stale", tmp_path / ".tmp-fresh"
    for path in (stale, fresh):
        path.mkdir()
        (path / onnx_backend.FP32_FILE).write_bytes(b"partial")
    old = onnx_backend.time.time() - onnx_backend.STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("export failed")

    monkeypatch.setattr(onnx_backend, "export_fp32", broken)
    with pytest.raises(RuntimeError):
        ensure_artifacts(st_model, "some-model", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-fresh"]


def test_a_failed_export_leaves_nothing_behind(
    st_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("export failed")

    monkeypatch.setattr(onnx_backend, "export_fp32", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        ensure_artifacts(st_model, "broken-model", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_entry_depends_on_model_id_and_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = cache_entry_name("m3e-small@abc"), cache_entry_name("m3e-small@abd")
    assert a != b and a.startswith("m3e-small@abc-")
    assert cache_entry_name("org/name with space").startswith("org_name_with_space-")
    monkeypatch.setattr(onnx_backend, "versions", lambda: {"onnxruntime": "0.0.0"})
    assert cache_entry_name("m3e-small@abc") != a


def test_unsupported_layouts_are_refused() -> None:
    class Transformer:
        pass

    class Pooling:
        def __init__(self, mode: str) -> None:
            self.mode = mode

        def get_config_dict(self) -> dict[str, str]:
            return {"pooling_mode": self.mode}

    class Dense:
        pass

    check_exportable([Transformer(), Pooling("mean")])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedModelError, match="pooling_mode='cls'"):
        check_exportable([Transformer(), Pooling("cls")])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedModelError, match="TECHMATCH_BACKEND=torch"):
        check_exportable([Transformer(), Pooling("mean"), Dense()])  # type: ignore[arg-type]


def test_settings_select_the_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from matcher import runtime
    from matcher.settings import Settings

    monkeypatch.setenv("TECHMATCH_BACKEND", "onnx")
    settings = Settings(cache_dir=tmp_path)
    assert settings.backend == "onnx"
    monkeypatch.setenv("TECHMATCH_BACKEND", "tensorrt")
    with pytest.raises(ValidationError, match="backend"):
        Settings()

    calls: list[dict[str, Any]] = []

    def fake_load(model: str | None, **kw: Any) -> object:
        calls.append({"model": model, **kw})
        from models.fake import FakeEncoder

        return FakeEncoder(8)

    monkeypatch.setattr(runtime, "load_encoder", fake_load)
    runtime.make_encoder(settings, use_cache=False)
    assert calls[0]["backend"] == "onnx" and calls[0]["onnx_cache_dir"] == tmp_path / "onnx"


def test_load_encoder_dispatches_on_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from models import sentence_transformer

    seen: dict[str, Any] = {}

    def fake_onnx(model: str | None, *, cache_dir: Path, quantize: bool) -> str:
        seen.update(model=model, cache_dir=cache_dir, quantize=quantize)
        return "onnx-encoder"

    monkeypatch.setattr(onnx_backend, "load_onnx_encoder", fake_onnx)
    load = sentence_transformer.load_encoder.__wrapped__  # bypass the per-process cache
    assert load(None, quantize=True, backend="onnx", onnx_cache_dir=tmp_path) == "onnx-encoder"
    assert seen == {"model": None, "cache_dir": tmp_path, "quantize": True}
    with pytest.raises(ValueError, match="backend must be one of"):
        load(None, backend="tensorrt")
