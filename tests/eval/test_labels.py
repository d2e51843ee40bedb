"""The labelling loop: pool export, and import validation with file, line and field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from eval.datasets import load_qrels
from eval.labels import (
    POOL_COLUMNS,
    LabelImportError,
    LabelRules,
    build_pool,
    import_labels,
    pool_rows,
    read_labels,
    write_pool,
)
from matcher.loaders import Reject

HEADER = ",".join(POOL_COLUMNS)
ANY_IDS = LabelRules(query_ids=None, corpus_ids=None)


@dataclass
class _Need:
    id: str
    title: str = ""
    description: str = ""


@dataclass
class _Result:
    id: str
    title: str = ""
    description: str = ""


@dataclass
class _Match:
    result_id: str
    rank: int
    result: _Result | None = None


@dataclass
class _StubMatcher:
    """Returns fixed rankings per configuration, like Matcher.match_batch."""

    rankings: dict[str, list[list[str]]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    @property
    def configs(self) -> list[str]:
        return list(self.rankings)

    def match_batch(
        self, needs: Sequence[_Need], top_k: int = 10, config: str = "default"
    ) -> list[list[_Match]]:
        self.calls.append((config, top_k))
        return [
            [
                _Match(result_id=r, rank=i, result=_Result(r, f"title {r}"))
                for i, r in enumerate(ids[:top_k], 1)
            ]
            for ids in self.rankings[config]
        ]


def _graded(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "pool.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _row(query: str, corpus: str, label: str) -> str:
    return f"{query},{corpus},1,need,,result,,{label},"


def test_pool_merges_configurations_by_best_rank_and_excludes_graded() -> None:
    needs = [_Need("n1", "需求一", "描述"), _Need("n2", "需求二")]
    dense = [["a", "b", "c"], ["x"]]
    lexical = [["c", "d"], ["x", "y"]]
    results = {key: _Result(key, f"成果 {key}") for key in "abcdxy"}
    rows = pool_rows(needs, [dense, lexical], results, exclude={"n1": {"b": 1}})
    assert [(r.query_id, r.corpus_id, r.rank) for r in rows] == [
        ("n1", "a", 1),
        ("n1", "c", 1),
        ("n1", "d", 2),
        ("n2", "x", 1),
        ("n2", "y", 2),
    ]
    assert rows[0].result_title == "成果 a" and rows[0].need_text == "描述"


def test_build_pool_pools_each_configuration() -> None:
    matcher = _StubMatcher({"dense": [["a", "b"]], "lexical": [["b", "c"]]})
    rows = build_pool(matcher, [_Need("n1")], top_k=1, configs=["dense", "lexical"])  # type: ignore[arg-type]
    assert [(r.corpus_id, r.rank, r.result_title) for r in rows] == [
        ("a", 1, "title a"),
        ("b", 1, "title b"),
    ]
    assert matcher.calls == [("dense", 1), ("lexical", 1)]
    with pytest.raises(ValueError, match="unknown configuration.*known: dense, lexical"):
        build_pool(matcher, [_Need("n1")], top_k=1, configs=["bogus"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        build_pool(matcher, [_Need("n1")], top_k=0, configs=["dense"])  # type: ignore[arg-type]


def test_write_pool_then_import_round_trip(tmp_path: Path) -> None:
    rows = pool_rows(
        [_Need("n1", "标题, with comma", "多行\n描述")],
        [[["r1", "r2"]]],
        {"r1": _Result("r1", "成果"), "r2": _Result("r2", 'quote "x"')},
    )
    pool = tmp_path / "pool.csv"
    assert write_pool(rows, pool) == 2
    raw = pool.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM for Excel
    # A grader fills in the label column.
    text = raw.decode("utf-8-sig").splitlines()
    assert len(text) == 3  # whitespace in texts is collapsed: one line per pair
    assert "多行 描述" in text[1]
    graded = [text[0], _fill_label(text[1], "3"), _fill_label(text[2], "0")]
    pool.write_text("\n".join(graded) + "\n", encoding="utf-8-sig")
    out = tmp_path / "qrels.tsv"
    summary = import_labels(pool, out, LabelRules(query_ids={"n1"}, corpus_ids={"r1", "r2"}))
    assert load_qrels(out) == {"n1": {"r1": 3, "r2": 0}}
    assert (summary.pairs, summary.queries, summary.label_counts[3]) == (2, 1, 1)


def _fill_label(line: str, label: str) -> str:
    # The last two columns are label and comment, both empty.
    assert line.endswith(",,")
    return line[:-2] + f",{label},"


def test_import_reports_every_problem_with_line_and_field(tmp_path: Path) -> None:
    path = _graded(
        tmp_path,
        [
            _row("n1", "r1", "2"),  # line 2 fine
            _row("nX", "r2", "1"),  # line 3 unknown need
            _row("n1", "rX", "1"),  # line 4 unknown result
            _row("n1", "r2", "5"),  # line 5 out of range
            _row("n1", "r3", "high"),  # line 6 not an integer
            _row("n1", "r1", "2"),  # line 7 duplicate of line 2
            _row("n1", "r4", ""),  # line 8 blank
        ],
    )
    out = tmp_path / "qrels.tsv"
    with pytest.raises(LabelImportError) as caught:
        import_labels(path, out, LabelRules(query_ids={"n1"}, corpus_ids={"r1", "r2", "r3", "r4"}))
    described = [issue.describe() for issue in caught.value.issues]
    name = str(path)
    assert described == [
        f"{name}:3: field 'query-id': unknown need id 'nX'",
        f"{name}:4: field 'corpus-id': unknown result id 'rX'",
        f"{name}:5: field 'label': 5 is out of range 0–3",
        f"{name}:6: field 'label': 'high' is not an integer 0–3",
        f"{name}:7: field 'corpus-id': pair (n1, r1) duplicates line 2",
        f"{name}:8: field 'label': blank; grade it 0–3 or use --skip-blank",
    ]
    assert "6 problem(s)" in str(caught.value)
    assert not out.exists()  # nothing written on error


def test_line_numbers_survive_multiline_cells(tmp_path: Path) -> None:
    path = _graded(
        tmp_path,
        ['n1,r1,1,"two\nlines",,result,,2,', _row("n1", "r2", "9")],
    )
    with pytest.raises(LabelImportError) as caught:
        read_labels(path, ANY_IDS)
    assert [issue.line for issue in caught.value.issues] == [4]


def test_skip_blank_labels_and_float_labels(tmp_path: Path) -> None:
    path = _graded(tmp_path, [_row("n1", "r1", "2.0"), _row("n1", "r2", " "), ""])
    qrels, skipped = read_labels(path, LabelRules(query_ids=None, corpus_ids=None, skip_blank=True))
    assert qrels == {"n1": {"r1": 2}} and skipped == 1


def test_custom_label_scale(tmp_path: Path) -> None:
    path = _graded(tmp_path, [_row("n1", "r1", "4")])
    qrels, _ = read_labels(
        path, LabelRules(query_ids=None, corpus_ids=None, min_label=0, max_label=4)
    )
    assert qrels == {"n1": {"r1": 4}}
    with pytest.raises(ValueError, match="above max_label"):
        read_labels(path, LabelRules(query_ids=None, corpus_ids=None, min_label=3, max_label=1))


def test_missing_columns(tmp_path: Path) -> None:
    path = _graded(tmp_path, ["n1,r1"], header="query-id,corpus-id")
    with pytest.raises(LabelImportError, match=r"pool.csv:1: field 'label': column missing"):
        read_labels(path, ANY_IDS)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(LabelImportError, match="empty"):
        read_labels(empty, ANY_IDS)


def test_spreadsheet_re_saved_as_gb18030_with_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "pool.csv"
    content = "query-id;corpus-id;need_title;label\nn1;r1;高活性氟化锂;3\n"
    path.write_bytes(content.encode("gb18030"))
    qrels, _ = read_labels(path, LabelRules(query_ids={"n1"}, corpus_ids={"r1"}))
    assert qrels == {"n1": {"r1": 3}}


def test_issues_are_loader_rejects_with_the_raw_row(tmp_path: Path) -> None:
    path = _graded(tmp_path, [_row("n1", "r1", "9")])
    with pytest.raises(LabelImportError) as caught:
        read_labels(path, ANY_IDS)
    (issue,) = caught.value.issues
    assert isinstance(issue, Reject)  # write_rejects can keep them like loader rejects
    assert issue.raw.startswith("n1,r1,") and issue.raw.endswith(",9,")


def test_skipped_blank_row_still_reports_an_unknown_id(tmp_path: Path) -> None:
    path = _graded(tmp_path, [_row("nX", "r1", ""), _row("n1", "r1", "1")])
    rules = LabelRules(query_ids={"n1"}, corpus_ids={"r1"}, skip_blank=True)
    with pytest.raises(LabelImportError) as caught:
        read_labels(path, rules)
    assert [(issue.line, issue.field) for issue in caught.value.issues] == [(2, "query-id")]
