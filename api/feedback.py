"""Feedback store: enterprises' verdicts on suggested results, in SQLite beside the record store.

Every verdict is kept (an audit trail); statistics and the qrels export use the latest
verdict per (need, result) pair, so a changed mind counts once.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from api.schemas import LABEL_VALUES, FeedbackCreate, FeedbackPublic, FeedbackStats, RateStats

QRELS_HEADER = "query-id\tcorpus-id\tscore"
NO_TIER = "none"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    need_id TEXT NOT NULL,
    result_id TEXT NOT NULL,
    label TEXT NOT NULL,
    score INTEGER NOT NULL,
    reason TEXT,
    user TEXT,
    tier TEXT,
    rank INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_pair ON feedback (need_id, result_id, id);
"""
# The latest verdict of each (need, result) pair.
_LATEST = """
SELECT f.* FROM feedback f
JOIN (SELECT MAX(id) AS id FROM feedback GROUP BY need_id, result_id) last ON f.id = last.id
ORDER BY f.need_id, f.result_id
"""


def iso_week(timestamp: str) -> str:
    """``2025-02-14T09:30:00Z`` → ``2025-W07`` (ISO 8601 week)."""
    year, week, _ = dt.datetime.fromisoformat(timestamp).isocalendar()
    return f"{year}-W{week:02d}"


def rate_stats(labels: Iterable[str]) -> RateStats:
    """Counts per label and the strongly-related rates of one group of verdicts."""
    counts = {label: 0 for label in LABEL_VALUES}
    for label in labels:
        counts[label] += 1
    total = sum(counts.values())
    return RateStats(
        count=total,
        **counts,
        strongly_related_rate=(counts["strong"] + counts["related"]) / total if total else None,
        strong_rate=counts["strong"] / total if total else None,
    )


class FeedbackStore:
    """Verdicts in one SQLite file; safe to use from the server's worker threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def add(self, item: FeedbackCreate, now: dt.datetime | None = None) -> FeedbackPublic:
        """Store one verdict and return it with its id and time."""
        created = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO feedback (need_id, result_id, label, score, reason, user, tier, rank, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.need_id, item.result_id, item.label, LABEL_VALUES[item.label], item.reason,
                 item.user, item.tier, item.rank, created),
            )
        return FeedbackPublic(**item.model_dump(), id=int(cursor.lastrowid or 0), created_at=created)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def _latest(self) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(_LATEST).fetchall()

    def stats(self) -> FeedbackStats:
        """Strongly-related rate overall, by the tier shown, and by ISO week of the verdict."""
        rows = self._latest()
        by_tier: dict[str, list[str]] = {}
        by_week: dict[str, list[str]] = {}
        for row in rows:
            by_tier.setdefault(row["tier"] or NO_TIER, []).append(row["label"])
            by_week.setdefault(iso_week(row["created_at"]), []).append(row["label"])
        return FeedbackStats(
            overall=rate_stats(row["label"] for row in rows),
            by_tier={tier: rate_stats(labels) for tier, labels in sorted(by_tier.items())},
            by_week={week: rate_stats(labels) for week, labels in sorted(by_week.items())},
        )

    def qrels_tsv(self) -> str:
        """The latest verdicts as BEIR qrels (``query-id  corpus-id  score``), for ``techmatch eval``.

        Scores follow the CCF expert scale: strong 3, related 2, weak 1, unrelated 0.
        """
        lines = [QRELS_HEADER]
        lines += [f"{row['need_id']}\t{row['result_id']}\t{row['score']}" for row in self._latest()]
        return "\n".join(lines) + "\n"

    def export_qrels(self, path: str | Path) -> int:
        """Write :meth:`qrels_tsv` to ``path``; return the number of judged pairs."""
        text = self.qrels_tsv()
        Path(path).write_text(text, encoding="utf-8")
        return text.count("\n") - 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
