"""Reports of an evaluation: report.json, report.md and a self-contained report.html.

``report.json`` is for machines and for comparing two runs: ``metrics`` holds
the default configuration's means at the top level (``metrics["ndcg@10"]``),
``configs`` every configuration with its bootstrap intervals, ``per_query``
the value of every metric for every query, ``config`` what was measured and
``manifest`` the model, index, data-file hashes and settings.
``report.html`` is for a broker or a manager: one file, plots embedded.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import platform
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import font_manager, rc_context
from matplotlib.figure import Figure

from eval.datasets import atomic_write_text, sha256_file
from eval.runner import ConfigEvaluation, Evaluation

REPORT_SCHEMA_VERSION = 1
# Shown first in tables; the rest stay in report.json.
HEADLINE_FAMILIES: tuple[str, ...] = (
    "strong_precision",
    "strict_precision",
    "ndcg",
    "mrr",
    "recall",
)
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
_CJK_FONTS: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)


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


# ---------------------------------------------------------------- plots


_CJK_FONT_FILES: tuple[str, ...] = (
    "wqy",
    "notosanscjk",
    "notosanssc",
    "sourcehansans",
    "simhei",
    "msyh",
)


@functools.cache
def _cjk_font() -> str | None:
    def installed() -> str | None:
        available = {entry.name for entry in font_manager.fontManager.ttflist}
        return next((name for name in _CJK_FONTS if name in available), None)

    found = installed()
    if found:
        return found
    # Matplotlib's font cache predates fonts installed later; register them directly.
    for path in font_manager.findSystemFonts():
        if any(token in Path(path).name.lower() for token in _CJK_FONT_FILES):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
    return installed()


def _plot_style() -> dict[str, Any]:
    style: dict[str, Any] = {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False}
    font = _cjk_font()
    if font:
        # Tier names may be Chinese; without a CJK font they would render as boxes.
        style["font.sans-serif"] = [font, "DejaVu Sans"]
    return style


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Without a CJK font, Chinese tier names become boxes: one warning per glyph is noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_precision_at_k(evaluation: Evaluation) -> str:
    """Strong precision, strict precision and nDCG at each cut-off, per configuration.

    Args:
        evaluation: The evaluation.

    Returns:
        A base64 PNG.
    """
    ks = sorted(set(evaluation.settings.ks))
    families = [
        (
            "strong_precision",
            f"strongly related precision@k (label ≥ {evaluation.settings.strong_min})",
        ),
        ("strict_precision", f"strict precision@k (label = {evaluation.settings.scale_top})"),
        ("ndcg", "nDCG@k"),
    ]
    with rc_context(_plot_style()):
        figure = Figure(figsize=(12, 3.8), layout="constrained")
        axes = figure.subplots(1, len(families))
        for axis, (family, title) in zip(axes, families, strict=True):
            count = len(evaluation.configs)
            for index, (name, result) in enumerate(evaluation.configs.items()):
                # Dodge the configurations sideways so that equal values stay visible.
                dodge = (index - (count - 1) / 2) * 0.12
                xs = [k + dodge for k in ks]
                means = [result.metrics[f"{family}@{k}"] for k in ks]
                lows = [result.cis[f"{family}@{k}"][0] for k in ks]
                highs = [result.cis[f"{family}@{k}"][1] for k in ks]
                errors = np.array(
                    [np.subtract(means, lows).clip(min=0), np.subtract(highs, means).clip(min=0)]
                )
                axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=name)
            axis.set_title(title, fontsize=10)
            axis.set_xlabel("k")
            axis.set_xticks(ks)
            axis.set_ylim(0, 1)
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize=9)
        return _png(figure)


def plot_score_distribution(evaluation: Evaluation) -> str:
    """Box plots of the ranking score of judged results, by true label, per configuration.

    Args:
        evaluation: The evaluation.

    Returns:
        A base64 PNG.
    """
    results = list(evaluation.configs.values())
    columns = min(4, len(results))
    rows = math.ceil(len(results) / columns)
    with rc_context(_plot_style()):
        figure = Figure(figsize=(3.1 * columns, 3.2 * rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
        for axis, result in zip(axes, results, strict=False):
            labels = [
                label for label in evaluation.label_scale if result.scores_by_label.get(label)
            ]
            data = [result.scores_by_label[label] for label in labels]
            if data:
                axis.boxplot(data, tick_labels=[str(label) for label in labels], showfliers=False)
                for position, scores in enumerate(data, start=1):
                    axis.annotate(
                        f"n={len(scores)}",
                        (position, 1.0),
                        xycoords=("data", "axes fraction"),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                    )
            else:
                axis.text(
                    0.5, 0.5, "no judged results ranked", ha="center", transform=axis.transAxes
                )
            axis.set_title(result.name, fontsize=10, pad=14)
            axis.set_xlabel("true label")
            axis.set_ylabel("score")
            axis.grid(alpha=0.3, axis="y")
        for axis in axes[len(results) :]:
            axis.set_visible(False)
        return _png(figure)


def plot_calibration(evaluation: Evaluation) -> str | None:
    """True-label shares per predicted tier (stacked bars), per configuration with tiers.

    Args:
        evaluation: The evaluation.

    Returns:
        A base64 PNG, or None when no configuration predicted tiers.
    """
    results = [result for result in evaluation.configs.values() if result.calibration]
    if not results:
        return None
    scale = evaluation.label_scale
    colours = {
        label: colour for label, colour in zip(scale, _label_colours(len(scale)), strict=True)
    }
    with rc_context(_plot_style()):
        figure = Figure(figsize=(4.0 * len(results), 3.4), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(results), squeeze=False)).ravel()
        for axis, result in zip(axes, results, strict=True):
            tiers = [row.tier for row in result.calibration]
            left = np.zeros(len(tiers))
            for label in scale:
                shares = np.array(
                    [row.label_counts.get(label, 0) / row.count for row in result.calibration]
                )
                axis.barh(tiers, shares, left=left, color=colours[label], label=f"label {label}")
                left += shares
            for position, row in enumerate(result.calibration):
                axis.text(1.01, position, f"n={row.count}", va="center", fontsize=8)
            axis.invert_yaxis()
            axis.set_xlim(0, 1)
            axis.set_xlabel("share of true labels")
            axis.set_title(result.name, fontsize=10)
        axes[0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, -0.45), ncol=len(scale))
        return _png(figure)


def _label_colours(count: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"]
    return [cmap(0.1 + 0.8 * index / max(1, count - 1)) for index in range(count)]


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
    calibration_png = plot_calibration(evaluation)
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
        f'<img alt="calibration" src="data:image/png;base64,{calibration_png}">'
        + _calibration_tables_html(report)
        if calibration_png
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
<img alt="precision at k" src="data:image/png;base64,{plot_precision_at_k(evaluation)}">
<h2>Is the difference real? (paired bootstrap)</h2>
{_comparison_table_html(report)}
<h2>Score distribution by true label</h2>
<p class=muted>A good score separates the labels: higher boxes for higher labels.</p>
<img alt="score distribution" src="data:image/png;base64,{plot_score_distribution(evaluation)}">
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
