"""``techmatch eval``: measure ranking quality on graded labels, and run the labelling loop.

Mounted by ``matcher/cli.py`` as the ``eval`` sub-command. Without a
sub-command it evaluates; ``export-candidates`` and ``import-labels`` are the
two halves of the labelling loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from eval.datasets import (
    DatasetError,
    Qrels,
    label_scale,
    load_corpus,
    load_qrels,
    load_queries,
    load_run,
    write_run,
)
from eval.labels import LabelImportError, LabelRules, build_pool, import_labels, write_pool
from eval.metrics import BootstrapSettings, MetricSettings
from eval.report import ReportPaths, build_manifest, headline_metrics, write_reports
from eval.runner import (
    DEFAULT_CONFIGS,
    RUN_CONFIG_NAME,
    Evaluation,
    Rankings,
    check_mode,
    check_qrels_ids,
    evaluate_configs,
    judged_needs,
    rank_configs,
    rankings_from_run,
    rankings_to_run,
)
from indexes.persistence import IndexMismatchError, read_manifest
from matcher.loaders import RecordError, load_needs, load_results
from matcher.matcher import Matcher, MatcherOptions
from matcher.runtime import make_encoder
from matcher.settings import Settings
from models.sentence_transformer import ModelNotFoundError

app = typer.Typer(
    help="Evaluate ranking quality on graded relevance labels (BEIR layout).",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
)

# Failures a user can fix (bad data, a missing model, a stale index): a message, not a traceback.
_EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    DatasetError,
    LabelImportError,
    RecordError,
    IndexMismatchError,
    ModelNotFoundError,
    FileNotFoundError,
    ValueError,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def parse_ks(text: str) -> tuple[int, ...]:
    """Parse ``--k`` such as ``1,3,5,10``.

    Args:
        text: Comma-separated positive integers.

    Returns:
        Sorted distinct cut-offs.

    Raises:
        ValueError: Naming the bad value.
    """
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--k takes positive integers such as 1,3,5,10; got {part!r}")
        values.append(int(part))
    if not values:
        raise ValueError("--k is empty; give cut-offs such as 1,3,5,10")
    return tuple(sorted(set(values)))


def parse_configs(values: Sequence[str] | None) -> list[str]:
    """``--config`` may be repeated or comma-separated; default: every standard configuration.

    Args:
        values: Raw option values.

    Returns:
        Distinct names in the order given.
    """
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or list(DEFAULT_CONFIGS)


@dataclass(frozen=True)
class EvalRequest:
    """Everything ``techmatch eval`` was asked to do.

    Attributes:
        corpus: BEIR corpus JSONL.
        queries: BEIR queries JSONL.
        qrels: BEIR qrels TSV.
        mode: ``rerank`` or ``retrieve``.
        out: Report folder.
        settings: Metric settings.
        bootstrap: Resampling settings.
        configs: Configurations to evaluate.
        run: A run file to evaluate instead of ranking.
        index_dir: A saved index to use instead of building one from the corpus.
        use_cache: Use the embedding cache.
    """

    corpus: Path
    queries: Path
    qrels: Path
    mode: str
    out: Path
    settings: MetricSettings
    bootstrap: BootstrapSettings
    configs: tuple[str, ...]
    run: Path | None = None
    index_dir: Path | None = None
    use_cache: bool = True


def _open_matcher(request: EvalRequest, app_settings: Settings) -> tuple[Matcher, dict[str, Any]]:
    encoder = make_encoder(app_settings, use_cache=request.use_cache and app_settings.use_cache)
    options = MatcherOptions(app_settings.candidates, app_settings.exact_search_max)
    if request.index_dir is not None:
        matcher = Matcher.load(request.index_dir, encoder)
        index_info = {
            "source": str(request.index_dir.resolve()),
            "manifest": read_manifest(request.index_dir),
        }
    else:
        results = load_results(request.corpus).records
        typer.echo(f"indexing {len(results)} results of {request.corpus} …", err=True)
        matcher = Matcher.build(results, encoder=encoder, options=options)
        index_info = {
            "source": "built from the corpus for this evaluation",
            "options": vars(options),
        }
    index_info["stats"] = matcher.stats()
    return matcher, index_info


def _check_candidates_indexed(matcher: Matcher, qrels: Qrels) -> None:
    judged = sorted({doc for labels in qrels.values() for doc in labels})
    found = matcher.store.results(judged)
    missing = [doc for doc in judged if doc not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} judged results are not in the index (e.g. {', '.join(missing[:5])}); "
            "rerank mode needs every judged candidate: rebuild the index from the corpus"
        )


def run_evaluation(
    request: EvalRequest, command: Sequence[str] | None = None
) -> tuple[Evaluation, ReportPaths]:
    """Rank (or read a run), measure, and write the reports and the runs.

    Args:
        request: What to evaluate.
        command: The command line, for the manifest.

    Returns:
        The evaluation and where its reports were written.

    Raises:
        DatasetError: On bad or inconsistent data files.
        ValueError: On a bad mode or configuration.
    """
    started = time.perf_counter()
    mode = check_mode(request.mode)
    qrels = load_qrels(request.qrels)
    if not qrels:
        raise DatasetError(f"{request.qrels}: no judged pair")
    queries = load_queries(request.queries)
    corpus_ids = set(load_corpus(request.corpus))
    check_qrels_ids(qrels, set(queries), corpus_ids)
    titles = {query_id: queries[query_id].title for query_id in qrels}
    app_settings = Settings()
    if request.run is not None:
        rankings_by_config: dict[str, Rankings] = {
            RUN_CONFIG_NAME: rankings_from_run(load_run(request.run), qrels, mode=mode)
        }
        model_info: dict[str, Any] = {"fingerprint": "unknown: evaluated a run file"}
        index_info: dict[str, Any] = {"source": f"run file {request.run}"}
    else:
        matcher, index_info = _open_matcher(request, app_settings)
        model_info = {
            "fingerprint": matcher.encoder.fingerprint,
            "dimension": matcher.encoder.dimension,
        }
        if mode == "rerank":
            _check_candidates_indexed(matcher, qrels)
        needs = judged_needs(load_needs(request.queries).records, qrels)
        rankings_by_config = rank_configs(
            matcher, needs, qrels, mode=mode, configs=request.configs, top_k=request.settings.max_k
        )
    evaluation = evaluate_configs(
        rankings_by_config,
        qrels,
        mode=mode,
        settings=request.settings,
        bootstrap=request.bootstrap,
        label_scale=label_scale(qrels),
        query_titles=titles,
    )
    for name, rankings in rankings_by_config.items():
        # The same format the batch job writes, so any configuration can be re-scored with --run.
        write_run(rankings_to_run(rankings), request.out / "runs" / f"{name}.json")
    manifest = build_manifest(
        data_files={
            "corpus": request.corpus,
            "queries": request.queries,
            "qrels": request.qrels,
            "run": request.run,
        },
        model=model_info,
        index=index_info,
        settings={
            "app": app_settings.model_dump(mode="json"),
            "eval": {
                "mode": mode,
                "configs": list(rankings_by_config),
                "strong_min": request.settings.strong_min,
                "scale_top": request.settings.scale_top,
                "ks": list(request.settings.ks),
                "use_cache": request.use_cache,
            },
        },
        command=command,
        elapsed_seconds=round(time.perf_counter() - started, 2),
    )
    return evaluation, write_reports(evaluation, manifest, request.out)


def _summary(evaluation: Evaluation) -> str:
    metrics = headline_metrics(evaluation.settings.ks, evaluation.mode)
    width = max(len(name) for name in evaluation.configs) + 2
    lines = ["".ljust(width) + "  ".join(f"{metric:>20}" for metric in metrics)]
    for name, result in evaluation.configs.items():
        marker = "*" if name == evaluation.default_config else " "
        cells = "  ".join(f"{result.metrics[metric]:>20.3f}" for metric in metrics)
        lines.append(f"{name}{marker}".ljust(width) + cells)
    return "\n".join(lines)


@app.callback()
def evaluate(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None, typer.Option(help="BEIR corpus.jsonl (research results)")
    ] = None,
    queries: Annotated[Path | None, typer.Option(help="BEIR queries.jsonl (needs)")] = None,
    qrels: Annotated[
        Path | None, typer.Option(help="BEIR qrels TSV: query-id, corpus-id, score")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="rerank: rank each query's judged candidates; retrieve: search the whole corpus"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder for report.json/.md/.html and runs/")
    ] = None,
    strong_min: Annotated[int, typer.Option(help="smallest label counted as strongly related")] = 2,
    scale_top: Annotated[
        int | None,
        typer.Option(help="top of the label scale (default: largest label in the qrels)"),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="cut-offs, comma-separated")] = "1,3,5,10",
    config: Annotated[
        list[str] | None,
        typer.Option(
            help="ranking configuration; repeat for several "
            "(default: dense, lexical, hybrid, default)"
        ),
    ] = None,
    run: Annotated[
        Path | None, typer.Option(help="evaluate this BEIR run file instead of ranking")
    ] = None,
    index_dir: Annotated[
        Path | None, typer.Option(help="use this saved index instead of indexing the corpus")
    ] = None,
    bootstrap_samples: Annotated[
        int, typer.Option(help="bootstrap resamples for the intervals")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = BootstrapSettings().seed,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="bypass the embedding cache")
    ] = False,
) -> None:
    """Evaluate ranking configurations on graded labels; write report.json, .md and .html."""
    if ctx.invoked_subcommand is not None:
        return
    if corpus is None or queries is None or qrels is None or mode is None or out is None:
        given = {"--corpus": corpus, "--queries": queries, "--qrels": qrels, "--mode": mode}
        missing = [name for name, value in {**given, "--out": out}.items() if value is None]
        _fail(f"missing {', '.join(missing)} (see `techmatch eval --help`)")
    if run is not None and config:
        _fail(
            "--run evaluates a run file; --config chooses Matcher configurations: "
            "give one or the other"
        )
    try:
        ks = parse_ks(k)
        top = scale_top if scale_top is not None else max(label_scale(load_qrels(qrels)))
        request = EvalRequest(
            corpus=corpus,
            queries=queries,
            qrels=qrels,
            mode=mode,
            out=out,
            settings=MetricSettings(strong_min=strong_min, scale_top=top, ks=ks),
            bootstrap=BootstrapSettings(n_resamples=bootstrap_samples, seed=seed),
            configs=tuple(parse_configs(config)),
            run=run,
            index_dir=index_dir,
            use_cache=not no_cache,
        )
        evaluation, paths = run_evaluation(request, command=sys.argv)
    except _EXPECTED_ERRORS as error:
        _fail(str(error))
    typer.echo(
        f"{evaluation.mode} mode, {evaluation.n_queries} judged queries (* = default configuration)"
    )
    typer.echo(_summary(evaluation))
    typer.echo(f"reports: {paths.json}, {paths.markdown}, {paths.html}")


@app.command("export-candidates")
def export_candidates(
    needs: Annotated[
        Path, typer.Option(help="needs to find candidates for (.jsonl BEIR/native or .csv)")
    ],
    index_dir: Annotated[Path, typer.Option(help="a saved index (techmatch index build)")],
    out: Annotated[Path, typer.Option(help="pool CSV to grade in a spreadsheet")],
    top_k: Annotated[int, typer.Option(help="results per need and configuration")] = 20,
    config: Annotated[
        list[str] | None,
        typer.Option(help="configurations to pool; repeat for several (default: all of them)"),
    ] = None,
    exclude_qrels: Annotated[
        Path | None, typer.Option(help="qrels of pairs already graded, left out of the pool")
    ] = None,
) -> None:
    """Write the union of each configuration's top-k per need, with a label column to fill in."""
    try:
        needs_list = load_needs(needs).records
        exclude = load_qrels(exclude_qrels) if exclude_qrels else None
        app_settings = Settings()
        matcher = Matcher.load(index_dir, make_encoder(app_settings))
        configs = parse_configs(config) if config else list(matcher.configs)
        rows = build_pool(matcher, needs_list, top_k=top_k, configs=configs, exclude=exclude)
        count = write_pool(rows, out)
    except _EXPECTED_ERRORS as error:
        _fail(str(error))
    typer.echo(
        f"wrote {count} pairs for {len(needs_list)} needs to {out} "
        f"(pooled from {', '.join(configs)}); "
        "fill in the label column (0 无相关, 1 弱相关, 2 较强相关, 3 强相关) and run "
        "`techmatch eval import-labels`"
    )


@app.command("import-labels")
def import_labels_command(
    pool: Annotated[Path, typer.Argument(help="the graded pool CSV")],
    out: Annotated[Path, typer.Option(help="qrels TSV to write")],
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl: result ids must exist here")],
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl: need ids must exist here")],
    min_label: Annotated[int, typer.Option(help="smallest allowed label")] = 0,
    max_label: Annotated[int, typer.Option(help="largest allowed label")] = 3,
    skip_blank: Annotated[
        bool, typer.Option("--skip-blank", help="skip ungraded rows instead of failing")
    ] = False,
) -> None:
    """Validate graded labels (unknown ids, labels out of range, duplicates) and write qrels."""
    try:
        rules = LabelRules(
            query_ids=set(load_queries(queries)),
            corpus_ids=set(load_corpus(corpus)),
            min_label=min_label,
            max_label=max_label,
            skip_blank=skip_blank,
        )
        summary = import_labels(pool, out, rules)
    except _EXPECTED_ERRORS as error:
        _fail(str(error))
    counts = ", ".join(f"label {label}: {count}" for label, count in summary.label_counts.items())
    skipped = f"; {summary.skipped_blank} ungraded rows skipped" if summary.skipped_blank else ""
    typer.echo(
        f"wrote {summary.pairs} pairs for {summary.queries} needs to {out} ({counts}){skipped}"
    )
