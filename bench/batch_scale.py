"""Scale benchmark of the batch job: 10,000 needs against 500,000 results, built from real data.

Stages (each writes under ``TECHMATCH_BATCH_BENCH_DIR``, default ``/tmp/batch_bench``)::

    python -m bench.batch_scale embed   # cold embedding throughput on 20,000 documents + 1,000 needs
    python -m bench.batch_scale data    # 500,000 results and 10,000 needs (texts + vectors)
    python -m bench.batch_scale build   # the 500k-result index, from the vectors; time and memory
    python -m bench.batch_scale warm    # the 10k needs' vectors into the embedding cache
    # then the batch job itself, under /usr/bin/time -v (see bench/RESULTS.md)

How the corpus is built (all seeded, so every run draws the same records):

* **Real records.** The 17,010 real results: 4,758 CSL papers (title, abstract, author
  keywords, discipline) and 12,252 CCF results (title words), loaded with
  :func:`matcher.loaders.load_results`; the 371 real needs of ``needs_ccf.jsonl``. Their
  vectors are real int8 m3e-small embeddings of :func:`matcher.text.render_result` /
  :func:`matcher.text.render_need`, computed by the ``embed`` stage.
* **Recombined variants.** Variant ``v`` picks a real record ``i`` uniformly and ``j``
  uniformly among the 10 real records of the same kind nearest to ``i`` by cosine (so a
  variant stays on one topic instead of gluing unrelated texts), and a share
  ``a ~ U(0.25, 0.75)``. Its title is the first ``ceil(a * n_i)`` title words of ``i``
  followed by the title words of ``j`` from position ``ceil(a * n_j)`` on (jieba words for
  CSL titles and needs, the given words for CCF titles); its description is the first
  ``ceil(a * s_i)`` sentences of ``i`` followed by the sentences of ``j`` from
  ``ceil(a * s_j)`` on; keywords are cut the same way; field and region come from ``i``.
  Every word of a variant is a real word of a real record.
* **Variant vectors (embedding-space variants).** Embedding 500,000 documents is
  impossible in this session (the measured cold rate is in RESULTS.md), so a variant's
  vector is ``normalise(a * x_i + (1 - a) * x_j)``, the convex combination of the real
  embeddings of the two records it was recombined from. The ``embed`` stage also embeds
  the first 2,990 result variants and 629 need variants for real and reports the cosine
  between that true embedding and the convex-combination proxy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORK = Path(os.environ.get("TECHMATCH_BATCH_BENCH_DIR", "/tmp/batch_bench"))
BENCH_DATA = Path(os.environ.get("TECHMATCH_BENCH_DATA", "/work/shared/data/bench"))
N_RESULTS = 500_000
N_NEEDS = 10_000
N_EMBED_RESULT_VARIANTS = 2_990  # 17,010 real + 2,990 variants = the 20,000-document run
N_EMBED_NEED_VARIANTS = 629  # 371 real + 629 variants = 1,000 needs embedded cold
NEIGHBOURS = 50
SEED_RESULTS = 20_250_101
SEED_NEEDS = 20_250_102
_SENTENCE_END = re.compile(r"(?<=[。；;！？!?])")


# ----- real records --------------------------------------------------------------------------


def real_results() -> list[Any]:
    """The 17,010 real results: CSL papers then CCF results, in file order."""
    from matcher.loaders import load_results

    csl = load_results(BENCH_DATA / "csl_papers.jsonl").records
    ccf = load_results(BENCH_DATA / "ccf_titles" / "corpus.jsonl").records
    return csl + ccf


def real_needs() -> list[Any]:
    """The 371 real enterprise needs."""
    from matcher.loaders import load_needs

    return load_needs(BENCH_DATA / "needs_ccf.jsonl").records


# ----- recombination -------------------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """A real record cut into the pieces that variants recombine."""

    title_words: list[str]
    title_sep: str
    sentences: list[str]
    keywords: list[str]


def parts_of(record: Any) -> Parts:
    """Title words (given words for pre-segmented titles, else jieba), sentences, keywords."""
    import jieba

    title = record.title
    if " " in title.strip():
        words, sep = title.split(), " "
    else:
        words, sep = [w for w in jieba.lcut(title) if w.strip()], ""
    sentences = [s for s in _SENTENCE_END.split(record.description) if s.strip()]
    return Parts(words or [title], sep, sentences, list(record.keywords))


def _cut_join(u: float, first: Sequence[str], second: Sequence[str]) -> tuple[list[str], list[str]]:
    """The head of ``first`` (1 + floor(u * n) pieces) and the tail of ``second`` from floor(u * m)."""
    head = list(first[: min(len(first), 1 + math.floor(u * len(first)))])
    tail = list(second[math.floor(u * len(second)) :])
    return head, tail


def nearest_neighbours(vectors: np.ndarray, k: int = NEIGHBOURS, chunk: int = 2048) -> np.ndarray:
    """The ``k`` nearest other rows of each row by cosine (rows are L2-normalised)."""
    out = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        out[start : start + chunk] = np.argpartition(-sims, k, axis=1)[:, :k]
    return out


@dataclass(frozen=True)
class Draws:
    """Seeded recombination draws: sources ``i`` and ``j``, title and description cut points."""

    i: np.ndarray
    j: np.ndarray
    u_title: np.ndarray
    u_text: np.ndarray


def draws(n: int, m: int, neighbours: np.ndarray, seed: int) -> Draws:
    """``n`` draws: i uniform, j uniform among i's neighbours, two cut points ~ U(0, 1)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, m, size=n)
    j = neighbours[i, rng.integers(0, neighbours.shape[1], size=n)]
    return Draws(i, j, rng.random(n), rng.random(n))


def variant_fields(u_title: float, u_text: float, rec_i: Any, rec_j: Any, p_i: Parts,
                   p_j: Parts) -> tuple[dict[str, Any], float]:
    """The fields of a variant recombined from real records ``i`` and ``j`` (see module doc).

    Returns:
        The fields, and ``a``: the share of the variant's characters that come from ``i``.
    """
    t_head, t_tail = _cut_join(u_title, p_i.title_words, p_j.title_words)
    d_head, d_tail = _cut_join(u_text, p_i.sentences, p_j.sentences)
    k_head, k_tail = _cut_join(u_text, p_i.keywords, p_j.keywords)
    from_i = sum(map(len, t_head + d_head))
    from_j = sum(map(len, t_tail + d_tail))
    a = from_i / max(from_i + from_j, 1)
    fields = {
        "title": p_i.title_sep.join(t_head + t_tail) or rec_i.title,
        "description": "".join(d_head + d_tail),
        "keywords": list(dict.fromkeys(k_head + k_tail)),
        "region": rec_i.region,
        "metadata": {"source": "recombined", "from": [rec_i.id, rec_j.id], "a": round(a, 4)},
    }
    return fields, a


def variants(
    kind: str, real: Sequence[Any], parts: Sequence[Parts], d: Draws, shares: np.ndarray | None = None
) -> Iterator[Any]:
    """Variants ``var-r-000000``… (results) or ``var-n-00000``… (needs) for the draws ``d``.

    Args:
        shares: if given, filled with each variant's ``a`` (its share of characters from ``i``).
    """
    from matcher.records import EnterpriseNeed, ResearchResult

    for v, (ii, jj, ut, ud) in enumerate(zip(d.i, d.j, d.u_title, d.u_text)):
        fields, a = variant_fields(float(ut), float(ud), real[ii], real[jj], parts[ii], parts[jj])
        if shares is not None:
            shares[v] = a
        if kind == "results":
            yield ResearchResult(id=f"var-r-{v:06d}", field=real[ii].field, **fields)
        else:
            fields.pop("keywords")
            yield EnterpriseNeed(id=f"var-n-{v:05d}", **fields)


def convex(vectors: np.ndarray, i: np.ndarray, j: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``normalise(a * x_i + (1 - a) * x_j)`` row by row (float32)."""
    mixed = a[:, None].astype(np.float32) * vectors[i] + (1 - a)[:, None].astype(np.float32) * vectors[j]
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def write_vectors(path: Path, real: np.ndarray, i: np.ndarray, j: np.ndarray, a: np.ndarray,
                  chunk: int = 50_000) -> None:
    """The real vectors then the variants' convex combinations, written in chunks (bounded memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(real) + len(i), real.shape[1]))
    out[: len(real)] = real
    for start in range(0, len(i), chunk):
        stop = start + chunk
        out[len(real) + start : len(real) + min(stop, len(i))] = convex(real, i[start:stop], j[start:stop], a[start:stop])
    out.flush()
    del out


# ----- helpers -------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write(name: str, payload: dict[str, Any]) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    payload = {"stage": name, "loadavg_1m": round(os.getloadavg()[0], 2), "nproc": os.cpu_count(),
               "peak_rss_mb": round(peak_rss_mb(), 1), **payload}
    (WORK / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(payload, indent=2, ensure_ascii=False), flush=True)


def _real_encoder(cached: bool = True) -> Any:
    """The production encoder (int8 m3e-small), behind the bench's own embedding cache if ``cached``."""
    from bench import product_encoder
    from models.cache import CachedEncoder, EmbeddingCache

    inner = product_encoder(quantize=True)
    if not cached:
        return inner
    return CachedEncoder(inner, EmbeddingCache(WORK / "cache" / "embeddings.sqlite"))


def _timed_encode(encode: Any, texts: Sequence[str], label: str, chunk: int = 1000) -> tuple[np.ndarray, float]:
    parts, started = [], time.perf_counter()
    for start in range(0, len(texts), chunk):
        parts.append(encode(texts[start : start + chunk]))
        done = start + len(parts[-1])
        rate = done / (time.perf_counter() - started)
        print(f"{label}: {done}/{len(texts)} ({rate:.1f}/s)", flush=True)
    return np.concatenate(parts), time.perf_counter() - started


def _write_jsonl(path: Path, records: Iterator[Any], render: Any) -> int:
    """Write records as JSONL, and beside them the hash of each record's rendered text."""
    tmp = path.with_name(path.name + ".tmp")
    hashes: list[int] = []
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json(exclude_defaults=True) + "\n")
            hashes.append(int.from_bytes(_hash(render(record)), "little"))
    os.replace(tmp, path)
    np.save(path.with_suffix(".texthash.npy"), np.array(hashes, dtype=np.uint64), allow_pickle=False)
    return len(hashes)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ----- stages --------------------------------------------------------------------------------


def stage_embed() -> dict[str, Any]:
    """Cold embedding of the 17,010 real results and 371 real needs; their vectors are saved."""
    from matcher.text import render_need, render_result

    encoder = _real_encoder()
    results, needs = real_results(), real_needs()
    doc_vecs, doc_s = _timed_encode(encoder.encode_documents, [render_result(r) for r in results],
                                    "real results")
    np.save(WORK / "real_results_vectors.npy", doc_vecs, allow_pickle=False)
    need_vecs, need_s = _timed_encode(encoder.encode_queries, [render_need(n) for n in needs],
                                      "real needs", 100)
    np.save(WORK / "real_needs_vectors.npy", need_vecs, allow_pickle=False)
    payload = {"encoder": encoder.fingerprint, "real_results": len(results),
               "real_results_seconds": round(doc_s, 1), "real_needs": len(needs),
               "real_needs_seconds": round(need_s, 1)}
    _write("embed", payload)
    return payload


def _variant_draws(kind: str, n: int, vectors: np.ndarray) -> Draws:
    seed = SEED_RESULTS if kind == "results" else SEED_NEEDS
    return draws(n, len(vectors), nearest_neighbours(vectors), seed)


def stage_embed_variants() -> dict[str, Any]:
    """Embed the first 2,990 result and 629 need variants for real (cold), after ``embed``.

    Completes the 20,000-document / 1,000-need throughput runs and measures how close the
    convex-combination proxy is to the true embedding of a recombined text.
    """
    from matcher.text import render_need, render_result

    real = json.loads((WORK / "embed.json").read_text(encoding="utf-8"))
    # No cache: the warm stage puts the needs' proxy vectors there, and this must embed cold.
    encoder = _real_encoder(cached=False)
    figures: dict[str, Any] = {}
    for kind, n, records, render, encode in (
        ("results", N_EMBED_RESULT_VARIANTS, real_results(), render_result, encoder.encode_documents),
        ("needs", N_EMBED_NEED_VARIANTS, real_needs(), render_need, encoder.encode_queries),
    ):
        vectors = np.load(WORK / f"real_{kind}_vectors.npy", allow_pickle=False)
        d = _variant_draws(kind, n, vectors)
        shares = np.zeros(n)
        made = list(variants(kind, records, [parts_of(r) for r in records], d, shares))
        true, seconds = _timed_encode(encode, [render(r) for r in made], f"{kind} variants", 100)
        proxy = np.sum(convex(vectors, d.i, d.j, shares) * true, axis=1)
        figures[kind] = {"variants": n, "seconds": round(seconds, 1), "proxy_cosine": _summary(proxy)}
    docs = real["real_results"] + N_EMBED_RESULT_VARIANTS
    doc_s = real["real_results_seconds"] + figures["results"]["seconds"]
    needs = real["real_needs"] + N_EMBED_NEED_VARIANTS
    need_s = real["real_needs_seconds"] + figures["needs"]["seconds"]
    payload = {
        "encoder": encoder.fingerprint,
        "variants": figures,
        "documents": docs,
        "document_seconds": round(doc_s, 1),
        "documents_per_second": round(docs / doc_s, 1),
        "extrapolated_500k_document_hours": round(N_RESULTS / (docs / doc_s) / 3600, 2),
        "needs": needs,
        "need_seconds": round(need_s, 1),
        "needs_per_second": round(needs / need_s, 2),
        "extrapolated_10k_need_seconds": round(N_NEEDS / (needs / need_s), 0),
    }
    _write("embed_variants", payload)
    return payload


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 4), "p5": round(float(np.percentile(values, 5)), 4),
            "min": round(float(values.min()), 4)}


def stage_data() -> dict[str, Any]:
    """Write 500k results and 10k needs (JSONL) with their vectors (``.npy``, same order)."""
    from matcher.text import render_need, render_result

    started = time.perf_counter()
    figures: dict[str, Any] = {}
    for kind, total, records, render, name in (
        ("results", N_RESULTS, real_results(), render_result, "results_500k"),
        ("needs", N_NEEDS, real_needs(), render_need, "needs_10k"),
    ):
        vectors = np.load(WORK / f"real_{kind}_vectors.npy", allow_pickle=False)
        n = total - len(records)
        d = _variant_draws(kind, n, vectors)
        shares = np.zeros(n)
        path = WORK / f"{name}.jsonl"
        made = variants(kind, records, [parts_of(r) for r in records], d, shares)
        _write_jsonl(path, _chain(records, made), render)
        write_vectors(WORK / f"{name}_vectors.npy", vectors, d.i, d.j, shares)
        hashes = np.load(path.with_suffix(".texthash.npy"))
        figures[kind] = {"records": total, "distinct_texts": len(np.unique(hashes)),
                         "file": str(path), "sha256_16": _digest(path)}
    payload = {**figures, "seconds": round(time.perf_counter() - started, 1)}
    _write("data", payload)
    return payload


def _chain(first: Sequence[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest


class PrecomputedEncoder:
    """Serves vectors computed earlier, in order, under the real encoder's fingerprint.

    The Matcher encodes documents in record order; each call hands out the next rows and
    checks, by a hash of the text, that they belong to the texts asked for.
    """

    def __init__(self, fingerprint: str, vectors: np.ndarray, text_hashes: np.ndarray) -> None:
        self._fingerprint = fingerprint
        self._vectors = vectors
        self._hashes = text_hashes
        self._next = 0

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        start, stop = self._next, self._next + len(texts)
        for offset, text in enumerate(texts):
            if int.from_bytes(_hash(text), "little") != int(self._hashes[start + offset]):
                raise ValueError(f"text {start + offset} is not the one the vectors were made for")
        self._next = stop
        return np.ascontiguousarray(self._vectors[start:stop])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("the precomputed encoder only serves the corpus")


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def fingerprint_of_real_encoder() -> str:
    """The fingerprint of the configured int8 encoder (``TECHMATCH_BACKEND``), under which the
    index and the cache are written so that ``techmatch batch`` with the same settings opens
    them. The recorded runs (RESULTS.md) used ``TECHMATCH_BACKEND=torch``, the backend the
    real vectors of the ``embed`` stage were computed with."""
    from bench import product_encoder

    return str(product_encoder(quantize=True).fingerprint)


def stage_build(chunk: int = 50_000) -> dict[str, Any]:
    """Build and save the 500k index from the vectors; report time and peak memory."""
    from matcher.batch_io import read_chunks
    from matcher.matcher import Matcher, MatcherOptions
    from matcher.records import ResearchResult
    from matcher.settings import Settings

    fingerprint = fingerprint_of_real_encoder()
    path = WORK / "results_500k.jsonl"
    vectors = np.load(WORK / "results_500k_vectors.npy", mmap_mode="r")
    encoder = PrecomputedEncoder(fingerprint, vectors, np.load(path.with_suffix(".texthash.npy")))
    settings = Settings()
    options = MatcherOptions(settings.candidates, settings.exact_search_max)
    started = time.perf_counter()
    matcher = Matcher.build([], encoder=encoder, options=options)
    # Streamed in chunks: memory holds one chunk of records, not all 500k.
    for chunk_in in read_chunks(path, ResearchResult, chunk):
        if chunk_in.rejects:
            raise ValueError(f"generated data has a bad row: {chunk_in.rejects[0].describe()}")
        matcher.upsert_results(chunk_in.records)
        print(f"indexed {chunk_in.end_row}/{N_RESULTS} in {time.perf_counter() - started:.0f}s", flush=True)
    built = time.perf_counter() - started
    index_dir = WORK / "index_500k"
    matcher.save(index_dir)
    total = time.perf_counter() - started
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    payload = {"results": len(matcher.results), "index": matcher.stats(), "build_seconds": round(built, 1),
               "build_and_save_seconds": round(total, 1), "index_dir": str(index_dir),
               "index_bytes": size, "note": "vectors precomputed (see module doc); time is tokenising, "
               "BM25, FAISS and the record store"}
    _write("build", payload)
    return payload


def stage_warm() -> dict[str, Any]:
    """Put the 10k needs' vectors, and their key sentences', into the embedding cache the
    batch job reads.

    This is the nightly situation (needs embedded on an earlier night), so both are embedded
    for real here with the product's encoder, as the earlier night would have: the 10k need
    texts (9,914 distinct) and their key sentences (title + technical sentences, 68,487 for
    the 10k needs but only 11,967 distinct, as variants reuse real sentences). Texts already
    in the cache are not embedded again. (Until session 3 the variants' need vectors were
    the convex-combination proxies of ``needs_10k_vectors.npy``, to save the embedding time.)
    """
    from matcher.loaders import load_needs
    from matcher.need_analysis import analyse_need
    from matcher.text import render_need
    from models.cache import CachedEncoder, EmbeddingCache
    from bench import product_encoder

    encoder = CachedEncoder(product_encoder(quantize=True), EmbeddingCache(WORK / "cache" / "embeddings.sqlite"))
    needs = load_needs(WORK / "needs_10k.jsonl").records
    texts = list(dict.fromkeys(render_need(n) for n in needs))
    started = time.perf_counter()
    encoder.encode_queries(texts)
    need_seconds = time.perf_counter() - started
    sentences = list(dict.fromkeys(s for n in needs for s in analyse_need(n).key_sentences))
    started = time.perf_counter()
    encoder.encode_queries(sentences)
    payload = {"needs": len(needs), "distinct_texts": len(texts), "key_sentences": len(sentences),
               "need_seconds": round(need_seconds, 1),
               "key_sentence_seconds": round(time.perf_counter() - started, 1),
               "newly_embedded": encoder.misses, "from_cache": encoder.hits, "cache": str(encoder.cache.path)}
    _write("warm", payload)
    return payload


def stage_profile(n: int = 300) -> dict[str, Any]:
    """Where the time of matching goes: cProfile of ``match_batch`` on ``n`` of the 10k needs.

    Also times the stages the Matcher runs per batch, separately: need encoding (from the
    warm cache), dense search, jieba tokenising, BM25 over the corpus, and the rest.
    """
    import cProfile
    import pstats

    from indexes.tokenizer import tokenize
    from matcher.loaders import load_needs
    from matcher.matcher import Matcher
    from matcher.runtime import make_encoder
    from matcher.settings import Settings
    from matcher.text import render_need

    started = time.perf_counter()
    matcher = Matcher.load(WORK / "index_500k", make_encoder(Settings()))
    loaded = time.perf_counter() - started
    needs = load_needs(WORK / "needs_10k.jsonl").records[:n]
    matcher.match_batch(needs[:2])  # first search builds the BM25 matrix: not part of the profile
    first_search = time.perf_counter() - started - loaded
    texts = [render_need(x) for x in needs]
    timings: dict[str, float] = {}
    t = time.perf_counter()
    queries = matcher.encoder.encode_queries(texts)
    timings["encode_needs_cached"] = time.perf_counter() - t
    t = time.perf_counter()
    matcher.results.vector.search(queries, matcher.options.candidates)
    timings["dense_search"] = time.perf_counter() - t
    t = time.perf_counter()
    tokens = [tokenize(x) for x in texts]
    timings["jieba_tokenise_needs"] = time.perf_counter() - t
    t = time.perf_counter()
    for toks in tokens:
        matcher.results.lexical.scores(toks)
    timings["bm25_scores_whole_corpus"] = time.perf_counter() - t
    t = time.perf_counter()
    matcher.match_batch(needs, top_k=10)
    timings["match_batch_total"] = time.perf_counter() - t
    profiler = cProfile.Profile()
    profiler.enable()
    matcher.match_batch(needs, top_k=10)
    profiler.disable()
    stats_path = WORK / "profile.txt"
    with stats_path.open("w", encoding="utf-8") as handle:
        pstats.Stats(profiler, stream=handle).sort_stats("cumulative").print_stats(35)
    payload = {"needs": n, "index_load_seconds": round(loaded, 1),
               "first_search_seconds": round(first_search, 1),
               "ms_per_need": {k: round(1000 * v / n, 2) for k, v in timings.items()},
               "index": matcher.stats(), "cprofile": str(stats_path)}
    _write("profile", payload)
    return payload


STAGES = {"embed": stage_embed, "embed-variants": stage_embed_variants, "data": stage_data, "build": stage_build, "warm": stage_warm,
          "profile": stage_profile}


def main(argv: Sequence[str]) -> int:
    """``python -m bench.batch_scale STAGE``."""
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"usage: python -m bench.batch_scale {{{'|'.join(STAGES)}}}", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    STAGES[argv[0]]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
