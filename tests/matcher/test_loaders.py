from __future__ import annotations

import json
from pathlib import Path

import pytest

from matcher.loaders import RecordError, load_needs, load_results, write_rejects


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"id": "r1", "title": "锂电池正极材料", "description": "包覆改性"}, ensure_ascii=False)


@pytest.mark.parametrize(
    ("bad_line", "field", "fragment"),
    [
        ('{"id": "r2", "title": "x"', "<json>", "invalid JSON"),
        ('["not", "an", "object"]', "<json>", "JSON object"),
        ('{"title": "无编号"}', "id", "Field required"),
        ('{"id": "r2"}', "title", "Field required"),
        ('{"id": "r2", "title": ""}', "title", "at least 1 character"),
        ('{"id": "r2", "title": "x", "keywords": 5}', "keywords", "valid list"),
        ('{"id": "r2", "title": "x", "metadata": [1]}', "metadata", "dictionary"),
        ('{"id": "r2", "title": "x", "colour": "red"}', "colour", "Extra inputs"),
        (GOOD, "id", "duplicate id 'r1' (first seen on line 1)"),
    ],
)
def test_bad_jsonl_row_names_file_line_and_field(tmp_path: Path, bad_line: str, field: str, fragment: str) -> None:
    path = _write(tmp_path / "results.jsonl", [GOOD, bad_line])
    with pytest.raises(RecordError) as info:
        load_results(path)
    reject = info.value.reject
    assert (reject.file, reject.line, reject.field) == (str(path), 2, field)
    assert fragment in reject.message
    assert str(path) in str(info.value) and "line 2" in str(info.value) and field in str(info.value)


def test_report_mode_keeps_good_rows_and_every_reject(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "results.jsonl",
        [GOOD, "{broken", '{"id": "r3", "title": "陶瓷"}', '{"id": "r1", "title": "dup"}', ""],
    )
    loaded = load_results(path, on_error="report")
    assert [r.id for r in loaded.records] == ["r1", "r3"]
    assert [(r.line, r.field) for r in loaded.rejects] == [(2, "<json>"), (4, "id")]
    out = tmp_path / "rejects.jsonl"
    write_rejects(loaded.rejects, out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["raw"] for row in rows] == ["{broken", '{"id": "r1", "title": "dup"}']
    assert all(row["message"] for row in rows)


def test_beir_layout_maps_to_record_fields(tmp_path: Path) -> None:
    row = {"_id": "csl-1", "title": "水稻 育种", "text": "摘要", "metadata": {
        "keywords": ["水稻", "育种"], "discipline": "作物学", "category": "农学"}}
    path = _write(tmp_path / "corpus.jsonl", [json.dumps(row, ensure_ascii=False)])
    (result,) = load_results(path).records
    assert (result.id, result.description, result.field) == ("csl-1", "摘要", "作物学")
    assert result.keywords == ["水稻", "育种"]
    assert result.metadata == {"category": "农学"}


def test_csv_rows_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "needs.csv"
    path.write_text(
        "id,title,description,keywords,industry\n"
        "n1,降低磺化酸雾,磺化线酸雾治理,酸雾;磺化,化工\n"
        "n2,,缺标题,,化工\n"
        '"n3","多行描述","第一行\n第二行",,\n',
        encoding="utf-8",
    )
    loaded = load_needs(path, on_error="report")
    assert [n.id for n in loaded.records] == ["n1", "n3"]
    assert loaded.records[0].keywords == ["酸雾", "磺化"]
    assert loaded.records[1].description == "第一行\n第二行"
    (reject,) = loaded.rejects
    assert (reject.line, reject.field) == (3, "title")


def test_csv_row_with_too_many_cells(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("id,title\nr1,a,extra\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"line 2, field '<csv>'"):
        load_results(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_results(tmp_path / "nope.jsonl")


def test_demo_data_loads_cleanly() -> None:
    demo = Path(__file__).resolve().parents[2] / "data" / "demo"
    assert len(load_results(demo / "results.jsonl").records) == 4758
    assert len(load_needs(demo / "needs.jsonl").records) == 10


def test_parquet_rows_go_through_the_same_validation(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "results.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2", "p1"], "title": ["锂电池", None, "重复"]}), path)
    loaded = load_results(path, on_error="report")
    assert [r.id for r in loaded.records] == ["p1"]
    assert [(r.line, r.field) for r in loaded.rejects] == [(2, "title"), (3, "id")]
