"""Regression figures: predicted against true per target, Bland–Altman for LVEF, R² dot plots with CIs per arm,
the information window and the paired contrasts."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..arms import REFERENCE_ARMS, arm_label, order_arms
from ..data.schema import PHENOTYPE_UNITS
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
                targets: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """A dot plot of ``metric`` per target (rows) and arm (dots, offset within a row), mean over seeds with
    its CI as a whisker: readable at any number of targets, unlike grouped bars.

    ``summary`` is the output of ``ptacl_lib.evaluate.summarise``.
    """
    sub = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    if sub.empty:
        raise ValueError(f"no summary rows for task={task!r}, metric={metric!r}")
    targets = list(targets or sub["target"].drop_duplicates())
    arms = order_arms(sub["arm"])
    colours = arm_colours(arms)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.42 * len(targets) * max(1, len(arms)) ** 0.5 + 1.4),
                             constrained_layout=True)
    step = 0.7 / max(1, len(arms))
    for i, arm in enumerate(arms):
        rows = sub[sub["arm"] == arm].set_index("target").reindex(targets)
        for y, target in enumerate(targets[::-1]):
            _dot_rows(ax, rows.loc[[target]], y, colours[arm], arm_label(arm) if y == 0 else "_",
                      offset=(len(arms) - 1) / 2 * step - i * step)
    ax.axvline(0, color="0.5", lw=0.6)
    ax.set_yticks(np.arange(len(targets)), targets[::-1])
    ax.set_xlabel(f"test {metric} (mean over seeds, 95 % bootstrap CI)")
    ax.grid(axis="x", color="0.9")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax.figure


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
        ax.axvspan(means[baseline_arm], max(ceilings), color="tab:blue", alpha=0.08, lw=0,
                   label="window: random init → ceiling")
        ax.legend(fontsize=8, frameon=False, loc="lower right")
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
