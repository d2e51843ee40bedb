"""Plots of an evaluation, as pure functions: an :class:`Evaluation` in, a matplotlib Figure out.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through
``pyplot``, so nothing global (no backend, no open-figure registry) is touched
and the functions are safe in a server or a test run. :func:`png_base64`
turns a figure into the base64 PNG that report.html embeds.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps, font_manager, rc_context
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from eval.runner import Evaluation

# Family names matplotlib may know a CJK font by, best first.
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
# File-name fragments of the same fonts, for fonts installed after matplotlib built its cache.
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


def plot_style() -> dict[str, Any]:
    """Matplotlib settings shared by every plot of the report.

    Returns:
        rcParams for :func:`matplotlib.rc_context`, with a CJK font first when one is installed.
    """
    style: dict[str, Any] = {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False}
    font = _cjk_font()
    if font:
        # Tier names may be Chinese; without a CJK font they would render as boxes.
        style["font.sans-serif"] = [font, "DejaVu Sans"]
    return style


def png_base64(figure: Figure) -> str:
    """Render a figure as PNG, base64-encoded for a ``data:image/png;base64,`` URL.

    Args:
        figure: The figure.

    Returns:
        ASCII base64 text.
    """
    buffer = io.BytesIO()
    # Font families are resolved when the figure is drawn, so the style applies here too.
    with rc_context(plot_style()), warnings.catch_warnings():
        # Without a CJK font, Chinese tier names become boxes: one warning per glyph is noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def label_colours(count: int) -> list[tuple[float, float, float, float]]:
    """Colours of the labels of a scale, red (lowest) to green (highest).

    Args:
        count: Labels in the scale.

    Returns:
        One RGBA colour per label, lowest label first.
    """
    cmap = colormaps["RdYlGn"]
    return [cmap(0.1 + 0.8 * index / max(1, count - 1)) for index in range(count)]


def precision_at_k_figure(evaluation: Evaluation) -> Figure:
    """Strong precision, strict precision and nDCG at each cut-off, per configuration.

    Args:
        evaluation: The evaluation.

    Returns:
        A figure with one panel per metric family; bars are the 95% bootstrap intervals.
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
    with rc_context(plot_style()):
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
    return figure


def score_distribution_figure(evaluation: Evaluation) -> Figure:
    """Box plots of the ranking score of judged results, by true label, per configuration.

    Args:
        evaluation: The evaluation.

    Returns:
        A figure with one panel per configuration, at most four to a row.
    """
    results = list(evaluation.configs.values())
    columns = min(4, len(results))
    rows = math.ceil(len(results) / columns)
    with rc_context(plot_style()):
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
    return figure


def calibration_figure(evaluation: Evaluation) -> Figure | None:
    """True-label shares per predicted tier (stacked bars), per configuration with tiers.

    Args:
        evaluation: The evaluation.

    Returns:
        A figure with one panel per configuration that predicted tiers, or
        None when none did.
    """
    results = [result for result in evaluation.configs.values() if result.calibration]
    if not results:
        return None
    scale = evaluation.label_scale
    colours = dict(zip(scale, label_colours(len(scale)), strict=True))
    with rc_context(plot_style()):
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
    return figure
