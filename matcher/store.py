"""Record store: the research results and needs behind an index, in SQLite.

SQLite is the embedded default: one file in the index directory, transactional, so a crash
never leaves a half-written record and nothing already stored is lost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from matcher.records import EnterpriseNeed, ResearchResult
from matcher.profiles import ResultRow, profile_columns, result_row

Kind = Literal["results", "needs"]
R = TypeVar("R", bound=BaseModel)
_MODELS: dict[str, type[BaseModel]] = {"results": ResearchResult, "needs": EnterpriseNeed}


class RecordStore:
    """Results and needs by id, as validated JSON."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        for kind in _MODELS:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {kind} (id TEXT PRIMARY KEY, json TEXT NOT NULL)")
        # A result's signal profile (jieba terms, compacted text) is derived once, on write.
        # Stores written before these columns existed get them empty: those rows are
        # profiled on read instead.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        for column in ("terms", "compact"):
            if column not in columns:
                self._db.execute(f"ALTER TABLE results ADD COLUMN {column} TEXT")
        # The change log lets an index snapshot catch up with writes made after it was taken.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL)"
        )
        self._db.commit()

    def upsert(self, kind: Kind, records: Sequence[BaseModel]) -> None:
        """Insert or replace ``records`` in one transaction."""
        if kind == "results":
            rows = [(r.id, r.model_dump_json(), *profile_columns(r)) for r in records]  # type: ignore[arg-type, attr-defined]
            sql = "INSERT OR REPLACE INTO results (id, json, terms, compact) VALUES (?, ?, ?, ?)"
        else:
            rows = [(getattr(r, "id"), r.model_dump_json()) for r in records]
            sql = f"INSERT OR REPLACE INTO {kind} (id, json) VALUES (?, ?)"
        with self._lock, self._db:
            self._db.executemany(sql, rows)
            self._log(kind, [row[0] for row in rows], "upsert")

    def delete(self, kind: Kind, ids: Sequence[str]) -> int:
        """Delete ``ids``; returns how many existed."""
        with self._lock, self._db:
            cursor = self._db.executemany(f"DELETE FROM {kind} WHERE id = ?", [(i,) for i in ids])
            self._log(kind, ids, "delete")
            return cursor.rowcount

    def _log(self, kind: Kind, ids: Sequence[str], op: str) -> None:
        self._db.executemany(
            "INSERT INTO changes (kind, id, op) VALUES (?, ?, ?)", [(kind, i, op) for i in ids]
        )

    def last_seq(self) -> int:
        """The sequence number of the newest write (0 for none)."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def changes_since(self, seq: int) -> dict[tuple[str, str], str]:
        """The latest operation (``upsert``/``delete``) per (kind, id) written after ``seq``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, id, op FROM changes WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return {(kind, record_id): op for kind, record_id, op in rows}

    def forget_changes(self, upto: int) -> None:
        """Drop log entries a saved snapshot already contains."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM changes WHERE seq <= ?", (upto,))

    def _select(self, kind: Kind, columns: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows.extend(self._db.execute(f"SELECT {columns} FROM {kind} WHERE id IN ({marks})", chunk))
        return rows

    def get(self, kind: Kind, ids: Sequence[str]) -> dict[str, BaseModel]:
        """The stored records of ``ids`` that exist, by id."""
        # The schema's core validator directly: the same validation as model_validate_json
        # without its per-call wrapper, which showed at ~190 records per matched need.
        # Validation needs no database access: done outside the lock so writers wait less.
        validate = _MODELS[kind].__pydantic_validator__.validate_json
        return {record_id: validate(raw) for record_id, raw in self._select(kind, "id, json", ids)}

    def results(self, ids: Sequence[str]) -> dict[str, ResearchResult]:
        return self.get("results", ids)  # type: ignore[return-value]

    def result_rows(self, ids: Sequence[str]) -> dict[str, ResultRow]:
        """The signal inputs (``matcher.profiles``) of the stored results of ``ids``, by id,
        from their stored profile columns (computed for rows that predate them)."""
        validate = ResearchResult.__pydantic_validator__.validate_json
        rows = self._select("results", "id, json, terms, compact", ids)
        return {record_id: result_row(validate(raw), (terms, compact_text))
                for record_id, raw, terms, compact_text in rows}

    def needs(self, ids: Sequence[str]) -> dict[str, EnterpriseNeed]:
        return self.get("needs", ids)  # type: ignore[return-value]

    def count(self, kind: Kind) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {kind}").fetchone()[0])

    def iter_all(self, kind: Kind, batch: int = 1000) -> Iterator[BaseModel]:
        model = _MODELS[kind]
        with self._lock:
            rows = self._db.execute(f"SELECT json FROM {kind} ORDER BY rowid").fetchall()
        for (raw,) in rows:
            yield model.model_validate_json(raw)

    def copy_to(self, path: Path) -> None:
        """Write a consistent copy of the whole store to ``path`` (SQLite online backup)."""
        target = sqlite3.connect(str(path))
        with self._lock:
            self._db.backup(target)
        target.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
