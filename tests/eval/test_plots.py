"""Plots: one panel per metric family or configuration, PNG output, no tiers means no figure."""

from __future__ import annotations

import base64

from matplotlib.figure import Figure

from eval.metrics import BootstrapSettings, MetricSettings
from eval.plots import (
    calibration_figure,
    label_colours,
    png_base64,
    precision_at_k_figure,
    score_distribution_figure,
)
from eval.runner import Evaluation, RankedResult, evaluate_configs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QRELS = {"q1": {"a": 3, "b": 0, "c": 1}, "q2": {"a": 0, "b": 2, "c": 2}}


def _evaluation(configs: int, *, tier_configs: int) -> Evaluation:
    rankings = {}
    for index in range(configs):
        with_tiers = index < tier_configs
        rankings[f"c{index}"] = {
            query_id: [
                RankedResult(
                    doc,
                    float(label) - 0.1 * index,
                    tier=("强相关" if label >= 2 else "weak") if with_tiers else None,
                )
                for doc, label in sorted(labels.items(), key=lambda item: -item[1])
            ]
            for query_id, labels in QRELS.items()
        }
    return evaluate_configs(
        rankings,
        QRELS,
        mode="rerank",
        settings=MetricSettings(ks=(1, 3)),
        bootstrap=BootstrapSettings(n_resamples=20),
    )


def _panels(figure: Figure) -> list[str]:
    return [axis.get_title() for axis in figure.axes if axis.get_visible()]


def test_precision_figure_has_one_panel_per_family() -> None:
    figure = precision_at_k_figure(_evaluation(2, tier_configs=0))
    titles = _panels(figure)
    assert len(titles) == 3
    assert titles[0].startswith("strongly related precision@k") and titles[2] == "nDCG@k"
    # One error-bar series per configuration, named in the legend.
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["c0", "c1"]


def test_score_distribution_wraps_after_four_configurations() -> None:
    figure = score_distribution_figure(_evaluation(5, tier_configs=0))
    assert _panels(figure) == ["c0", "c1", "c2", "c3", "c4"]
    assert len(figure.axes) == 8  # a 2 x 4 grid, the unused panels hidden


def test_calibration_figure_only_for_configurations_with_tiers() -> None:
    assert calibration_figure(_evaluation(2, tier_configs=0)) is None
    figure = calibration_figure(_evaluation(3, tier_configs=2))
    assert figure is not None
    assert _panels(figure) == ["c0", "c1"]
    tick_labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert set(tick_labels) == {"强相关", "weak"}


def test_png_base64_is_a_png() -> None:
    encoded = png_base64(precision_at_k_figure(_evaluation(1, tier_configs=0)))
    assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_label_colours_run_from_red_to_green() -> None:
    colours = label_colours(4)
    assert len(colours) == 4
    red, green = colours[0], colours[-1]
    assert red[0] > red[1] and green[1] > green[0]
    assert label_colours(1) == [label_colours(2)[0]]
