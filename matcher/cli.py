"""The ``techmatch`` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from tqdm import tqdm

from indexes.persistence import IndexMismatchError
from matcher.loaders import LoadResult, OnError, RecordError, load_needs, load_results, write_rejects
from matcher.matcher import Matcher, MatcherOptions
from matcher.records import EnterpriseNeed, Match
from matcher.text import render_need, render_result
from matcher.runtime import make_encoder
from matcher.settings import Settings
from models.cache import CachedEncoder, text_key
from models.sentence_transformer import ModelNotFoundError

DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"

app = typer.Typer(help="techmatch: match enterprise technical needs with research results.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
index_app = typer.Typer(help="Build and inspect indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _load(kind: str, path: Path, on_error: OnError, rejects: Path | None) -> LoadResult:  # type: ignore[type-arg]
    loader = load_results if kind == "results" else load_needs
    try:
        loaded = loader(path, on_error=on_error)
    except (RecordError, FileNotFoundError) as exc:
        _fail(f"{exc} (use --on-error report to skip bad rows and write them to a rejects file)"
              if isinstance(exc, RecordError) else str(exc))
    if loaded.rejects:
        target = rejects or path.with_name(path.name + ".rejects.jsonl")
        # A shared --rejects file collects every input's rejects (build_index empties it first).
        write_rejects(loaded.rejects, target, append=rejects is not None)
        typer.echo(f"{len(loaded.rejects)} bad {kind} rows rejected, written with reasons to {target}",
                   err=True)
        for reject in loaded.rejects[:5]:
            typer.echo(f"  {reject.describe()}", err=True)
    return loaded


def _encoder(no_cache: bool, settings: Settings):  # type: ignore[no-untyped-def]
    try:
        return make_encoder(settings, use_cache=not no_cache and settings.use_cache)
    except ModelNotFoundError as exc:
        _fail(str(exc))


def build_index(
    results_paths: list[Path],
    needs_path: Path | None,
    index_dir: Path,
    *,
    on_error: OnError = "raise",
    rejects: Path | None = None,
    no_cache: bool = False,
    settings: Settings | None = None,
    executor: str = "local",
) -> Matcher:
    """Load records, embed them (from the cache where possible), index and save; print a summary.

    With ``executor="ray"`` the texts the cache lacks are embedded in shards on Ray workers
    first and put in the cache; the build itself then runs as always and finds them there.
    """
    settings = settings or Settings()
    if rejects is not None:
        rejects.unlink(missing_ok=True)
    results = []
    seen: dict[str, Path] = {}
    for path in results_paths:
        for record in _load("results", path, on_error, rejects).records:
            if record.id in seen:
                _fail(f"{path}: result id '{record.id}' is also in {seen[record.id]}; ids must be "
                      "unique across all --results files")
            seen[record.id] = path
            results.append(record)
    needs = _load("needs", needs_path, on_error, None).records if needs_path else []
    encoder = _encoder(no_cache, settings)
    started = time.perf_counter()
    if executor == "ray":
        if not isinstance(encoder, CachedEncoder):
            _fail("--executor ray hands the embeddings to the build through the embedding cache; "
                  "drop --no-cache (and TECHMATCH_USE_CACHE=false)")
        _embed_on_ray(encoder, [render_result(r) for r in results], [render_need(n) for n in needs])
    with tqdm(total=len(results) + len(needs), desc="embedding", unit="rec",
              disable=not sys.stderr.isatty()) as bar:
        matcher = Matcher.build(results, needs, encoder=encoder,
                                options=MatcherOptions(settings.candidates, settings.exact_search_max),
                                progress=bar.update)
    matcher.save(index_dir)
    elapsed = time.perf_counter() - started
    total = len(results) + len(needs)
    typer.echo(f"indexed {len(results)} results and {len(needs)} needs into {index_dir} "
               f"in {elapsed:.1f}s ({total / max(elapsed, 1e-9):.1f} records/s)")
    if isinstance(encoder, CachedEncoder):
        typer.echo(f"embeddings: {encoder.misses} newly embedded, {encoder.hits} from the cache "
                   f"({settings.cache_dir})")
        if encoder.misses == 0:
            typer.echo("nothing changed since the last build: no record was re-embedded")
    else:
        typer.echo(f"embeddings: {total} embedded (cache bypassed)")
    return matcher


def _embed_on_ray(encoder: CachedEncoder, result_texts: list[str], need_texts: list[str]) -> None:
    """Embed the texts the cache lacks on Ray workers and store them in the cache."""
    try:
        from matcher.ray_executor import encode_sharded
    except ImportError as exc:
        _fail(f"--executor ray needs Ray: pip install 'techmatch[distributed]' ({exc})")
    for side, texts in (("documents", result_texts), ("queries", need_texts)):
        cache_side = "document" if side == "documents" else "query"
        keys = {text_key(t): t for t in texts}
        have = encoder.cache.get_many(encoder.fingerprint, cache_side, list(keys))
        missing = [t for k, t in keys.items() if k not in have]
        if not missing:
            continue
        typer.echo(f"embedding {len(missing)} {side} on Ray workers", err=True)
        vectors, fingerprint = encode_sharded(missing, side=side)
        if fingerprint != encoder.fingerprint:
            _fail(f"the Ray workers' encoder is '{fingerprint}', this process's is "
                  f"'{encoder.fingerprint}': give the workers the same TECHMATCH_MODEL / settings")
        encoder.cache.put_many(encoder.fingerprint, cache_side,
                               {text_key(t): v for t, v in zip(missing, vectors)})


@index_app.command("build")
def index_build(
    results: Annotated[list[Path], typer.Option(help="research results: .jsonl (BEIR or native) "
                                                "or .csv; repeat the option for several files")],
    index_dir: Annotated[Path, typer.Option(help="directory to write the index to")],
    needs: Annotated[Optional[Path], typer.Option(help="enterprise needs, for results → needs")] = None,
    on_error: Annotated[str, typer.Option(help="raise: stop at the first bad row; report: "
                                          "skip bad rows and write them to a rejects file")] = "raise",
    rejects: Annotated[Optional[Path], typer.Option(help="where to write rejected rows")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="bypass the embedding cache")] = False,
    executor: Annotated[str, typer.Option(
        help="local, or ray: embed in shards on a Ray cluster (RAY_ADDRESS or a local Ray)")] = "local",
) -> None:
    """Embed and index research results (and optionally needs)."""
    if on_error not in ("raise", "report"):
        _fail(f"--on-error must be 'raise' or 'report', got '{on_error}'")
    if executor not in ("local", "ray"):
        _fail(f"--executor must be 'local' or 'ray', got '{executor}'")
    build_index(results, needs, index_dir, on_error=on_error, rejects=rejects,  # type: ignore[arg-type]
                no_cache=no_cache, executor=executor)


def open_matcher(index_dir: Path, settings: Settings | None = None) -> Matcher:
    """Load a saved index with the configured encoder, with CLI-friendly errors."""
    settings = settings or Settings()
    encoder = _encoder(False, settings)
    try:
        return Matcher.load(index_dir, encoder)
    except (IndexMismatchError, FileNotFoundError) as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _print_matches(need: EnterpriseNeed, matches: list[Match]) -> None:
    typer.echo(f"\n需求 {need.id}: {need.title}")
    for m in matches:
        title = m.result.title if m.result else ""
        tier = f" [{m.tier}]" if m.tier else ""
        # A calibrated probability means something to a broker; a raw fused score does not.
        shown = f"P(强相关)={m.p_strong:.0%}" if m.p_strong is not None else f"{m.score:.3f}"
        typer.echo(f"  {m.rank:>2}. {shown}{tier}  {m.result_id}  {title[:60]}")
        if m.reasons:
            typer.echo(f"      {'; '.join(m.reasons)}")


@app.command("match")
def match_cmd(
    index_dir: Annotated[Path, typer.Option(help="index directory built by `index build`")],
    need_text: Annotated[Optional[str], typer.Option(help="a need as free text")] = None,
    need_file: Annotated[Optional[Path], typer.Option(help="needs as .jsonl or .csv")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    config: Annotated[str, typer.Option(help="scoring configuration")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Rank research results for one or more needs."""
    if (need_text is None) == (need_file is None):
        _fail("give exactly one of --need-text or --need-file")
    if need_text is not None:
        if not need_text.strip():
            _fail("--need-text is empty")
        needs = [EnterpriseNeed(id="need-text", title=need_text.strip())]
    else:
        needs = _load("needs", need_file, "raise", None).records  # type: ignore[arg-type]
    matcher = open_matcher(index_dir)
    try:
        ranked = matcher.match_batch(needs, top_k=top_k, config=config)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        rows = [
            {"need_id": need.id, **m.model_dump(exclude={"result"}),
             "title": m.result.title if m.result else None}
            for need, matches in zip(needs, ranked) for m in matches
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for need, matches in zip(needs, ranked):
            _print_matches(need, matches)


@app.command("demo")
def demo(
    index_dir: Annotated[Optional[Path], typer.Option(help="where to put the demo index")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=50)] = 5,
) -> None:
    """Index the bundled CSL papers and match the bundled example needs."""
    settings = Settings()
    target = index_dir or settings.cache_dir / "demo-index"
    matcher = build_index([DEMO_DIR / "results.jsonl"], DEMO_DIR / "needs.jsonl", target,
                          settings=settings)
    needs = load_needs(DEMO_DIR / "needs.jsonl").records
    for need, matches in zip(needs, matcher.match_batch(needs, top_k=top_k)):
        _print_matches(need, matches)


def _mount_subcommands() -> None:
    from api.cli import serve
    from eval.cli import app as eval_app
    from matcher.batch_cli import batch

    app.add_typer(eval_app, name="eval")
    app.command("batch")(batch)
    app.command("serve")(serve)


_mount_subcommands()
