"""The postings-based BM25 against bm25s (the index it replaced), under writes, saves and threads."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np
import pytest

from indexes import lexical
from indexes.lexical import LexicalIndex
from indexes.persistence import save_json
from indexes.tokenizer import tokenize

WORDS = [f"词{k}" for k in range(150)] + ["battery", "锂电池", "正极", "酸雾", "废水"]


def _random_docs(rng: np.random.Generator, n: int, start: int = 0) -> dict[str, list[str]]:
    """Documents of Zipf-distributed words, 0 to 40 tokens long (empty ones included)."""
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return {
        f"d{start + i}": [WORDS[w] for w in rng.choice(len(WORDS), size=int(rng.integers(0, 41)), p=p)]
        for i in range(n)
    }


def _random_queries(rng: np.random.Generator, n: int) -> list[list[str]]:
    # Repeated words (counted each time, as bm25s does) and words absent from the index.
    return [list(rng.choice(WORDS + ["未收录", "unseen"], size=int(rng.integers(1, 12)))) for _ in range(n)]


def _bm25s(docs: dict[str, list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """The oracle: bm25s's default (lucene) BM25 built from scratch over ``docs``, in their order."""
    if not docs:
        return np.zeros(0)
    oracle = bm25s.BM25(k1=k1, b=b)
    # The replaced index gave an empty document a placeholder token; so does the oracle.
    oracle.index([tokens or [""] for tokens in docs.values()], show_progress=False)
    known = [t for t in query if t in oracle.vocab_dict]
    return oracle.get_scores(known) if known else np.zeros(len(docs))


def _assert_matches_oracle(index: LexicalIndex, docs: dict[str, list[str]], queries: list[list[str]],
                           k1: float = 1.2, b: float = 0.75) -> None:
    ids = list(docs)
    assert len(index) == len(docs)
    for query in queries:
        expected = _bm25s(docs, query, k1, b)
        np.testing.assert_allclose(index.scores(query).for_ids(ids), expected, rtol=1e-4, atol=1e-6)


def _assert_live_df(index: LexicalIndex, docs: dict[str, list[str]]) -> None:
    expected = Counter(word for tokens in docs.values() for word in set(tokens))
    df = index.document_frequency
    assert dict(df) == dict(expected)
    assert len(df) == len(expected)
    for word in WORDS:
        assert df.get(word, 0) == expected.get(word, 0)


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (1.5, 0.3)])
def test_scores_equal_bm25s_on_random_token_lists(k1: float, b: float) -> None:
    rng = np.random.default_rng(7)
    docs = _random_docs(rng, 300)
    index = LexicalIndex(k1=k1, b=b)
    index.add_tokens(list(docs), list(docs.values()))
    _assert_matches_oracle(index, docs, _random_queries(rng, 40), k1, b)


@pytest.mark.slow
def test_scores_equal_bm25s_on_real_chinese_texts(shared_data: Path) -> None:
    with (shared_data / "bench" / "csl_papers.jsonl").open(encoding="utf-8") as handle:
        papers = [json.loads(line) for _, line in zip(range(1500), handle)]
    with (shared_data / "bench" / "needs_ccf.jsonl").open(encoding="utf-8") as handle:
        needs = [json.loads(line) for _, line in zip(range(30), handle)]
    docs = {p["_id"]: tokenize(f"{p['title']}。{p['text']}") for p in papers}
    index = LexicalIndex()
    index.add_tokens(list(docs), list(docs.values()))
    queries = [tokenize(f"{n['title']}。{n['text']}") for n in needs]
    _assert_matches_oracle(index, docs, queries)
    # The top of the ranking is the oracle's too (up to ties).
    for query in queries[:10]:
        expected = _bm25s(docs, query)
        hits = index.scores(query).top(5)
        assert [score for _, score in hits] == pytest.approx(sorted(expected, reverse=True)[:5], rel=1e-4)


@pytest.mark.parametrize("merge", ["never", "every-write", "sometimes"])
def test_incremental_writes_equal_an_index_built_from_scratch(
    merge: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force each storage path: everything in the delta, a merge per write, or a mix.
    threshold = {"never": 10**9, "every-write": 0, "sometimes": 150}[merge]
    monkeypatch.setattr(lexical, "_MERGE_MIN_POSTINGS", threshold)
    monkeypatch.setattr(lexical, "_MERGE_SHARE", 0.0 if merge != "never" else 1.0)
    if merge == "never":
        monkeypatch.setattr(lexical, "_DEAD_SHARE", 1.0)
    rng = np.random.default_rng(11)
    index, live = LexicalIndex(), {}
    queries = _random_queries(rng, 12)
    next_id = 0
    for step in range(30):
        op = rng.choice(["add", "replace", "remove"]) if live else "add"
        if op == "add":
            new = _random_docs(rng, int(rng.integers(1, 25)), start=next_id)
            next_id += len(new)
            index.add_tokens(list(new), list(new.values()))
            live.update(new)
        elif op == "replace":
            ids = list(rng.choice(list(live), size=min(len(live), int(rng.integers(1, 6))), replace=False))
            fresh = list(_random_docs(rng, len(ids)).values())
            index.add_tokens(ids, fresh)
            for record_id, tokens in zip(ids, fresh):
                live.pop(record_id)  # a replaced document moves to the end, as in the index
                live[record_id] = tokens
        else:
            ids = list(rng.choice(list(live), size=min(len(live), int(rng.integers(1, 8))), replace=False))
            assert index.remove(ids + ["never-added"]) == len(ids)
            for record_id in ids:
                live.pop(record_id)
        _assert_live_df(index, live)
        if step % 3 == 2 or step == 29:
            _assert_matches_oracle(index, live, queries)
    assert len(index) == len(live)


def test_repeated_id_in_one_call_keeps_the_last() -> None:
    index = LexicalIndex()
    index.add_tokens(["a", "b", "a"], [["锂电池"], ["酸雾"], ["废水", "废水"]])
    _assert_live_df(index, {"b": ["酸雾"], "a": ["废水", "废水"]})
    assert index.scores(["锂电池"]).top(5) == []


def test_empty_queries_and_indexes_score_zero() -> None:
    index = LexicalIndex()
    assert index.scores("锂电池").top(3) == [] and len(index.scores([]).values) == 0
    index.add_tokens(["a", "b"], [["锂电池"], []])
    for query in ([], ["未收录"], "的", ""):
        scores = index.scores(query)
        assert scores.top(3) == [] and scores.for_ids(["a", "b", "zzz"]).tolist() == [0.0, 0.0, 0.0]
    index.remove(["a", "b"])
    assert len(index) == 0 and index.scores(["锂电池"]).top(3) == []
    assert dict(index.document_frequency) == {}


def test_add_tokens_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 ids but 1 token lists"):
        LexicalIndex().add_tokens(["a", "b"], [["x"]])


def _written_index(monkeypatch: pytest.MonkeyPatch) -> tuple[LexicalIndex, dict[str, list[str]]]:
    """An index with a main segment, a pending delta and dead rows in both."""
    monkeypatch.setattr(lexical, "_MERGE_MIN_POSTINGS", 2_000)
    monkeypatch.setattr(lexical, "_DEAD_SHARE", 1.0)
    rng = np.random.default_rng(3)
    docs = _random_docs(rng, 200)
    index = LexicalIndex()
    index.add_tokens(list(docs), list(docs.values()))  # > 2,000 postings: merged into main
    extra = _random_docs(rng, 10, start=1000)
    index.add_tokens(list(extra), list(extra.values()))  # stays in the delta
    index.remove(["d0", "d1", "d1003"])
    index.add_tokens(["d5"], [["锂电池", "正极"]])
    live = {**docs, **extra}
    for record_id in ("d0", "d1", "d1003", "d5"):
        live.pop(record_id)
    live["d5"] = ["锂电池", "正极"]
    assert len(index._delta.batches) and len(index._row) < len(index._ids)  # what this fixture is for
    return index, live


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmap: bool) -> None:
    index, live = _written_index(monkeypatch)
    queries = _random_queries(np.random.default_rng(5), 15)
    before = [index.scores(q).for_ids(list(live)) for q in queries]
    info = index.save(tmp_path)
    assert info["count"] == len(live) and info["format"] == lexical.FORMAT
    assert not (tmp_path / "lexical_tokens.json").exists()
    loaded = LexicalIndex.load(tmp_path, info, mmap=mmap)
    assert isinstance(loaded._main.term_rows.base, np.memmap) is mmap
    for query, expected in zip(queries, before):
        np.testing.assert_allclose(loaded.scores(query).for_ids(list(live)), expected, rtol=1e-6)
    _assert_matches_oracle(loaded, live, queries)
    _assert_live_df(loaded, live)
    # A loaded (read-only, mapped) index takes writes like any other.
    loaded.add_tokens(["d7", "new"], [["酸雾", "废水"], ["battery"]])
    loaded.remove(["d9"])
    live.pop("d7"), live.pop("d9")
    live.update({"d7": ["酸雾", "废水"], "new": ["battery"]})
    _assert_matches_oracle(loaded, live, queries)
    _assert_live_df(loaded, live)


def test_saving_over_its_own_mapped_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, live = _written_index(monkeypatch)
    info = index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path, info)
    loaded.remove(["d2"])
    live.pop("d2")
    info = loaded.save(tmp_path)  # replaces the files it has mapped
    queries = _random_queries(np.random.default_rng(8), 10)
    _assert_matches_oracle(loaded, live, queries)
    _assert_matches_oracle(LexicalIndex.load(tmp_path, info), live, queries)


def test_loads_the_token_list_format(tmp_path: Path) -> None:
    docs = _random_docs(np.random.default_rng(4), 60)
    # What LexicalIndex.save wrote before the postings format, and its manifest entry.
    save_json(tmp_path / "lexical_tokens.json", docs)
    info = {"count": len(docs), "k1": 1.2, "b": 0.75, "tokenizer": "jieba-0.42.1/stopwords-v1"}
    loaded = LexicalIndex.load(tmp_path, info)
    _assert_matches_oracle(loaded, docs, _random_queries(np.random.default_rng(6), 10))
    _assert_live_df(loaded, docs)


def test_load_refuses_inconsistent_files(tmp_path: Path) -> None:
    index = LexicalIndex()
    index.add_tokens(["a", "b"], [["锂电池"], ["酸雾"]])
    info = index.save(tmp_path)
    save_json(tmp_path / "lexical_ids.json", ["a"])
    with pytest.raises(ValueError, match="1 ids, 2 documents"):
        LexicalIndex.load(tmp_path, info)


def test_reads_stay_consistent_during_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small merge threshold and dead share: merges and renumbering happen while readers run.
    monkeypatch.setattr(lexical, "_MERGE_MIN_POSTINGS", 300)
    monkeypatch.setattr(lexical, "_DEAD_SHARE", 0.1)
    rng = np.random.default_rng(9)
    churn = _random_docs(rng, 300)
    index = LexicalIndex()
    index.add_tokens(["anchor"], [["锚点", "电池"]])
    index.add_tokens(list(churn), list(churn.values()))
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                scores = index.scores(["锚点", "词1"])
                # Only the anchor holds 锚点 and the anchor is never written: always first,
                # always found by id.
                assert scores.top(1)[0][0] == "anchor"
                assert scores.for_ids(["anchor"])[0] > 0
                assert index.document_frequency["锚点"] == 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    live = dict(churn)
    try:
        for step in range(150):
            ids = list(rng.choice(list(live), size=5, replace=False))
            if step % 3 == 0:
                index.remove(ids)
                for record_id in ids:
                    live.pop(record_id)
            fresh = _random_docs(rng, 5, start=10_000 + 5 * step)
            index.add_tokens(list(fresh), list(fresh.values()))
            live.update(fresh)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors, errors[0]
    live = {"anchor": ["锚点", "电池"], **live}
    _assert_matches_oracle(index, live, _random_queries(rng, 8))
    _assert_live_df(index, live)
