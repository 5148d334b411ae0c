"""Figures for exploring a cohort: phenotypes, a clinical 12-lead tracing, a cine montage, and timing; and the
stacked 12-lead trace the inspector and the attribution figure draw."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..data import LEADS, PHENOTYPES, Cohort
from ..data.schema import PHENOTYPE_UNITS

# Clinical layout: four columns of three leads, 2.5 s each, then a lead-II rhythm strip.
_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def plot_phenotype_distributions(table: pd.DataFrame, hue: str = "sex") -> Figure:
    """One histogram per phenotype, split by ``hue`` (sex by default)."""
    fig, axes = plt.subplots(3, 3, figsize=(12, 9), constrained_layout=True)
    for ax, col in zip(axes.flat, PHENOTYPES):
        sns.histplot(data=table, x=col, hue=hue if hue in table else None, kde=True, ax=ax,
                     element="step", stat="density", common_norm=False)
        ax.set_xlabel(f"{col} ({PHENOTYPE_UNITS[col]})")
    fig.suptitle(f"Phenotype distributions by {hue}")
    return fig


def plot_phenotype_correlations(table: pd.DataFrame) -> Figure:
    """Spearman correlations between phenotypes and the numeric covariates."""
    cols = [c for c in (*PHENOTYPES, "age", "bsa", "heart_rate", "qrs_ms", "qt_ms") if c in table]
    corr = table[cols].corr(method="spearman")
    fig, ax = plt.subplots(figsize=(9, 7.5), constrained_layout=True)
    sns.heatmap(corr, vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f", annot_kws={"size": 7}, ax=ax)
    ax.set_title("Spearman correlation")
    return fig


def plot_ecg_12lead(ecg: np.ndarray, fs: float, title: str = "") -> Figure:
    """A 12-lead ECG drawn like a clinical tracing: 25 mm/s, 10 mm/mV, pink grid, rhythm strip."""
    n = ecg.shape[-1]
    seg = int(2.5 * fs)
    fig, ax = plt.subplots(figsize=(15, 7.5), constrained_layout=True)
    offsets = [-i * 3.0 for i in range(4)]  # mV between rows
    for r, row in enumerate(_LAYOUT):
        for c, lead in enumerate(row):
            start = c * seg
            x = np.arange(start, min(start + seg, n)) / fs
            ax.plot(x, ecg[LEADS.index(lead), start:start + seg] + offsets[r], color="black", lw=0.7)
            ax.text(start / fs + 0.05, offsets[r] + 0.9, lead, fontsize=10, weight="bold")
    ax.plot(np.arange(n) / fs, ecg[LEADS.index("II")] + offsets[3], color="black", lw=0.7)
    ax.text(0.05, offsets[3] + 0.9, "II", fontsize=10, weight="bold")
    duration = n / fs
    ax.set_xticks(np.arange(0, duration + 1e-9, 0.2), minor=False)
    ax.set_xticks(np.arange(0, duration + 1e-9, 0.04), minor=True)
    ax.set_yticks(np.arange(offsets[3] - 1.5, 1.6, 0.5))
    ax.set_yticks(np.arange(offsets[3] - 1.5, 1.6, 0.1), minor=True)
    ax.grid(which="major", color="#f4a6a6", lw=0.8)
    ax.grid(which="minor", color="#fbdede", lw=0.4)
    ax.set_xlim(0, duration)
    ax.set_ylim(offsets[3] - 1.5, 1.5)
    ax.set_aspect(0.4 / 1.0)  # 0.2 s (5 mm) : 0.5 mV (5 mm)
    ax.tick_params(labelleft=False, labelbottom=False, length=0)
    ax.set_title(title or "12-lead ECG (25 mm/s, 10 mm/mV)")
    return fig


def draw_stacked_leads(ax: Axes, ecg: np.ndarray, fs: float, lw: float = 0.5, fontsize: float = 7,
                       label_x: float | None = None) -> None:
    """The 12 leads of ``ecg`` ``[12, L]`` (``LEADS`` order) at ``fs`` Hz on ``ax``, top to bottom, twice one lead's
    excursion apart (the 99.5th percentile of ``|ecg|``), each named at its left: at ``label_x`` seconds, or
    1 % of the axes' width outside them when None."""
    spacing = 2.0 * float(np.percentile(np.abs(ecg), 99.5)) or 1.0
    seconds = np.arange(ecg.shape[-1]) / fs
    for j, lead in enumerate(LEADS):
        ax.plot(seconds, ecg[j] - j * spacing, color="black", lw=lw)
        if label_x is None:
            ax.text(-0.01, -j * spacing, lead, transform=ax.get_yaxis_transform(), ha="right", va="center",
                    fontsize=fontsize)
        else:
            ax.text(label_x, -j * spacing, lead, fontsize=fontsize, ha="right", va="center")
    ax.set_yticks([])


def plot_cine_montage(cine: np.ndarray, n_cols: int = 10, title: str = "") -> Figure:
    """All frames of one cine on a grid, labelled with the frame index (phase k/T after the R peak).

    ``cine`` is ``[S, T, H, W]`` (``Cohort.cmr``): each slice (base to apex) gets its own block of rows,
    every slice shown.
    """
    slices, t = cine.shape[:2]
    rows_per_slice = int(np.ceil(t / n_cols))
    n_rows = slices * rows_per_slice
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.4 * n_cols, 1.5 * n_rows), constrained_layout=True,
                             squeeze=False)
    for s in range(slices):
        for k, ax in enumerate(axes[s * rows_per_slice:(s + 1) * rows_per_slice].flat):
            ax.axis("off")
            if k < t:
                ax.imshow(cine[s, k], cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{k}" if slices == 1 else f"slice {s} · {k}", fontsize=7)
    where = f"{slices} slices base to apex, " if slices > 1 else ""
    fig.suptitle(title or f"Short-axis cine, {where}{t} frames over one RR interval")
    return fig


def plot_volume_timing(cohort: Cohort, i: int, lead: str = "II") -> Figure:
    """LV/RV volume curves over one cardiac cycle, over that subject's ECG beat on the same time axis.

    The cine (and so the volume curve) starts at the R peak and spans one mean RR interval; the
    beat drawn is the first complete beat of the recording. Where the cohort carries the
    generator's end-systole time (``es_ms``, after the R peak), it is marked.
    """
    volumes = cohort.extra("volumes", i)
    if volumes is None:
        raise ValueError("this cohort has no volume curves (only synthetic cohorts carry them)")
    fs = cohort.geometry.ecg_hz
    row = cohort.table.iloc[i]
    peaks = cohort.extra("rpeaks", i)
    peaks = peaks[peaks >= 0] if peaks is not None else np.array([], dtype=int)
    if len(peaks) < 2:
        from ..data import detect_rpeaks

        peaks = detect_rpeaks(cohort.ecg(i), fs)
    rr = 60.0 / float(row["heart_rate"]) if "heart_rate" in row else float(np.mean(np.diff(peaks))) / fs
    start = int(peaks[0])
    beat = cohort.ecg(i)[LEADS.index(lead), start:start + int(rr * fs)]
    t_frames = np.arange(volumes.shape[-1]) * rr / volumes.shape[-1] * 1000.0
    fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    ax.plot(np.arange(len(beat)) / fs * 1000.0, beat, color="black", lw=1.0, label=f"ECG lead {lead}")
    ax.set_xlabel("time after R peak (ms)")
    ax.set_ylabel("mV")
    vol_ax = ax.twinx()
    vol_ax.plot(t_frames, volumes[0], "o-", ms=3, color="tab:red", label="LV volume")
    vol_ax.plot(t_frames, volumes[1], "o-", ms=3, color="tab:blue", label="RV volume")
    vol_ax.set_ylabel("volume (mL)")
    if "es_ms" in row and np.isfinite(row["es_ms"]):  # generator's end-systole, in ms after the R peak
        ax.axvline(float(row["es_ms"]), ls="--", color="tab:purple", lw=1, label="end-systole (generator)")
    handles = ax.get_legend_handles_labels()
    vol_handles = vol_ax.get_legend_handles_labels()
    ax.legend(handles[0] + vol_handles[0], handles[1] + vol_handles[1], loc="upper left",
              bbox_to_anchor=(1.1, 1.0), fontsize=8)
    ax.set_title(f"Subject {row['subject_id']}: volumes over one cycle, timed by the ECG")
    return fig
