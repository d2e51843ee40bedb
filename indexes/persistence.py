"""Index directories: a JSON manifest beside the arrays, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_LIBRARIES = ("faiss-cpu", "bm25s", "jieba", "numpy", "sentence-transformers", "torch", "techmatch")


class IndexMismatchError(RuntimeError):
    """An index on disk was built for another encoder or schema."""


def library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def make_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest with the schema version, build time and library versions filled in."""
    return {
        "schema_version": SCHEMA_VERSION,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "libraries": library_versions(),
        **fields,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an index directory (no {MANIFEST})")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise IndexMismatchError(
            f"{directory} has index schema version {manifest.get('schema_version')}, this "
            f"techmatch reads version {SCHEMA_VERSION}; rebuild it with `techmatch index build`"
        )
    return manifest


def check_fingerprint(directory: Path, manifest: dict[str, Any], fingerprint: str) -> None:
    """Refuse an index whose vectors come from another encoder: their scores would be noise.

    Raises:
        IndexMismatchError: naming both encoders and the rebuild command.
    """
    built_with = manifest.get("encoder_fingerprint")
    if built_with != fingerprint:
        raise IndexMismatchError(
            f"index {directory} was built with encoder '{built_with}' but the configured encoder "
            f"is '{fingerprint}'. Rebuild it: techmatch index build --results FILE "
            f"--index-dir {directory} (or set TECHMATCH_MODEL and TECHMATCH_QUANTIZE back to what it was built with)"
        )


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``target`` only if the block succeeds.

    A crash mid-write leaves the previous index whole; readers never see a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old: Path | None = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks (manifests record what was measured)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def load_json(path: Path, default: Callable[[], Any] | None = None) -> Any:
    if not path.is_file() and default is not None:
        return default()
    return json.loads(path.read_text(encoding="utf-8"))
