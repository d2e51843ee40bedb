from __future__ import annotations

from pathlib import Path

import pytest

from indexes.persistence import IndexMismatchError
from matcher import EnterpriseNeed, Matcher, MatchFilters, ResearchResult
from models.fake import FakeEncoder

RESULTS = [
    ResearchResult(id="battery", title="锂离子电池正极材料包覆改性", field="新能源", region="河南",
                   maturity="中试", transfer_modes=["转让", "许可"]),
    ResearchResult(id="anode", title="锂电池硅碳负极材料", field="新能源", region="江苏", maturity="实验室"),
    ResearchResult(id="dye", title="印染废水高级氧化深度处理", field="环保", region="浙江", transfer_modes=["合作开发"]),
    ResearchResult(id="acid", title="磺化生产线酸雾吸收治理技术", field="化工", region="河南"),
    ResearchResult(id="rice", title="水稻抗病育种", field="农业"),
]
NEED = EnterpriseNeed(id="n1", title="锂离子电池正极材料", description="需要正极材料包覆改性技术")


@pytest.fixture
def matcher(fake_encoder: FakeEncoder) -> Matcher:
    needs = [NEED, EnterpriseNeed(id="n2", title="磺化酸雾治理", description="降低磺化线的酸雾排放")]
    return Matcher.build(RESULTS, needs, encoder=fake_encoder)


def test_ranking_puts_the_matching_result_first(matcher: Matcher) -> None:
    (matches,) = matcher.match_batch([NEED], top_k=3)
    assert [m.rank for m in matches] == [1, 2, 3]
    assert matches[0].result_id == "battery"
    assert matches[1].result_id == "anode"
    assert matches[0].score >= matches[1].score >= matches[2].score
    assert matches[0].result is not None and matches[0].result.title.startswith("锂离子")
    assert matches[0].lexical > 0 and matches[0].dense > matches[1].dense


@pytest.mark.parametrize("config", ["dense", "lexical", "hybrid", "default"])
def test_every_config_ranks(matcher: Matcher, config: str) -> None:
    (matches,) = matcher.match_batch([NEED], top_k=2, config=config)
    assert matches[0].result_id == "battery"


def test_unknown_config_and_bad_top_k(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="unknown scoring config 'magic'"):
        matcher.match_batch([NEED], config="magic")
    with pytest.raises(ValueError, match="top_k of 0"):
        matcher.match_batch([NEED], top_k=0)


def test_filters(matcher: Matcher) -> None:
    (matches,) = matcher.match_batch([NEED], top_k=5, filters=MatchFilters(region="江苏"))
    assert [m.result_id for m in matches] == ["anode"]
    (matches,) = matcher.match_batch([NEED], top_k=5, filters=MatchFilters(transfer_mode="许可"))
    assert [m.result_id for m in matches] == ["battery"]


def test_rerank_ranks_exactly_the_candidates(matcher: Matcher) -> None:
    (matches,) = matcher.rerank_batch([NEED], [["rice", "dye", "anode"]])
    assert sorted(m.result_id for m in matches) == ["anode", "dye", "rice"]
    assert matches[0].result_id == "anode"


def test_delete_and_upsert_change_later_matches(matcher: Matcher) -> None:
    matcher.delete_results(["battery"])
    (matches,) = matcher.match_batch([NEED], top_k=5)
    assert "battery" not in [m.result_id for m in matches]
    matcher.upsert_results([ResearchResult(id="rice", title="锂离子电池正极材料包覆改性技术")])
    (matches,) = matcher.match_batch([NEED], top_k=1)
    assert matches[0].result_id == "rice"


def test_reverse_direction(matcher: Matcher) -> None:
    (needs,) = matcher.match_needs_batch([RESULTS[3]], top_k=2)
    assert needs[0].need_id == "n2"


def test_save_load_round_trip_and_refusal(matcher: Matcher, tmp_path: Path) -> None:
    before = matcher.match_batch([NEED], top_k=5)
    matcher.save(tmp_path / "idx")
    loaded = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    assert loaded.match_batch([NEED], top_k=5) == before
    assert loaded.stats()["results"] == 5 and loaded.stats()["needs"] == 2
    with pytest.raises(IndexMismatchError, match="techmatch index build"):
        Matcher.load(tmp_path / "idx", FakeEncoder(dimension=128))


def test_failed_save_keeps_the_old_index(matcher: Matcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matcher.save(tmp_path / "idx")
    matcher.delete_results(["battery"])

    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(matcher.store, "copy_to", boom)
    with pytest.raises(OSError, match="disk full"):
        matcher.save(tmp_path / "idx")
    loaded = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    assert loaded.stats()["results"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    names = {p.name for p in (tmp_path / "idx").iterdir()} - {"records.sqlite-wal", "records.sqlite-shm"}
    assert names == {"records.sqlite", "snapshot"}


def test_writes_after_a_snapshot_survive_a_restart(matcher: Matcher, tmp_path: Path) -> None:
    matcher.save(tmp_path / "idx")
    live = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    live.upsert_results([ResearchResult(id="new", title="锂离子电池正极材料包覆改性新工艺")])
    live.delete_results(["battery"])
    # No checkpoint: the reopened index must replay both writes from the store's change log.
    reopened = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    ids = [m.result_id for m in reopened.match_batch([NEED], top_k=5)[0]]
    assert ids[0] == "new" and "battery" not in ids
    reopened.checkpoint()
    assert reopened.store.changes_since(0) == {}
    again = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    assert [m.result_id for m in again.match_batch([NEED], top_k=5)[0]] == ids


def test_a_snapshot_without_a_result_table_derives_it_from_the_store(matcher: Matcher, tmp_path: Path) -> None:
    import json
    import shutil

    before = matcher.match_batch([NEED], top_k=5)
    matcher.save(tmp_path / "idx")
    # An index written before the table existed: no results_table in the snapshot.
    snapshot = tmp_path / "idx" / "snapshot"
    shutil.rmtree(snapshot / "results_table")
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    del manifest["collections"]["results_table"]
    (snapshot / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256))
    assert len(old.table) == 5
    assert old.match_batch([NEED], top_k=5) == before
    old.checkpoint()  # writes the table; the next load reads it
    assert (snapshot / "results_table" / "ids.json").is_file()
    assert Matcher.load(tmp_path / "idx", FakeEncoder(dimension=256)).match_batch([NEED], top_k=5) == before


def test_concurrent_writes_during_matching(matcher: Matcher) -> None:
    import threading

    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            for n in range(start, start + 20):
                matcher.upsert_results([ResearchResult(id=f"w{n}", title=f"电池材料 第{n}号 工艺")])
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(30):
                (matches,) = matcher.match_batch([NEED], top_k=3)
                assert matches and matches[0].result_id == "battery"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in (0, 100)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(matcher.results) == 5 + 40
    assert matcher.store.count("results") == 5 + 40


def test_rerank_refuses_unknown_candidates(matcher: Matcher) -> None:
    with pytest.raises(KeyError, match="not in the index"):
        matcher.rerank_batch([NEED], [["battery", "ghost"]])


def test_rendering_joins_segmented_chinese_only() -> None:
    from matcher.text import join_cjk, render_result

    assert join_cjk("重金属 X射线 荧光  监测仪") == "重金属X射线荧光监测仪"
    assert join_cjk("deep learning 模型") == "deep learning模型"
    long = ResearchResult(id="x", title="标题", description="长" * 1000, keywords=["甲", "乙"])
    assert render_result(long).startswith("标题。长") and len(render_result(long)) == 510
    assert render_result(ResearchResult(id="y", title="标题", keywords=["甲", "乙"])) == "标题。关键词：甲、乙"


def test_matches_carry_reasons_spans_and_folded_duplicates(fake_encoder: FakeEncoder) -> None:
    twins = RESULTS + [ResearchResult(id="battery-copy", title="锂离子电池 正极材料 包覆 改性")]
    matcher = Matcher.build(twins, encoder=fake_encoder)
    (matches,) = matcher.match_batch([NEED], top_k=3)
    top = matches[0]
    assert top.result_id in {"battery", "battery-copy"}
    assert set(top.duplicates) == {"battery", "battery-copy"} - {top.result_id}
    assert all("battery" not in m.result_id for m in matches[1:])
    assert top.reasons and top.matched_terms
    need_text = f"{NEED.title}。{NEED.description}"
    for span in top.need_spans:
        assert need_text[span.start : span.end].replace(" ", "") == span.term
    # The evaluator's rerank ranks every candidate, twins included.
    (reranked,) = matcher.rerank_batch([NEED], [["battery", "battery-copy", "dye"]])
    assert len(reranked) == 3 and all(not m.duplicates for m in reranked)
    (analysis,) = matcher.analyse([NEED])
    assert {"锂离子", "改性"} <= {t.term for t in analysis.key_terms}


def test_a_stored_need_matches_without_the_model(fake_encoder: FakeEncoder, tmp_path: Path) -> None:
    from models.cache import CachedEncoder, EmbeddingCache

    cached = CachedEncoder(fake_encoder, EmbeddingCache(tmp_path / "cache.sqlite"))
    matcher = Matcher.build(RESULTS, encoder=cached)
    need = EnterpriseNeed(id="n3", title="锂电池负极材料", description="需要硅碳负极材料的量产工艺。要求首次效率高、循环寿命长。")
    matcher.upsert_needs([need])
    encoded = fake_encoder.texts_encoded
    (matches,) = matcher.match_batch([matcher.store.needs(["n3"])["n3"]], top_k=2)
    assert fake_encoder.texts_encoded == encoded and matches[0].result_id == "anode"
    # A need never stored still goes to the model.
    matcher.match_batch([NEED], top_k=1)
    assert fake_encoder.texts_encoded > encoded
