"""Loaders for the real benchmark texts in ``/work/shared/data/bench``.

Benchmarks never fall back to synthetic text: when the shared data is absent they
raise :class:`BenchDataMissing`, which ``python -m bench`` turns into a clear skip.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BENCH_DIR = Path("/work/shared/data/bench")


class BenchDataMissing(RuntimeError):
    """The shared benchmark data is not on this machine."""


def bench_dir() -> Path:
    """The benchmark data directory (``TECHMATCH_BENCH_DATA`` overrides the default).

    Raises:
        BenchDataMissing: If the directory does not exist.
    """
    path = Path(os.environ.get("TECHMATCH_BENCH_DATA", DEFAULT_BENCH_DIR))
    if not path.is_dir():
        raise BenchDataMissing(
            f"benchmark data directory {path} not found; these benchmarks need the real "
            "shared data (set TECHMATCH_BENCH_DATA to its bench/ folder)"
        )
    return path


def _require(path: Path) -> Path:
    if not path.is_file():
        raise BenchDataMissing(f"benchmark data file {path} not found")
    return path


def _read_jsonl(path: Path) -> Iterator[dict]:
    with _require(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True)
class BenchRecord:
    """One BEIR-style record: ``_id``, ``title``, ``text``."""

    id: str
    title: str
    text: str


def _records(path: Path) -> list[BenchRecord]:
    return [
        BenchRecord(id=row["_id"], title=row.get("title") or "", text=row.get("text") or "")
        for row in _read_jsonl(path)
    ]


def join_title_text(title: str, text: str) -> str:
    """``title + "。" + text`` (the rendering the reference figures use); title alone if no text."""
    return f"{title}。{text}" if text else title


def join_title_words(title: str) -> str:
    """CCF result titles are jieba words separated by spaces: join them without spaces."""
    return "".join(title.split())


def csl_papers() -> list[BenchRecord]:
    """The 4,758 CSL papers (title, abstract)."""
    return _records(bench_dir() / "csl_papers.jsonl")


def csl_texts(limit: int | None = None) -> list[str]:
    """CSL ``title + "。" + abstract`` in file order, the first ``limit`` of them."""
    papers = csl_papers()
    if limit is not None:
        papers = papers[:limit]
    return [join_title_text(p.title, p.text) for p in papers]


def ccf_results() -> list[BenchRecord]:
    """The 12,252 CCF research results (lossy: title words only)."""
    return _records(bench_dir() / "ccf_titles" / "corpus.jsonl")


def ccf_result_texts() -> list[str]:
    """CCF result texts as the reference figures render them (joined title words; text if any)."""
    return [join_title_text(join_title_words(r.title), r.text) for r in ccf_results()]


def ccf_needs() -> list[BenchRecord]:
    """The 371 real enterprise needs (``needs_ccf.jsonl``)."""
    return _records(bench_dir() / "needs_ccf.jsonl")


def ccf_queries() -> list[BenchRecord]:
    """The 239 labelled needs (``ccf_titles/queries.jsonl``)."""
    return _records(bench_dir() / "ccf_titles" / "queries.jsonl")


def ccf_qrels(split: str) -> dict[str, dict[str, int]]:
    """Expert labels of one split as ``{need_id: {result_id: label}}``.

    Raises:
        ValueError: If ``split`` is not train, dev or test.
    """
    if split not in {"train", "dev", "test"}:
        raise ValueError(f"split must be train, dev or test, got {split!r}")
    qrels: dict[str, dict[str, int]] = {}
    with _require(bench_dir() / "ccf_titles" / "qrels" / f"{split}.tsv").open(
        encoding="utf-8"
    ) as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)  # header: query-id corpus-id score
        for query_id, corpus_id, score in reader:
            qrels.setdefault(query_id, {})[corpus_id] = int(score)
    return qrels
