"""Readers and writers of the BEIR layout: corpus/queries JSONL, qrels TSV, run JSON.

The formats are the contract between the batch job and the evaluator
(BEIR ``evaluation.py``): corpus and queries are JSON lines with ``_id``,
``title``, ``text`` and optional ``metadata``; qrels are a TSV with the
header ``query-id  corpus-id  score`` and integer graded labels; runs are
``{query_id: {doc_id: score}}``. Errors name the file, the line and the field.
"""

from __future__ import annotations

from indexes.persistence import sha256_file  # noqa: F401 - part of this module's API

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QRELS_HEADER: tuple[str, str, str] = ("query-id", "corpus-id", "score")

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


class DatasetError(ValueError):
    """A data file does not follow the BEIR layout; the message says where and why."""


@dataclass(frozen=True)
class BeirDocument:
    """One corpus or query record of a BEIR JSONL file.

    Attributes:
        id: The ``_id``.
        title: Title, possibly empty.
        text: Body text, possibly empty.
        metadata: The ``metadata`` object, empty if absent.
    """

    id: str
    title: str = ""
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise DatasetError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield line_number, record


def _string_field(record: Mapping[str, Any], name: str, where: str) -> str:
    value = record.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def load_documents(path: str | Path) -> dict[str, BeirDocument]:
    """Read a BEIR corpus or queries JSONL file.

    Args:
        path: The file.

    Returns:
        ``{_id: BeirDocument}`` in file order.

    Raises:
        DatasetError: On invalid JSON, a missing or empty ``_id``, a field of
            the wrong type, or a duplicate ``_id``.
    """
    path = Path(path)
    documents: dict[str, BeirDocument] = {}
    first_line: dict[str, int] = {}
    for line_number, record in _read_json_lines(path):
        where = f"{path}:{line_number}"
        raw_id = record.get("_id")
        # BEIR datasets sometimes store numeric ids; qrels hold them as text.
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
            raise DatasetError(f"{where}: field '_id' must be a non-empty string, got {raw_id!r}")
        doc_id = str(raw_id)
        if doc_id in documents:
            raise DatasetError(
                f"{where}: field '_id' {doc_id!r} duplicates line {first_line[doc_id]}"
            )
        metadata = record.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise DatasetError(
                f"{where}: field 'metadata' must be an object, got {type(metadata).__name__}"
            )
        documents[doc_id] = BeirDocument(
            id=doc_id,
            title=_string_field(record, "title", where),
            text=_string_field(record, "text", where),
            metadata=metadata,
        )
        first_line[doc_id] = line_number
    return documents


def load_corpus(path: str | Path) -> dict[str, BeirDocument]:
    """Read a BEIR ``corpus.jsonl``. See :func:`load_documents`."""
    return load_documents(path)


def load_queries(path: str | Path) -> dict[str, BeirDocument]:
    """Read a BEIR ``queries.jsonl``. See :func:`load_documents`."""
    return load_documents(path)


def parse_label(raw: str, where: str) -> int:
    """Parse an integer graded label; ``"2"`` and ``"2.0"`` are accepted.

    Args:
        raw: The text of the label.
        where: ``file:line`` for the error message.

    Returns:
        The label.

    Raises:
        DatasetError: If the text is not an integer.
    """
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number) and number.is_integer():
        return int(number)
    raise DatasetError(f"{where}: field 'score' must be an integer label, got {raw!r}")


def load_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV with the header ``query-id  corpus-id  score``.

    Args:
        path: The file.

    Returns:
        ``{query_id: {corpus_id: label}}``.

    Raises:
        DatasetError: On a wrong header, a row without three fields, an empty
            id, a non-integer label, or a duplicate (query, corpus) pair.
    """
    path = Path(path)
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    with path.open(encoding="utf-8-sig") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        if tuple(part.strip() for part in header) != QRELS_HEADER:
            raise DatasetError(
                f"{path}:1: header must be {chr(9).join(QRELS_HEADER)!r} (tab-separated), "
                f"got {chr(9).join(header)!r}"
            )
        for line_number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise DatasetError(f"{where}: expected 3 tab-separated fields, got {len(fields)}")
            query_id, corpus_id, raw_label = (value.strip() for value in fields)
            if not query_id:
                raise DatasetError(f"{where}: field 'query-id' is empty")
            if not corpus_id:
                raise DatasetError(f"{where}: field 'corpus-id' is empty")
            label = parse_label(raw_label, where)
            key = (query_id, corpus_id)
            if key in first_line:
                raise DatasetError(
                    f"{where}: pair ({query_id}, {corpus_id}) duplicates line {first_line[key]}"
                )
            first_line[key] = line_number
            qrels.setdefault(query_id, {})[corpus_id] = label
    return qrels


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A crash then leaves either the old file or the new one, never half a file.

    Args:
        path: Target file; its folder is created if needed.
        text: UTF-8 content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        # mkstemp creates the file private (0600); reports and qrels are meant to be shared.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> None:
    """Write qrels as a BEIR TSV with header, sorted by query then corpus id.

    Args:
        qrels: ``{query_id: {corpus_id: label}}``.
        path: Target file (written atomically).
    """
    lines = ["\t".join(QRELS_HEADER)]
    for query_id in sorted(qrels):
        for corpus_id in sorted(qrels[query_id]):
            lines.append(f"{query_id}\t{corpus_id}\t{int(qrels[query_id][corpus_id])}")
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def load_run(path: str | Path) -> Run:
    """Read a BEIR run file ``{query_id: {doc_id: score}}``.

    Args:
        path: The JSON file.

    Returns:
        The run with string ids and float scores.

    Raises:
        DatasetError: If the JSON is invalid or not of that shape, or a
            score is not a finite number.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a run must be an object {{query_id: {{doc_id: score}}}}")
    run: Run = {}
    for query_id, scores in data.items():
        if not isinstance(scores, dict):
            raise DatasetError(
                f"{path}: query {query_id!r} must map to {{doc_id: score}}, "
                f"got {type(scores).__name__}"
            )
        converted: dict[str, float] = {}
        for doc_id, score in scores.items():
            if (
                isinstance(score, bool)
                or not isinstance(score, (int, float))
                or not math.isfinite(score)
            ):
                raise DatasetError(
                    f"{path}: query {query_id!r}, doc {doc_id!r}: "
                    f"score must be a finite number, got {score!r}"
                )
            converted[str(doc_id)] = float(score)
        run[str(query_id)] = converted
    return run


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path) -> None:
    """Write a BEIR run file (each query's docs in descending score order).

    Args:
        run: ``{query_id: {doc_id: score}}``.
        path: Target file (written atomically).
    """
    ordered = {
        query_id: dict(sorted(run[query_id].items(), key=lambda item: (-item[1], item[0])))
        for query_id in sorted(run)
    }
    atomic_write_text(Path(path), json.dumps(ordered, ensure_ascii=False, indent=1) + "\n")


def ranking_from_scores(scores: Mapping[str, float]) -> list[str]:
    """Order a run's docs by descending score; ties by ascending doc id.

    Args:
        scores: ``{doc_id: score}`` of one query.

    Returns:
        Doc ids, best first. The tie order is fixed so that a run file
        evaluates the same wherever it is read.
    """
    return [doc_id for doc_id, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def label_scale(qrels: Mapping[str, Mapping[str, int]]) -> list[int]:
    """Every integer label from the smallest to the largest found (at least 0).

    Args:
        qrels: Graded labels.

    Returns:
        E.g. ``[0, 1, 2, 3]`` for the CCF labels.
    """
    labels = [label for per_query in qrels.values() for label in per_query.values()]
    if not labels:
        return [0]
    return list(range(min(0, min(labels)), max(labels) + 1))

