"""Reports of an evaluation: report.json, report.md and a self-contained report.html.

``report.json`` is for machines and for comparing two runs: ``metrics`` holds
the default configuration's means at the top level (``metrics["ndcg@10"]``),
``configs`` every configuration with its bootstrap intervals, ``per_query``
the value of every metric for every query, ``config`` what was measured and
``manifest`` the model, index, data-file hashes and settings.
``report.html`` is for a broker or a manager: one file, plots embedded.
"""

from __future__ import annotations

import html
import json
import math
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.datasets import atomic_write_text, sha256_file
from eval.plots import (
    calibration_figure,
    png_base64,
    precision_at_k_figure,
    score_distribution_figure,
)
from eval.runner import ConfigEvaluation, Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_SCHEMA_VERSION = 1
LIBRARIES: tuple[str, ...] = (
    "numpy",
    "torch",
    "sentence-transformers",
    "faiss-cpu",
    "bm25s",
    "jieba",
    "scikit-learn",
    "matplotlib",
)
LABEL_NAMES: dict[int, str] = {
    0: "无相关 none",
    1: "弱相关 weak",
    2: "较强相关 fairly strong",
    3: "强相关 strong",
}


@dataclass(frozen=True)
class ReportPaths:
    """Where the reports were written.

    Attributes:
        json: report.json.
        markdown: report.md.
        html: report.html.
    """

    json: Path
    markdown: Path
    html: Path


# ---------------------------------------------------------------- manifest


def describe_data_file(path: str | Path) -> dict[str, Any]:
    """Path, size and SHA-256 of a data file, so two reports can be compared.

    Args:
        path: The file.

    Returns:
        ``{"path", "bytes", "sha256"}``.
    """
    resolved = Path(path).resolve()
    return {
        "path": str(resolved),
        "bytes": resolved.stat().st_size,
        "sha256": sha256_file(resolved),
    }


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of the libraries that shape the numbers.

    Args:
        names: Distribution names.

    Returns:
        ``{name: version or None if not installed}``, plus ``python`` and ``techmatch``.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("techmatch", *names):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: Path | None = None) -> str | None:
    """The current git commit of the code, or None outside a repository or before the first commit.

    Args:
        directory: Where to ask; the package's folder by default.

    Returns:
        The commit hash, with ``-dirty`` appended when there are uncommitted changes.
    """
    directory = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    suffix = "-dirty" if status.returncode == 0 and status.stdout.strip() else ""
    return commit.stdout.strip() + suffix


def build_manifest(
    *,
    data_files: Mapping[str, str | Path | None],
    model: Mapping[str, Any] | None = None,
    index: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    command: Sequence[str] | None = None,
    elapsed_seconds: float | None = None,
) -> dict[str, Any]:
    """What was measured: model, index, data files with hashes, settings, time, versions.

    Args:
        data_files: ``{role: path}``, e.g. corpus, queries, qrels, run; None entries are skipped.
        model: Encoder description, at least its ``fingerprint``.
        index: Index description (its manifest, or how it was built).
        settings: Settings in effect.
        command: The command line.
        elapsed_seconds: Wall time of the evaluation.

    Returns:
        A JSON-serialisable manifest.
    """
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": dict(model or {}),
        "index": dict(index or {}),
        "data_files": {
            role: describe_data_file(path) for role, path in data_files.items() if path is not None
        },
        "settings": dict(settings or {}),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "command": list(command) if command is not None else None,
        "elapsed_seconds": elapsed_seconds,
    }


# ---------------------------------------------------------------- report.json


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN; null says "undefined" without breaking strict parsers.
    return value if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def summarise_scores(scores: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and quantiles of the scores of one label.

    Args:
        scores: Scores.

    Returns:
        ``{"count", "mean", "p10", "p50", "p90"}``; statistics are None without scores.
    """
    if not scores:
        return {"count": 0, "mean": None, "p10": None, "p50": None, "p90": None}
    array = np.asarray(scores, dtype=np.float64)
    p10, p50, p90 = np.percentile(array, [10, 50, 90])
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
    }


def _config_section(result: ConfigEvaluation) -> dict[str, Any]:
    return {
        "metrics": result.metrics,
        "ci95": {name: list(interval) for name, interval in result.cis.items()},
        "n_queries": len(result.per_query),
        "missing_queries": result.missing_queries,
        "calibration": [asdict(row) for row in result.calibration],
        "reliability": [asdict(row) for row in result.reliability],
        "score_by_label": {
            str(label): summarise_scores(scores) for label, scores in result.scores_by_label.items()
        },
    }


def build_report(evaluation: Evaluation, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The content of report.json.

    Args:
        evaluation: The evaluation.
        manifest: Output of :func:`build_manifest`.

    Returns:
        A JSON-serialisable dict with keys ``metrics``, ``configs``,
        ``comparisons``, ``per_query``, ``config`` and ``manifest``.
    """
    default = evaluation.configs[evaluation.default_config]
    report = {
        "metrics": default.metrics,
        "configs": {name: _config_section(result) for name, result in evaluation.configs.items()},
        "comparisons": [asdict(comparison) for comparison in evaluation.comparisons],
        "per_query": {name: result.per_query for name, result in evaluation.configs.items()},
        "config": {
            "mode": evaluation.mode,
            "default_config": evaluation.default_config,
            "configs": list(evaluation.configs),
            "strong_min": evaluation.settings.strong_min,
            "scale_top": evaluation.settings.scale_top,
            "ks": sorted(set(evaluation.settings.ks)),
            "n_queries": evaluation.n_queries,
            "label_scale": evaluation.label_scale,
            "label_counts": evaluation.label_counts,
            "bootstrap": asdict(evaluation.bootstrap),
        },
        "manifest": dict(manifest),
    }
    return _clean(report)


# ---------------------------------------------------------------- tables


def headline_metrics(ks: Sequence[int], mode: str) -> list[str]:
    """The metrics shown in the report tables.

    Args:
        ks: Cut-offs.
        mode: ``rerank`` or ``retrieve``; ``judged@k`` is shown in retrieve
            mode only (in rerank mode it is 1 by construction).

    Returns:
        Metric names.
    """
    ordered = sorted(set(ks))
    names = [f"strong_precision@{k}" for k in ordered]
    names += [f"strict_precision@{ordered[0]}"]
    deepest = ordered[-1]
    names += [f"ndcg@{deepest}", f"mrr@{deepest}", f"recall@{deepest}"]
    if mode == "retrieve":
        names.append(f"judged@{deepest}")
    return names


def _key_comparison_metrics(ks: Sequence[int]) -> list[str]:
    ordered = sorted(set(ks))
    return [f"strong_precision@{ordered[0]}", f"ndcg@{ordered[-1]}"]


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _fmt_p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the same content as report.json, for reading in a terminal or a PR.

    Args:
        report: Output of :func:`build_report`.

    Returns:
        Markdown text.
    """
    config = report["config"]
    manifest = report["manifest"]
    metrics = headline_metrics(config["ks"], config["mode"])
    lines = [
        "# techmatch relevance evaluation",
        "",
        (
            f"- mode: **{config['mode']}**, {config['n_queries']} judged queries, "
            f"strongly related = label ≥ {config['strong_min']}, "
            f"strict = label {config['scale_top']}"
        ),
        f"- default configuration: **{config['default_config']}**",
        f"- model: `{manifest.get('model', {}).get('fingerprint', 'n/a')}`",
        f"- created: {manifest.get('created_at', 'n/a')}",
        "",
        "## Metrics (mean over queries, 95% bootstrap interval)",
        "",
        "| configuration | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, section in report["configs"].items():
        cells = []
        for metric in metrics:
            low, high = section["ci95"].get(metric, [None, None])
            cells.append(
                f"{_fmt(section['metrics'].get(metric))} [{_fmt(low, 2)}, {_fmt(high, 2)}]"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    key_metrics = _key_comparison_metrics(config["ks"])
    comparisons = [c for c in report["comparisons"] if c["metric"] in key_metrics]
    if comparisons:
        lines += [
            "",
            "## Paired comparisons (B − A, paired bootstrap over queries)",
            "",
            "| A | B | metric | A | B | B − A | 95% interval | p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            lines.append(
                f"| {c['config_a']} | {c['config_b']} | {c['metric']} | {_fmt(c['mean_a'])} | "
                f"{_fmt(c['mean_b'])} | {_fmt(c['diff'])} | [{_fmt(c['ci_low'])}, "
                f"{_fmt(c['ci_high'])}] | {_fmt_p(c['p_value'])} |"
            )
    lines += ["", "## Tier calibration (true-label distribution per predicted tier)", ""]
    scale = [str(label) for label in config["label_scale"]]
    any_tiers = False
    for name, section in report["configs"].items():
        if not section["calibration"]:
            continue
        any_tiers = True
        lines += [
            f"### {name}",
            "",
            "| tier | n | " + " | ".join(f"label {s}" for s in scale) + " | share ≥ strong |",
            "|---|---|" + "---|" * len(scale) + "---|",
        ]
        for row in section["calibration"]:
            counts = row["label_counts"]
            shares = [f"{counts.get(s, 0)} ({counts.get(s, 0) / row['count']:.0%})" for s in scale]
            lines.append(
                f"| {row['tier']} | {row['count']} | "
                + " | ".join(shares)
                + f" | {_fmt(row['strong_share'])} |"
            )
        lines.append("")
    if not any_tiers:
        lines += ["No configuration predicted tiers.", ""]
    lines += ["## Data files", "", "| role | sha256 | path |", "|---|---|---|"]
    for role, described in manifest.get("data_files", {}).items():
        lines.append(f"| {role} | `{described['sha256'][:16]}…` | {described['path']} |")
    lines += [
        "",
        "Per-query values and the full manifest are in report.json.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- report.html

_CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
margin:2rem auto;max-width:1200px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
.ci{color:#777;font-size:.8rem}.muted{color:#666}.headline{font-size:2.6rem;font-weight:700}
.card{display:inline-block;border:1px solid #ddd;border-radius:8px;padding:.8rem 1.2rem;
margin:.3rem}
img{max-width:100%}code{font-size:.85rem}td.text{text-align:left;max-width:420px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(alt: str, figure: Figure) -> str:
    # Embedded, so the page is one file that opens offline.
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{png_base64(figure)}">'


def _metric_table_html(report: Mapping[str, Any], metrics: Sequence[str]) -> str:
    # One row per metric, one column per configuration: stays narrow with many metrics.
    names = list(report["configs"])
    default = report["config"]["default_config"]
    head = "".join(f"<th>{_e(name)}{' ★' if name == default else ''}</th>" for name in names)
    rows = []
    for metric in metrics:
        cells = []
        for name in names:
            section = report["configs"][name]
            low, high = section["ci95"].get(metric, [None, None])
            cells.append(
                f"<td>{_fmt(section['metrics'].get(metric))} "
                f"<span class=ci>[{_fmt(low, 2)}, {_fmt(high, 2)}]</span></td>"
            )
        rows.append(f"<tr><td>{_e(metric)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _comparison_table_html(report: Mapping[str, Any]) -> str:
    key_metrics = _key_comparison_metrics(report["config"]["ks"])
    rows = []
    for c in report["comparisons"]:
        if c["metric"] not in key_metrics:
            continue
        rows.append(
            f"<tr><td>{_e(c['config_b'])} vs {_e(c['config_a'])}</td><td>{_e(c['metric'])}</td>"
            f"<td>{_fmt(c['mean_a'])}</td><td>{_fmt(c['mean_b'])}</td><td>{_fmt(c['diff'])}</td>"
            f"<td>[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]</td>"
            f"<td>{_fmt_p(c['p_value'])}</td></tr>"
        )
    if not rows:
        return "<p class=muted>Only one configuration was evaluated.</p>"
    return (
        "<table><tr><th>B vs A</th><th>metric</th><th>A</th><th>B</th><th>B − A</th>"
        "<th>95% interval</th><th>p</th></tr>" + "".join(rows) + "</table>"
    )


def _calibration_tables_html(report: Mapping[str, Any]) -> str:
    scale = [str(label) for label in report["config"]["label_scale"]]
    parts = []
    for name, section in report["configs"].items():
        if not section["calibration"]:
            continue
        head = "".join(f"<th>label {s}</th>" for s in scale)
        rows = []
        for row in section["calibration"]:
            counts = row["label_counts"]
            cells = "".join(
                f"<td>{counts.get(s, 0)} "
                f"<span class=ci>({counts.get(s, 0) / row['count']:.0%})</span></td>"
                for s in scale
            )
            rows.append(
                f"<tr><td>{_e(row['tier'])}</td><td>{row['count']}</td>{cells}"
                f"<td>{_fmt(row['strong_share'])}</td></tr>"
            )
        parts.append(
            f"<h3>{_e(name)}</h3><table><tr><th>predicted tier</th><th>n</th>{head}"
            f"<th>share ≥ {report['config']['strong_min']}</th></tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


def _per_query_html(report: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    ks = report["config"]["ks"]
    metrics = [f"strong_precision@{ks[0]}", f"ndcg@{ks[-1]}"]
    configs = list(report["configs"])
    head = "".join(f"<th>{_e(name)}<br>{_e(metric)}</th>" for name in configs for metric in metrics)
    rows = []
    for query_id in sorted(report["per_query"][configs[0]]):
        cells = "".join(
            f"<td>{_fmt(report['per_query'][name][query_id][metric], 2)}</td>"
            for name in configs
            for metric in metrics
        )
        title = titles.get(query_id, "")
        rows.append(
            f"<tr><td><code>{_e(query_id[:8])}</code></td>"
            f"<td class=text>{_e(title)}</td>{cells}</tr>"
        )
    return (
        f"<details><summary>{len(rows)} queries</summary><table><tr><th>query</th><th>title</th>"
        f"{head}</tr>{''.join(rows)}</table></details>"
    )


def _manifest_html(manifest: Mapping[str, Any]) -> str:
    files = "".join(
        # A 64-character hash does not wrap; the prefix identifies it, the tooltip has it whole.
        f"<tr><td>{_e(role)}</td><td class=text title='{_e(d['sha256'])}'>"
        f"<code>{_e(d['sha256'][:16])}…</code></td><td class=text>{_e(d['path'])}</td></tr>"
        for role, d in manifest.get("data_files", {}).items()
    )
    model = manifest.get("model", {})
    return (
        f"<p>Model: <code>{_e(model.get('fingerprint', 'n/a'))}</code><br>"
        f"Code: <code>{_e(manifest.get('git_commit') or 'n/a')}</code> · "
        f"created {_e(manifest.get('created_at', 'n/a'))}</p>"
        f"<table><tr><th>data file</th><th>sha256</th><th>path</th></tr>{files}</table>"
        f"<details><summary>full manifest</summary><pre>"
        f"{_e(json.dumps(manifest, ensure_ascii=False, indent=1))}</pre></details>"
    )


def render_html(report: Mapping[str, Any], evaluation: Evaluation) -> str:
    """report.html: one self-contained page (CSS inline, plots as base64 PNG).

    Args:
        report: Output of :func:`build_report`.
        evaluation: The evaluation (raw scores for the plots).

    Returns:
        HTML text.
    """
    config = report["config"]
    default_name = config["default_config"]
    default = report["configs"][default_name]
    first_k = config["ks"][0]
    strong_min = config["strong_min"]
    headline = default["metrics"].get(f"strong_precision@{first_k}")
    low, high = default["ci95"].get(f"strong_precision@{first_k}", [None, None])
    metrics = headline_metrics(config["ks"], config["mode"])
    calibration = calibration_figure(evaluation)
    label_counts = ", ".join(
        f"{label} {LABEL_NAMES.get(int(label), '')}: {count}"
        for label, count in config["label_counts"].items()
    )
    mode_text = (
        "each need's judged candidates were ranked, so every ranked result has a label"
        if config["mode"] == "rerank"
        else "the whole corpus was searched; unjudged results count as not relevant, "
        "so the figures are lower bounds (see judged@k)"
    )
    calibration_html = (
        _img("calibration", calibration) + _calibration_tables_html(report)
        if calibration is not None
        else "<p class=muted>No configuration predicted tiers: nothing to calibrate.</p>"
    )
    body = f"""
<h1>techmatch relevance evaluation</h1>
<p class=muted>{_e(config["mode"])} mode: {_e(mode_text)}. {config["n_queries"]} judged needs;
labels {_e(label_counts)}.</p>
<div class=card><div class=muted>strongly related at rank {first_k}, configuration
<b>{_e(default_name)}</b></div><div class=headline>{_fmt(headline)}</div>
<div class=ci>95% interval [{_fmt(low, 2)}, {_fmt(high, 2)}]</div></div>
<p>Read: for a share {_fmt(headline, 2)} of the needs, the top {first_k} result was judged
strongly related (label ≥ {strong_min}) by the experts.</p>
<h2>Metrics per configuration</h2>
{_metric_table_html(report, metrics)}
<p class=ci>Mean over needs; below, the 95% bootstrap interval over needs
({config["bootstrap"]["n_resamples"]} resamples, seed {config["bootstrap"]["seed"]}). ★ default.</p>
<h2>Precision at k</h2>
{_img("precision at k", precision_at_k_figure(evaluation))}
<h2>Is the difference real? (paired bootstrap)</h2>
{_comparison_table_html(report)}
<h2>Score distribution by true label</h2>
<p class=muted>A good score separates the labels: higher boxes for higher labels.</p>
{_img("score distribution", score_distribution_figure(evaluation))}
<h2>Calibration of predicted tiers</h2>
{calibration_html}
<h2>Per need</h2>
{_per_query_html(report, evaluation.query_titles)}
<h2>What was measured</h2>
{_manifest_html(report["manifest"])}
<h2>Definitions</h2>
<ul>
<li><b>strong_precision@k</b>: share of the top k with label ≥ {strong_min}
(较强相关 or 强相关), divided by k.</li>
<li><b>strict_precision@k</b>: share of the top k with label {config["scale_top"]} (强相关).</li>
<li><b>ndcg@k</b>: gains 2<sup>label</sup>−1, ideal order from all of the need's labels;
a need whose labels are all 0 counts 0.</li>
<li><b>mrr@k</b>, <b>recall@k</b>: relevant = label ≥ {strong_min}; 0 for a need without one.</li>
<li><b>judged@k</b>: share of the top k that has any label.</li>
</ul>
"""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>techmatch relevance evaluation</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def write_reports(
    evaluation: Evaluation, manifest: Mapping[str, Any], out_dir: str | Path
) -> ReportPaths:
    """Write report.json, report.md and report.html into ``out_dir``.

    Args:
        evaluation: The evaluation.
        manifest: Output of :func:`build_manifest`.
        out_dir: Target folder (created if needed).

    Returns:
        The three paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(evaluation, manifest)
    paths = ReportPaths(
        json=out / "report.json", markdown=out / "report.md", html=out / "report.html"
    )
    atomic_write_text(
        paths.json, json.dumps(report, ensure_ascii=False, indent=1, allow_nan=False) + "\n"
    )
    atomic_write_text(paths.markdown, render_markdown(report))
    atomic_write_text(paths.html, render_html(report, evaluation))
    return paths
