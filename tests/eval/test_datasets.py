"""BEIR readers and writers: round trips and errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import (
    DatasetError,
    label_scale,
    load_corpus,
    load_qrels,
    load_queries,
    load_run,
    ranking_from_scores,
    sha256_file,
    write_qrels,
    write_run,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bench" / "ccf_titles"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_corpus_reads_fields_and_numeric_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "corpus.jsonl",
        '{"_id": "r1", "title": "氟化锂 制备 方法", "text": "", '
        '"metadata": {"discipline": "化学"}}\n'
        "\n"
        '{"_id": 7, "title": "t"}\n',
    )
    corpus = load_corpus(path)
    assert list(corpus) == ["r1", "7"]
    assert corpus["r1"].title == "氟化锂 制备 方法"
    assert corpus["r1"].metadata == {"discipline": "化学"}
    assert corpus["7"].text == "" and corpus["7"].metadata == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "a"}\n{"_id": "a"}\n', r"corpus.jsonl:2: field '_id' 'a' duplicates line 1"),
        ('{"title": "x"}\n', r"corpus.jsonl:1: field '_id' must be a non-empty string"),
        ('{"_id": "a", "title": 3}\n', r"corpus.jsonl:1: field 'title' must be a string"),
        ('{"_id": "a", "metadata": []}\n', r"corpus.jsonl:1: field 'metadata' must be an object"),
        ('{"_id": "a"}\n{oops\n', r"corpus.jsonl:2: not valid JSON"),
        ('["a"]\n', r"corpus.jsonl:1: expected a JSON object"),
    ],
)
def test_load_corpus_errors(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "corpus.jsonl", content)
    with pytest.raises(DatasetError, match=message):
        load_corpus(path)


def test_qrels_round_trip_and_order(tmp_path: Path) -> None:
    qrels = {"q2": {"d9": 0, "d1": 3}, "q1": {"d5": 2}}
    path = tmp_path / "qrels" / "test.tsv"
    write_qrels(qrels, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["query-id\tcorpus-id\tscore", "q1\td5\t2", "q2\td1\t3", "q2\td9\t0"]
    assert load_qrels(path) == qrels


def test_qrels_accepts_float_integers_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\nq\td\t2.0\n\nq\te\t0\n")
    assert load_qrels(path) == {"q": {"d": 2, "e": 0}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q\td\t1\n", r"q.tsv:1: header must be"),
        ("query-id corpus-id score\nq\td\t1\n", r"q.tsv:1: header must be"),
        ("query-id\tcorpus-id\tscore\nq\td\n", r"q.tsv:2: expected 3 tab-separated fields, got 2"),
        ("query-id\tcorpus-id\tscore\nq\td\thigh\n", r"q.tsv:2: field 'score' must be an integer"),
        ("query-id\tcorpus-id\tscore\nq\td\t1.5\n", r"q.tsv:2: field 'score' must be an integer"),
        ("query-id\tcorpus-id\tscore\n\td\t1\n", r"q.tsv:2: field 'query-id' is empty"),
        ("query-id\tcorpus-id\tscore\nq\t\t1\n", r"q.tsv:2: field 'corpus-id' is empty"),
        (
            "query-id\tcorpus-id\tscore\nq\td\t1\nq\te\t1\nq\td\t2\n",
            r"q.tsv:4: pair \(q, d\) duplicates line 2",
        ),
    ],
)
def test_qrels_errors(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "q.tsv", content)
    with pytest.raises(DatasetError, match=message):
        load_qrels(path)


def test_run_round_trip_and_ranking(tmp_path: Path) -> None:
    run = {"q1": {"b": 0.5, "a": 0.5, "c": 0.9}, "q0": {}}
    path = tmp_path / "run.json"
    write_run(run, path)
    assert load_run(path) == run
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert list(stored["q1"]) == ["c", "a", "b"]  # written best first
    assert ranking_from_scores(run["q1"]) == ["c", "a", "b"]  # ties by ascending id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "a run must be an object"),
        ('{"q": [1]}', "query 'q' must map to"),
        ('{"q": {"d": "high"}}', "score must be a finite number"),
        ('{"q": {"d": NaN}}', "score must be a finite number"),
        ('{"q": {"d": 1}', "run.json:1: not valid JSON"),
    ],
)
def test_run_errors(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "run.json", content)
    with pytest.raises(DatasetError, match=message):
        load_run(path)


def test_label_scale_and_sha256(tmp_path: Path) -> None:
    assert label_scale({"q": {"a": 3, "b": 1}}) == [0, 1, 2, 3]
    assert label_scale({}) == [0]
    path = _write(tmp_path / "x.txt", "abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.skipif(not SHARED.exists(), reason="shared CCF data not present")
def test_reads_the_ccf_benchmark() -> None:
    queries = load_queries(SHARED / "queries.jsonl")
    test = load_qrels(SHARED / "qrels" / "test.tsv")
    dev = load_qrels(SHARED / "qrels" / "dev.tsv")
    assert len(queries) == 239
    assert (len(test), sum(map(len, test.values()))) == (45, 2350)
    assert (len(dev), sum(map(len, dev.values()))) == (51, 2838)
    assert set(test) <= set(queries) and not set(test) & set(dev)
    assert label_scale(test) == [0, 1, 2, 3]
