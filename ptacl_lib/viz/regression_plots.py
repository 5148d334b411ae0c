"""Regression figures: predicted against true per target, Bland–Altman for LVEF, R² dot plots with CIs per arm,
the information window and the paired contrasts."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..arms import REFERENCE_ARMS, arm_label, order_arms
from ..data.schema import PHENOTYPE_UNITS
from ..evaluate.power import VarianceParts
from ..evaluate.regression import ProbeResult
from .colours import arm_colours


def predicted_vs_true(results: Mapping[str, ProbeResult], targets: Sequence[str] | None = None,
                      n_cols: int = 3, panel_size: float = 3.0) -> Figure:
    """One panel per target: test predictions against truth for each arm, with the identity line."""
    arms = list(results)
    if not arms:
        raise ValueError("no probe results to plot")
    targets = list(targets or results[arms[0]].targets)
    colours = arm_colours(arms)
    n_rows = int(np.ceil(len(targets) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel_size * n_cols, panel_size * n_rows),
                             squeeze=False, constrained_layout=True)
    for ax, target in zip(axes.flat, targets):
        lows, highs = [], []
        for arm in arms:
            res = results[arm]
            j = res.targets.index(target)
            ax.scatter(res.truth[:, j], res.predictions[:, j], s=8, alpha=0.6, color=colours[arm],
                       label=arm_label(arm), linewidths=0)
            lows.append(min(res.truth[:, j].min(), res.predictions[:, j].min()))
            highs.append(max(res.truth[:, j].max(), res.predictions[:, j].max()))
        lo, hi = min(lows), max(highs)
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        unit = PHENOTYPE_UNITS.get(target, "")
        ax.set_title(target)
        ax.set_xlabel(f"true ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, frameon=False)
    return fig


def bland_altman(results: Mapping[str, ProbeResult], target: str = "lvef", panel_size: float = 3.2) -> Figure:
    """Bland–Altman per arm: predicted − true against their mean, with the bias and 95 % limits of agreement."""
    arms = list(results)
    colours = arm_colours(arms)
    fig, axes = plt.subplots(1, len(arms), figsize=(panel_size * len(arms), panel_size), squeeze=False,
                             sharey=True, constrained_layout=True)
    unit = PHENOTYPE_UNITS.get(target, "")
    for ax, arm in zip(axes[0], arms):
        res = results[arm]
        j = res.targets.index(target)
        mean = (res.predictions[:, j] + res.truth[:, j]) / 2
        diff = res.predictions[:, j] - res.truth[:, j]
        bias, spread = float(diff.mean()), 1.96 * float(diff.std(ddof=1))
        ax.scatter(mean, diff, s=8, alpha=0.6, color=colours[arm], linewidths=0)
        for level, style in ((bias, "-"), (bias - spread, "--"), (bias + spread, "--")):
            ax.axhline(level, color="black", lw=0.8, ls=style)
        ax.set_title(f"{arm_label(arm)}\nbias {bias:+.1f}, LoA ±{spread:.1f} {unit}", fontsize=9)
        ax.set_xlabel(f"mean of predicted and true {target} ({unit})")
    axes[0, 0].set_ylabel(f"predicted − true ({unit})")
    return fig


def _dot_rows(ax: Axes, rows: pd.DataFrame, y: float, colour: str, label: str, offset: float = 0.0) -> None:
    """One dot per summary row at height ``y + offset``, with its CI as a horizontal whisker where it has one."""
    mean = rows["mean"].to_numpy(dtype=float)
    low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    err = np.vstack([mean - low, high - mean])
    ax.errorbar(mean, np.full(len(mean), y) + offset, xerr=np.where(np.isfinite(err), err, 0), fmt="o",
                color=colour, markersize=5, elinewidth=1.2, capsize=2, label=label)


def metric_dots(summary: pd.DataFrame, metric: str = "r2", task: str = "regression",
                targets: Sequence[str] | None = None, n_cols: int = 4) -> Figure:
    """A grid of small dot plots, one panel per target: one row per arm, the mean over seeds as a dot with its
    CI as a whisker. Readable at a glance at any number of targets, unlike one long row of grouped bars.

    ``summary`` is the output of ``ptacl_lib.evaluate.summarise``.
    """
    sub = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    if sub.empty:
        raise ValueError(f"no summary rows for task={task!r}, metric={metric!r}")
    targets = list(targets or sub["target"].drop_duplicates())
    arms = order_arms(sub["arm"])
    colours = arm_colours(arms)
    n_cols = min(n_cols, len(targets))
    n_rows = -(-len(targets) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.5 * n_cols + 1.6, (0.2 * len(arms) + 1.1) * n_rows),
                             sharey=True, squeeze=False, constrained_layout=True)
    y = np.arange(len(arms))[::-1]
    for ax, target in zip(axes.flat, targets):
        rows = sub[sub["target"] == target].set_index("arm")
        for yi, arm in zip(y, arms):
            if arm in rows.index:
                _dot_rows(ax, rows.loc[[arm]], yi, colours[arm], "_")
        ax.axvline(0, color="0.5", lw=0.6)
        ax.set_title(target, fontsize=10)
        ax.grid(axis="x", color="0.9")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(y, [arm_label(a) for a in arms])
    fig.supxlabel(f"test {metric}: mean over seeds, 95 % bootstrap CI", fontsize=9)
    return fig


def window_chart(summary: pd.DataFrame, target: str = "mean", baseline_arm: str = "none") -> Figure:
    """The information window: each arm's test R² (``target``, default the mean over phenotypes) with its CI,
    against the reference rows (``REFERENCE_ARMS``), the random-init baseline and the best ceiling shaded.

    ``summary`` is the output of ``ptacl_lib.evaluate.summarise`` over the arms and the ceiling rows.
    """
    sub = summary[(summary["task"] == "regression") & (summary["metric"] == "r2") & (summary["target"] == target)]
    if sub.empty:
        raise ValueError(f"no regression R² rows for target {target!r}")
    arms = order_arms(sub["arm"])
    colours = arm_colours(arms)
    fig, ax = plt.subplots(figsize=(6.4, 0.38 * len(arms) + 1.3), constrained_layout=True)
    for y, arm in enumerate(arms[::-1]):
        reference = arm in REFERENCE_ARMS and arm != "cmr_probe"
        _dot_rows(ax, sub[sub["arm"] == arm], y, "0.35" if reference else colours[arm], "_")
    means = sub.set_index("arm")["mean"]
    ceilings = [means[a] for a in arms if a in REFERENCE_ARMS and a != "cmr_probe"]
    if baseline_arm in means and ceilings:
        ax.axvspan(means[baseline_arm], max(ceilings), color="tab:blue", alpha=0.08, lw=0)
        ax.set_title("shaded: the window from random init to the best ceiling", fontsize=9, loc="left")
    ax.set_yticks(np.arange(len(arms)), [arm_label(a) for a in arms[::-1]])
    ax.set_xlabel(f"test R² ({'mean over phenotypes' if target == 'mean' else target}; 95 % CI over seeds)")
    ax.grid(axis="x", color="0.9")
    return fig


def plot_paired_differences(paired: pd.DataFrame) -> Figure:
    """Forest plot of paired R² differences (``evaluate.bootstrap``): one panel per contrast, one row per
    target, the point estimate with its subject-and-seed CI, and the zero line."""
    contrasts = list(dict.fromkeys(zip(paired["arm"], paired["reference"])))
    fig, axes = plt.subplots(1, len(contrasts), figsize=(4.2 * len(contrasts), 0.35 * paired["target"].nunique() + 1.5),
                             sharey=True, squeeze=False)
    for ax, (arm, reference) in zip(axes[0], contrasts):
        rows = paired[(paired["arm"] == arm) & (paired["reference"] == reference)].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        for yi, row in zip(y, rows.itertuples()):
            colour = "crimson" if row.target == "mean" else "0.25"
            ax.errorbar([row.mean_difference], [yi], xerr=[[row.mean_difference - row.ci_low],
                                                          [row.ci_high - row.mean_difference]],
                        fmt="o", color=colour, markersize=4, elinewidth=1.2, capsize=2)
        ax.axvline(0, color="0.5", lw=0.8, ls="--")
        ax.set_yticks(y, rows["target"])
        ax.set(title=f"{arm_label(arm)} − {arm_label(reference)}", xlabel="Δ test R²")
    fig.tight_layout()
    return fig


def plot_power(parts: VarianceParts, targets: Sequence[float] = (0.02, 0.01), seeds: Sequence[int] = (3, 5, 10, 20),
               max_subjects: int = 30_000) -> Figure:
    """The planner's detectable difference against test subjects (log axis), one line per number of seeds,
    with the differences to resolve as dashed lines and the pilot study as a dot."""
    subjects = np.unique(np.geomspace(max(50, parts.n_subjects // 4), max_subjects, 60).astype(int))
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(seeds)))
    for colour, s in zip(colours, seeds):
        ax.plot(subjects, [parts.mdd(s, int(n)) for n in subjects], color=colour, lw=1.6, label=f"{s} seeds")
    for target in targets:
        ax.axhline(target, color="0.4", lw=0.8, ls="--")
        ax.text(subjects[-1], target, f" {target:g}", va="center", fontsize=8, color="0.3")
    ax.plot([parts.n_subjects], [parts.mdd(parts.n_seeds, parts.n_subjects)], "o", color="crimson",
            label=f"this study ({parts.n_seeds} seeds, {parts.n_subjects:,} subjects)")
    ax.set_xscale("log")
    ax.set(xlabel="test subjects", ylabel="smallest detectable difference\n(mean R², 80 % power)", ylim=(0, None))
    ax.grid(color="0.9")
    ax.legend(fontsize=8, frameon=False)
    return fig
