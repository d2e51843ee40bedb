"""A searchable collection: the vector and lexical index of one kind of record, saved together."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexes.lexical import LexicalIndex
from indexes.vector import IndexSpec, VectorIndex


class Collection:
    """Dense and lexical views of the same records, kept in step."""

    def __init__(self, vector: VectorIndex, lexical: LexicalIndex) -> None:
        self.vector = vector
        self.lexical = lexical

    @classmethod
    def empty(cls, dimension: int, exact_max: int | None, spec: IndexSpec | None = None) -> Collection:
        return cls(VectorIndex(dimension, spec, exact_max), LexicalIndex())

    def __len__(self) -> int:
        return len(self.vector)

    def add(self, ids: Sequence[str], tokens: Sequence[list[str]], vectors: np.ndarray) -> None:
        """Add or replace records, given their lexical tokens and their vectors."""
        self.vector.add(ids, vectors)
        self.lexical.add_tokens(ids, tokens)

    def remove(self, ids: Sequence[str]) -> int:
        self.lexical.remove(ids)
        return self.vector.remove(ids)

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        return {"vector": self.vector.save(directory), "lexical": self.lexical.save(directory)}

    @classmethod
    def load(cls, directory: Path, info: dict[str, Any], exact_max: int | None) -> Collection:
        return cls(
            VectorIndex.load(directory, info["vector"], exact_max),
            LexicalIndex.load(directory, info["lexical"]),
        )
