"""Figures of a model bundle applied to a new ECG (notebook 08): each predicted phenotype with its interval over
the reference cohort's distribution, the most similar reference patients' hearts at end-diastole and
end-systole, and an attribution map of leads x time under the ECG the model read."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..data import Cohort
from ..data.schema import LEADS, PHENOTYPE_UNITS, PHENOTYPES
from ..inference.attribution import Attribution
from .cohort_plots import draw_stacked_leads
from .retrieval_cards import _phenotype_text, end_systole_frame, mid_slice

PREDICTED = "tab:blue"


def plot_phenotypes_against_reference(prediction: pd.Series, reference: pd.DataFrame, coverage: float,
                                      title: str = "", bins: int = 30) -> Figure:
    """One panel per phenotype: the reference cohort's measured values (``reference``, a column per phenotype),
    the prediction (``prediction[name]``) and its interval (``<name>_lo``, ``<name>_hi``, a row of
    ``Predictor.predict``'s table), and the prediction's percentile among the reference values."""
    if not np.isfinite(float(prediction[PHENOTYPES[0]])):
        raise ValueError(f"no prediction to show: {prediction.get('reason', 'no phenotype values')}")
    fig, axes = plt.subplots(3, 3, figsize=(11, 8), constrained_layout=True)
    for ax, name in zip(axes.flat, PHENOTYPES):
        values = reference[name].dropna().to_numpy(dtype=float)
        ax.hist(values, bins=bins, color="0.75", density=True, label=f"reference (n={len(values)})")
        mean, lo, hi = (float(prediction[f"{name}{end}"]) for end in ("", "_lo", "_hi"))
        low_edge, high_edge = min(values.min(), mean), max(values.max(), mean)
        ax.axvspan(max(lo, low_edge - 0.1 * (high_edge - low_edge)), min(hi, high_edge + 0.1 * (high_edge - low_edge)),
                   color=PREDICTED, alpha=0.2, lw=0, label=f"{coverage:.0%} interval")
        ax.axvline(mean, color=PREDICTED, lw=2, label="prediction")
        percentile = 100.0 * float(np.mean(values < mean))
        ax.set_title(f"{name} {mean:.1f} [{lo:.1f}, {hi:.1f}] {PHENOTYPE_UNITS[name]}", fontsize=9)
        ax.set_xlabel(f"{PHENOTYPE_UNITS[name]}  (prediction at percentile {percentile:.0f} of the reference)",
                      fontsize=8)
        ax.set_yticks([])
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "Predicted phenotypes against the reference cohort")
    return fig


def cohort_rows(cohort: Cohort, neighbours: pd.DataFrame) -> list[int]:
    """The cohort rows of ``neighbours`` (``Predictor.similar``'s ``subject_id``), checked to be the same
    subjects: a cohort other than the bundle's training cohort can hold the same ids (synthetic cohorts do)
    for other people, so their measured phenotypes must match the reference set's. ``ValueError`` says why not."""
    rows = []
    for _, near in neighbours.iterrows():
        try:
            row = cohort.index_of(str(near["subject_id"]))
        except KeyError as err:
            raise ValueError(f"{near['subject_id']} is not in {cohort.manifest_path}: not the bundle's training "
                             "cohort") from err
        measured = cohort.table[list(PHENOTYPES)].iloc[row].to_numpy(dtype=float)
        if not np.allclose(measured, near[list(PHENOTYPES)].to_numpy(dtype=float), rtol=1e-6, equal_nan=True):
            raise ValueError(f"{near['subject_id']} in {cohort.manifest_path} has other phenotypes than in the "
                             "bundle's reference set: not the bundle's training cohort")
        rows.append(row)
    return rows


def plot_similar_patients(cohort: Cohort, neighbours: pd.DataFrame, title: str = "",
                          panel_size: float = 1.9) -> Figure:
    """Each neighbour (rows of ``Predictor.similar`` for one query) as a column: its middle short-axis slice at
    end-diastole (frame 0, the R peak) above end-systole (``end_systole_frame``), with its rank, id, embedding
    distance and measured phenotypes."""
    rows = cohort_rows(cohort, neighbours)
    fig, axes = plt.subplots(2, len(rows), figsize=(panel_size * len(rows), panel_size * 2.5),
                             constrained_layout=True, squeeze=False)
    for c, (row, (_, near)) in enumerate(zip(rows, neighbours.iterrows())):
        cine = mid_slice(cohort, row)
        for r, (phase, frame) in enumerate((("ED", 0), ("ES", end_systole_frame(cohort, row)))):
            ax = axes[r, c]
            ax.imshow(cine[frame], cmap="gray", vmin=0.0, vmax=1.0)
            ax.text(1, 1, f"{phase} (frame {frame})", color="yellow", fontsize=7, va="top")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, c].set_title(f"#{int(near['rank'])} {near['subject_id']}\nd={float(near['distance']):.3f}", fontsize=8)
        axes[1, c].set_xlabel(_phenotype_text(near), fontsize=7)
    fig.suptitle(title or "Most similar reference patients (measured on CMR)", fontsize=10)
    return fig


def plot_attribution(window: np.ndarray, attribution: Attribution, beats_s: Sequence[float] = (),
                     bin_s: float = 0.04, unit: str | None = None) -> Figure:
    """The model's input ``window`` ``[12, L]`` (one trace per lead) above the ``attribution`` summed in
    ``bin_s`` bins (leads x time, red raises the prediction, blue lowers it), with each lead's total at the
    right; ``beats_s`` (e.g. the R peaks, in seconds) are marked on both."""
    unit = unit or PHENOTYPE_UNITS.get(attribution.phenotype, "")
    binned = attribution.binned(bin_s)
    duration = window.shape[1] / attribution.fs
    fig = plt.figure(figsize=(13, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, width_ratios=[1.0, 0.14], height_ratios=[1.2, 1.0])
    traces = fig.add_subplot(grid[0, 0])
    heat = fig.add_subplot(grid[1, 0], sharex=traces)
    totals = fig.add_subplot(grid[1, 1], sharey=heat)
    draw_stacked_leads(traces, window, attribution.fs, lw=0.6, fontsize=8, label_x=-0.01 * duration)
    traces.set_title("the window the model read (band-passed, resampled, scaled per lead)", fontsize=9, loc="left")
    limit = float(np.abs(binned).max()) or 1.0
    image = heat.imshow(binned, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                        extent=(0.0, binned.shape[1] * bin_s, len(LEADS) - 0.5, -0.5))
    heat.set_yticks(range(len(LEADS)), LEADS, fontsize=8)
    heat.set_xlabel("time (s)")
    heat.set_xlim(0.0, duration)
    for t in beats_s:
        for ax in (traces, heat):
            ax.axvline(float(t), color="0.5", lw=0.6, ls=":")
    fig.colorbar(image, ax=heat, location="bottom", shrink=0.5, label=f"{attribution.phenotype} {unit} per "
                 f"{bin_s * 1000:.0f} ms")
    per_lead = binned.sum(axis=1)
    totals.barh(range(len(LEADS)), per_lead, color=np.where(per_lead >= 0, "tab:red", "tab:blue"))
    totals.axvline(0.0, color="black", lw=0.6)
    totals.set_xlabel(f"lead total ({unit})", fontsize=8)
    totals.tick_params(labelleft=False)
    fig.suptitle(f"Integrated gradients of the ensemble's {attribution.phenotype}: {attribution.prediction:.1f} {unit} "
                 f"from this ECG, {attribution.baseline_prediction:.1f} from a flat line (the map sums to "
                 f"{attribution.values.sum():+.2f}; integration error {attribution.delta:.1e})", fontsize=10)
    return fig
