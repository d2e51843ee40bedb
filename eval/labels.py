"""The labelling loop: export candidates to grade in a spreadsheet, import the grades as qrels.

The pool is the union of the top ``k`` of several ranking configurations
(TREC-style pooling), so later comparisons of those configurations do not
favour the one that chose what was graded. It is written as UTF-8 with a
byte-order mark so that Excel shows Chinese correctly; on import, files a
spreadsheet re-saved as GB18030 (Excel's "CSV" on Chinese Windows) or with
``;`` or tab separators are read too.

Import collects every problem (unknown ids, labels that are not integers or
out of range, blank labels, duplicate pairs) before failing, each with the
file, line and field, so a whole sheet can be fixed in one pass.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eval.datasets import Qrels, atomic_write_text, write_qrels
from matcher.loaders import Reject

if TYPE_CHECKING:
    from matcher.matcher import Matcher
    from matcher.records import EnterpriseNeed, ResearchResult

POOL_COLUMNS: tuple[str, ...] = (
    "query-id",
    "corpus-id",
    "rank",
    "need_title",
    "need_text",
    "result_title",
    "result_text",
    "label",
    "comment",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("query-id", "corpus-id", "label")
# Enough for a grader to decide; spreadsheets cap a cell at 32,767 characters anyway.
MAX_CELL_CHARS = 600
MAX_ISSUES_SHOWN = 50


@dataclass(frozen=True)
class PoolRow:
    """One (need, candidate result) pair to grade.

    Attributes:
        query_id: Need id.
        corpus_id: Result id.
        rank: Best rank of the result for the need over the pooled configurations.
        need_title: Need title.
        need_text: Need description, truncated.
        result_title: Result title.
        result_text: Result description, truncated.
    """

    query_id: str
    corpus_id: str
    rank: int
    need_title: str
    need_text: str
    result_title: str
    result_text: str


class LabelIssue(Reject):
    """A problem in a graded pool file: a rejected row, as :mod:`matcher.loaders` reports them.

    ``line`` is 1 for the header; ``raw`` is the row's cells joined by the file's delimiter.
    """

    def describe(self) -> str:
        """``file:line: field 'x': message``, the form editors and terminals jump to."""
        return f"{self.file}:{self.line}: field {self.field!r}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class LabelRules:
    """What a graded pool is checked against.

    Attributes:
        query_ids: Known need ids; None skips that check.
        corpus_ids: Known result ids; None skips that check.
        min_label: Smallest allowed label.
        max_label: Largest allowed label.
        skip_blank: Skip rows whose label is blank instead of reporting them.

    Raises:
        ValueError: If ``min_label`` > ``max_label``.
    """

    query_ids: Collection[str] | None
    corpus_ids: Collection[str] | None
    min_label: int = 0
    max_label: int = 3
    skip_blank: bool = False

    def __post_init__(self) -> None:
        if self.min_label > self.max_label:
            raise ValueError(f"min_label {self.min_label} is above max_label {self.max_label}")
        # Frozen: set the membership-friendly copies through object.__setattr__.
        for name in ("query_ids", "corpus_ids"):
            ids = getattr(self, name)
            if ids is not None:
                object.__setattr__(self, name, frozenset(ids))


class LabelImportError(ValueError):
    """The graded pool has problems; ``issues`` lists every one of them."""

    def __init__(self, issues: Sequence[LabelIssue]) -> None:
        shown = [issue.describe() for issue in issues[:MAX_ISSUES_SHOWN]]
        more = len(issues) - len(shown)
        suffix = f"\n… and {more} more" if more > 0 else ""
        super().__init__(f"{len(issues)} problem(s) in the labels:\n" + "\n".join(shown) + suffix)
        self.issues = list(issues)


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote.

    Attributes:
        pairs: Graded pairs written.
        queries: Needs with at least one graded pair.
        skipped_blank: Rows left ungraded and skipped.
        label_counts: ``{label: pairs}``.
    """

    pairs: int
    queries: int
    skipped_blank: int
    label_counts: dict[int, int]


def _truncate(text: str, limit: int = MAX_CELL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pool_rows(
    needs: Sequence[EnterpriseNeed],
    rankings: Iterable[Sequence[Sequence[str]]],
    results: Mapping[str, ResearchResult],
    *,
    exclude: Qrels | None = None,
) -> list[PoolRow]:
    """Merge several configurations' rankings into one pool of pairs to grade.

    Args:
        needs: The needs, in output order.
        rankings: One entry per configuration: per need (same order as
            ``needs``), the result ids best first.
        results: Result records by id, for titles and texts.
        exclude: Pairs already graded, left out of the pool.

    Returns:
        Rows grouped by need; within a need by best rank, then id.
    """
    best_rank: list[dict[str, int]] = [{} for _ in needs]
    for per_config in rankings:
        for position, ranked_ids in enumerate(per_config):
            for rank, result_id in enumerate(ranked_ids, start=1):
                seen = best_rank[position]
                seen[result_id] = min(rank, seen.get(result_id, rank))
    exclude = exclude or {}
    rows = []
    for need, ranks in zip(needs, best_rank, strict=True):
        done = exclude.get(need.id, {})
        for result_id, rank in sorted(ranks.items(), key=lambda item: (item[1], item[0])):
            if result_id in done:
                continue
            result = results.get(result_id)
            rows.append(
                PoolRow(
                    query_id=need.id,
                    corpus_id=result_id,
                    rank=rank,
                    need_title=need.title,
                    need_text=_truncate(need.description),
                    result_title=result.title if result else "",
                    result_text=_truncate(result.description) if result else "",
                )
            )
    return rows


def build_pool(
    matcher: Matcher,
    needs: Sequence[EnterpriseNeed],
    *,
    top_k: int,
    configs: Sequence[str],
    exclude: Qrels | None = None,
) -> list[PoolRow]:
    """Rank every need with each configuration and pool the top ``k`` results.

    Args:
        matcher: A loaded Matcher.
        needs: The needs to find candidates for.
        top_k: Results per need and configuration.
        configs: Matcher configuration names to pool.
        exclude: Pairs already graded, left out.

    Returns:
        The pool rows.

    Raises:
        ValueError: If ``top_k`` < 1 or a configuration is unknown.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    unknown = [name for name in configs if name not in matcher.configs]
    if unknown:
        raise ValueError(
            f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(matcher.configs)}"
        )
    results: dict[str, ResearchResult] = {}
    rankings = []
    for name in configs:
        matches = matcher.match_batch(needs, top_k=top_k, config=name)
        per_need = []
        for need_matches in matches:
            ordered = sorted(need_matches, key=lambda match: match.rank)
            per_need.append([match.result_id for match in ordered])
            for match in ordered:
                if match.result is not None:
                    results[match.result_id] = match.result
        rankings.append(per_need)
    return pool_rows(needs, rankings, results, exclude=exclude)


def write_pool(rows: Iterable[PoolRow], path: str | Path) -> int:
    """Write the pool as CSV (UTF-8 with BOM) with an empty ``label`` column to fill in.

    Args:
        rows: Pool rows.
        path: Target file.

    Returns:
        Rows written.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(POOL_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(
            [
                row.query_id,
                row.corpus_id,
                row.rank,
                row.need_title,
                row.need_text,
                row.result_title,
                row.result_text,
                "",
                "",
            ]
        )
        count += 1
    # The BOM makes Excel read the file as UTF-8 instead of the local code page.
    atomic_write_text(Path(path), "\ufeff" + buffer.getvalue())
    return count


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="replace")


def _delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda delimiter: counts[delimiter])


def _label(raw_label: str) -> int | None:
    # Spreadsheets may write 2 as "2.0"; anything that is not a whole number is not a label.
    try:
        value = float(raw_label)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _row_problems(
    cells: Mapping[str, str], label: int | None, rules: LabelRules
) -> list[tuple[str, str]]:
    """``(field, message)`` of every problem of one row, duplicates aside."""
    problems = []
    checks = (("query-id", rules.query_ids, "need"), ("corpus-id", rules.corpus_ids, "result"))
    for column, known, noun in checks:
        value = cells[column]
        if not value:
            problems.append((column, "empty"))
        elif known is not None and value not in known:
            problems.append((column, f"unknown {noun} id {value!r}"))
    scale = f"{rules.min_label}–{rules.max_label}"
    raw_label = cells["label"]
    if not raw_label:
        if not rules.skip_blank:
            problems.append(("label", f"blank; grade it {scale} or use --skip-blank"))
    elif label is None:
        problems.append(("label", f"{raw_label!r} is not an integer {scale}"))
    elif not rules.min_label <= label <= rules.max_label:
        problems.append(("label", f"{label} is out of range {scale}"))
    return problems


def read_labels(path: str | Path, rules: LabelRules) -> tuple[Qrels, int]:
    """Read and validate a graded pool.

    Args:
        path: The graded CSV.
        rules: Known ids, the label scale and what to do with blank labels.

    Returns:
        ``(qrels, skipped_blank_rows)``.

    Raises:
        LabelImportError: Listing every problem found.
    """
    path = Path(path)
    name = str(path)
    text = _decode(path.read_bytes())
    lines = text.splitlines()
    if not lines:
        raise LabelImportError([LabelIssue(name, 1, "header", "the file is empty", "")])
    delimiter = _delimiter(lines[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [column.strip() for column in next(reader)]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        message = f"column missing; the header needs {', '.join(REQUIRED_COLUMNS)}"
        raise LabelImportError(
            [LabelIssue(name, 1, column, message, lines[0]) for column in missing]
        )
    position = {column: header.index(column) for column in REQUIRED_COLUMNS}
    issues: list[LabelIssue] = []
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    skipped = 0
    line = reader.line_num + 1
    for row in reader:
        # line_num counts physical lines, so quoted multi-line cells keep numbers right.
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        cells = {column: (row[i].strip() if i < len(row) else "") for column, i in position.items()}
        query_id, corpus_id = cells["query-id"], cells["corpus-id"]
        label = _label(cells["label"])
        problems = _row_problems(cells, label, rules)
        if not cells["label"] and rules.skip_blank:
            # Skipped, yet a bad id on the row is still reported: it is worth fixing now.
            skipped += 1
        elif query_id and corpus_id:
            key = (query_id, corpus_id)
            if key in first_line:
                duplicate = f"pair ({query_id}, {corpus_id}) duplicates line {first_line[key]}"
                problems.append(("corpus-id", duplicate))
            else:
                first_line[key] = start
        raw = delimiter.join(row)
        issues.extend(LabelIssue(name, start, field, message, raw) for field, message in problems)
        if not problems and label is not None:
            qrels.setdefault(query_id, {})[corpus_id] = label
    if issues:
        raise LabelImportError(issues)
    return qrels, skipped


def import_labels(pool_path: str | Path, out_path: str | Path, rules: LabelRules) -> ImportSummary:
    """Validate a graded pool and write it as BEIR qrels; nothing is written if there is a problem.

    Args:
        pool_path: The graded CSV.
        out_path: The qrels TSV to write.
        rules: Known ids, the label scale and what to do with blank labels.

    Returns:
        A summary of what was written.

    Raises:
        LabelImportError: Listing every problem found.
    """
    qrels, skipped = read_labels(pool_path, rules)
    write_qrels(qrels, out_path)
    counts: dict[int, int] = {label: 0 for label in range(rules.min_label, rules.max_label + 1)}
    for labels in qrels.values():
        for label in labels.values():
            counts[label] += 1
    return ImportSummary(
        pairs=sum(counts.values()), queries=len(qrels), skipped_blank=skipped, label_counts=counts
    )
