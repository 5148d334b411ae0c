"""The evaluation figures draw what they are given: identity lines, bias lines, bar heights, card layout."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ptacl_lib.evaluate.regression import ProbeResult  # noqa: E402
from ptacl_lib.viz.regression_plots import bland_altman, metric_dots, predicted_vs_true, window_chart  # noqa: E402
from ptacl_lib.viz.retrieval_cards import mid_systole_frame, retrieval_card  # noqa: E402
from ptacl_lib.viz.umap_views import plot_umap_grid  # noqa: E402

RNG = np.random.default_rng(0)
TRUTH = RNG.normal(60, 8, size=(30, 2))
RESULT = ProbeResult(targets=("lvef", "lvm"), predictions=TRUTH + RNG.normal(2, 3, size=TRUTH.shape), truth=TRUTH)


def teardown_function() -> None:
    plt.close("all")


def test_predicted_vs_true_has_an_identity_line_per_target() -> None:
    fig = predicted_vs_true({"ptacl": RESULT}, n_cols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["lvef", "lvm"]
    for ax in visible:
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), line.get_ydata())


def test_bland_altman_bias_is_the_mean_difference() -> None:
    fig = bland_altman({"global": RESULT, "ptacl": RESULT}, target="lvef")
    assert len(fig.axes) == 2
    levels = sorted(line.get_ydata()[0] for line in fig.axes[0].get_lines())
    diff = RESULT.predictions[:, 0] - RESULT.truth[:, 0]
    np.testing.assert_allclose(levels, [diff.mean() - 1.96 * diff.std(ddof=1), diff.mean(),
                                        diff.mean() + 1.96 * diff.std(ddof=1)])


def test_metric_dots_grid_has_a_panel_per_target_and_dots_follow_the_summary() -> None:
    summary = pd.DataFrame({"arm": ["ptacl", "ptacl", "global", "global"], "task": "regression",
                            "target": ["lvef", "lvm"] * 2, "metric": "r2", "n": 3,
                            "mean": [0.5, 0.6, 0.3, 0.4], "ci_low": [0.4, 0.5, 0.2, 0.3],
                            "ci_high": [0.55, 0.7, 0.35, 0.5]})
    fig = metric_dots(summary)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["lvef", "lvm"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["global-only (CLIP)", "PTACL"]
    lvm = panels[1]
    dots = {round(float(c.lines[0].get_ydata()[0])): float(c.lines[0].get_xdata()[0]) for c in lvm.containers}
    assert dots == {1: 0.4, 0: 0.6}  # global (first in reporting order) on the top row
    whisker = lvm.containers[0].lines[2][0].get_segments()[0]
    np.testing.assert_allclose([whisker[0][0], whisker[1][0]], [0.3, 0.5])
    wide = metric_dots(pd.concat([summary.assign(target=f"t{i}") for i in range(10)]))
    width, height = wide.get_size_inches()
    assert width / height < 3  # a grid, not one long strip
    with pytest.raises(ValueError, match="no summary rows"):
        metric_dots(summary, metric="mae")


def test_window_chart_shades_random_init_to_the_best_ceiling() -> None:
    summary = pd.DataFrame({"arm": ["none", "ptacl", "median_beat", "latent_oracle"], "task": "regression",
                            "target": "mean", "metric": "r2", "n": [5, 5, 1, 1],
                            "mean": [0.1, 0.35, 0.3, 0.5], "ci_low": [0.08, 0.3, np.nan, np.nan],
                            "ci_high": [0.12, 0.4, np.nan, np.nan]})
    fig = window_chart(summary)
    ax = fig.axes[0]
    (span,) = ax.patches
    fig.canvas.draw()
    extent = span.get_window_extent().transformed(ax.transData.inverted())
    np.testing.assert_allclose([extent.x0, extent.x1], [0.1, 0.5], atol=1e-6)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 4 and labels[-1] == "random init"  # reporting order, top to bottom
    with pytest.raises(ValueError, match="no regression R²"):
        window_chart(summary, target="lvef")


def test_umap_grid_layout_and_length_check() -> None:
    coords = {"global": RNG.normal(size=(20, 2)), "ptacl": RNG.normal(size=(20, 2))}
    colours = {"LVEF": RNG.normal(60, 8, 20), "sex": np.array(["M", "F"] * 10)}
    fig = plot_umap_grid(coords, colours)
    grid = np.array(fig.axes[:4]).reshape(2, 2)  # the panels come first, colour bars after
    assert [ax.get_title() for ax in grid[0]] == ["global-only (CLIP)", "PTACL"]
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["LVEF", "sex"]
    for ax in grid.flat:
        assert sum(len(c.get_offsets()) for c in ax.collections) == 20
    with pytest.raises(ValueError, match="disagree in number of points"):
        plot_umap_grid(coords, {"LVEF": np.zeros(5)})


class _FakeCohort:
    """Just enough of a Cohort for ``mid_systole_frame``."""

    def __init__(self, volumes: np.ndarray | None, cine: np.ndarray) -> None:
        self.volumes, self.cine = volumes, cine

    def extra(self, name: str, row: int) -> np.ndarray | None:
        return self.volumes

    def cmr(self, row: int) -> np.ndarray:
        return self.cine


def test_mid_systole_frame_from_volumes_or_image_brightness() -> None:
    lv = np.r_[np.linspace(150, 60, 21), np.linspace(60, 150, 29)]  # end-systole at frame 20
    cine = np.ones((50, 4, 4))
    cine[30] = 0.1  # darkest frame (smallest blood pool) at 30
    assert mid_systole_frame(_FakeCohort(np.vstack([lv, lv]), cine[None]), 0) == 10
    assert mid_systole_frame(_FakeCohort(None, cine[None]), 0) == 15
    outer = np.ones_like(cine)  # a multi-slice cine: its middle slice decides, not the darker outer ones
    outer[6] = 0.0
    assert mid_systole_frame(_FakeCohort(None, np.stack([outer, cine, outer])), 0) == 15


def test_retrieval_card_layout(tiny_cohort: Path) -> None:
    from ptacl_lib.data import open_cohort

    cohort = open_cohort(tiny_cohort)
    fig = retrieval_card(cohort, 0, [1, 2, 3], [0.1, 0.2, 0.3], leads=("II",))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:] == ["query (own CMR)", "#1  d=0.100", "#2  d=0.200", "#3  d=0.300"]
    assert cohort.table["subject_id"].iloc[2] in fig.axes[3].get_xlabel()
    with pytest.raises(ValueError, match="unknown leads"):
        retrieval_card(cohort, 0, [1], [0.1], leads=("X",))


def test_loss_curves_keep_one_colour_per_arm_across_panels() -> None:
    """The global and local panels hold different arm subsets; each arm keeps its registry colour in both."""
    from matplotlib.colors import to_rgb

    from ptacl_lib.viz.colours import arm_colours
    from ptacl_lib.viz.training_plots import plot_loss_curves

    rows = [{"objective": arm, "seed": 0, "epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e,
             "loss_global": 4.0 - e / 10 if arm != "ecg_ssl" else np.nan,
             "val_loss_global": 4.1 - e / 10 if arm != "ecg_ssl" else np.nan,
             "loss_local": 2.0 - e / 10 if arm == "ptacl" else np.nan, "val_loss_local": 2.5 - e / 10}
            for arm in ("global", "ptacl", "ecg_ssl") for e in (1, 2, 3)]
    fig = plot_loss_curves(pd.DataFrame(rows))
    want = arm_colours(["global", "ptacl", "ecg_ssl"])
    for ax in fig.axes[:2]:
        handles, labels = ax.get_legend_handles_labels()
        seen = {label: to_rgb(h.get_color()) for h, label in zip(handles, labels) if label in want}
        assert seen and all(np.allclose(colour, want[arm]) for arm, colour in seen.items())
    assert set(dict(zip(*reversed(fig.axes[1].get_legend_handles_labels())))) >= {"global", "ptacl"}


def test_convergence_table_gives_each_arm_its_own_last_epochs_mean_over_seeds() -> None:
    from ptacl_lib.viz.training_plots import convergence_table

    rows = [{"objective": "ptacl", "seed": s, "epoch": e, "val_loss": np.nan, "val_loss_global": 4.0 - e * e / 10 + s,
             "val_loss_local": 2.0 - e / 10} for s in (0, 1) for e in (1, 2, 3, 4, 5)]
    rows += [{"objective": "supervised", "seed": 0, "epoch": e, "val_loss": [0.9, 0.8, 0.75][e - 1],
              "val_loss_global": np.nan, "val_loss_local": np.nan} for e in (1, 2, 3)]
    table = convergence_table(pd.DataFrame(rows))
    ptacl = table.loc[("ptacl", "global InfoNCE")]
    assert (ptacl["epochs n"], ptacl["value at n"]) == (5, pytest.approx(4.0 - 2.5 + 0.5))
    assert [ptacl[f"change over n{k}"] for k in ("−2", "−1", "")] == pytest.approx([-0.5, -0.7, -0.9])
    assert table.loc[("ptacl", "local phase contrast"), "change over n"] == pytest.approx(-0.1)
    supervised = table.loc[("supervised", "baselines' own losses")]
    assert supervised["epochs n"] == 3 and np.isnan(supervised["change over n−2"])  # epoch 1 has no change
    assert [supervised["change over n−1"], supervised["change over n"]] == pytest.approx([-0.1, -0.05])
    assert ("ptacl", "baselines' own losses") not in table.index  # a contrastive arm's total is not a panel
