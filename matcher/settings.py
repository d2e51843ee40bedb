"""Settings, read once from the environment (prefix ``TECHMATCH_``) and validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration shared by the CLI, the API and the evaluator."""

    model_config = SettingsConfigDict(env_prefix="TECHMATCH_", extra="ignore")

    model: str | None = Field(
        default=None,
        description="sentence-transformers model folder or name; unset means bundled m3e-small",
    )
    quantize: bool = Field(
        default=True,
        description="encode results in int8 (needs stay fp32): ONNX per-channel int8 with the onnx "
        "backend, torch dynamic int8 with torch; measured in bench/RESULTS.md to keep CCF dev quality",
    )
    backend: Literal["torch", "onnx"] = Field(
        default="onnx",
        description="encoder runtime: onnx (ONNX Runtime; the model is exported once to "
        "<cache_dir>/onnx; with quantize, results use its per-channel int8 graph: 3.4x plain "
        "fp32 encode, CCF dev quality held) or torch (sentence-transformers)",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    cache_dir: Path = Field(default=Path.home() / ".cache" / "techmatch")
    use_cache: bool = True
    index_dir: Path = Path("index")
    candidates: int = Field(default=100, ge=1, le=10_000, description="dense and lexical top-N")
    exact_search_max: int | None = Field(default=None, ge=0, description="exact search up to this many vectors; unset: measured default")
