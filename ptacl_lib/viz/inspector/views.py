"""The inspector's four linked views, drawn with matplotlib for one subject at one cardiac phase.

``draw_inspector`` is the only drawing code: ``AlignmentInspector.snapshot`` calls it on a pyplot
figure, and the widget calls it on a detached ``Figure`` that it renders to PNG, so the notebook,
the tests and the live widget show the same picture.

Layout: the ECG across the top (one lead, or all 12 stacked), with the tokens pooled into the current
phase shaded in every usable beat, darker and with a taller bar the larger their pooling weight, and the
beats the rhythm rule left out of the pooling hatched grey (``ptacl_lib.data.rhythm``); below it the CMR
frame of that phase as the model saw it, the LV/RV volume curve over the cycle with a cursor at the
phase, and one ``T x T`` local similarity matrix per compared model (current row outlined, each row's
argmax marked, the diagonal dashed; colours span the matrix's own range, so a weakly contrasted untrained
model still shows its pattern).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ...data.schema import LEADS
from ..cohort_plots import draw_stacked_leads
from .alignment import SubjectAlignment

ALL_LEADS = "all 12"
#: ``Axes.get_label()`` of each view, so code (and tests) can find them.
VIEW_LABELS: tuple[str, ...] = ("ecg", "cmr", "volumes", "similarity")
_SHADE = "#f5b041"


@dataclass(frozen=True)
class SubjectViews:
    """Everything the views draw for one subject; ``arms`` pairs a model label with its alignment."""

    subject_id: str
    caption: str  #: one line of phenotypes for the title
    ecg: np.ndarray  #: float32 [12, L] band-passed ECG (mV) at ``fs``, as the model saw it (before scaling)
    fs: float
    frames: np.ndarray  #: float32 [S, T, H, W] in [0, 1], the model's cine frames (S slices, base to apex)
    volumes: np.ndarray | None  #: float32 [2, F] LV/RV mL over one cycle (frame j at phase j / F), if known
    arms: tuple[tuple[str, SubjectAlignment], ...]

    @property
    def n_phases(self) -> int:
        return self.frames.shape[-3]

    @property
    def primary(self) -> SubjectAlignment:
        return self.arms[0][1]


def draw_inspector(fig: Figure, views: SubjectViews, phase: int, lead: str = "II") -> Figure:
    """Draw every view of ``views`` at ``phase`` (0..T-1) on ``fig`` (cleared first); returns ``fig``."""
    if not 0 <= phase < views.n_phases:
        raise ValueError(f"phase {phase} outside 0..{views.n_phases - 1} for subject {views.subject_id}")
    if lead != ALL_LEADS and lead not in LEADS:
        raise ValueError(f"unknown lead {lead!r}; choose {ALL_LEADS!r} or one of {LEADS}")
    fig.clear()
    n_cols = 2 + len(views.arms)
    grid = fig.add_gridspec(2, n_cols, height_ratios=[1.5 if lead == ALL_LEADS else 0.8, 1.0],
                            width_ratios=[0.8, 1.1] + [1.0] * len(views.arms))
    primary = views.primary
    rr_ms = primary.rr_ms
    phase_ms = phase * rr_ms / views.n_phases
    fig.suptitle(f"{views.subject_id}  ·  {views.caption}  ·  phase {phase}/{views.n_phases} "
                 f"({phase_ms:.0f} ms after R, RR {rr_ms:.0f} ms)", fontsize=10)
    draw_ecg(fig.add_subplot(grid[0, :]), views, phase, lead)
    draw_frame(fig.add_subplot(grid[1, 0]), views, phase)
    draw_volumes(fig.add_subplot(grid[1, 1]), views, phase)
    for c, (label, alignment) in enumerate(views.arms):
        draw_similarity(fig.add_subplot(grid[1, 2 + c]), alignment, phase, label)
    return fig


def draw_ecg(ax: Axes, views: SubjectViews, phase: int, lead: str) -> None:
    """The ECG (one lead or all 12 stacked), the current phase's pooled segments shaded in every beat."""
    ax.set_label("ecg")
    primary = views.primary
    t = np.arange(views.ecg.shape[-1]) / views.fs
    if lead == ALL_LEADS:
        draw_stacked_leads(ax, views.ecg, views.fs)
    else:
        ax.plot(t, views.ecg[LEADS.index(lead)], color="black", lw=0.7)
        ax.set_ylabel(f"{lead} (mV)")
    draw_token_weights(ax, primary, phase, views.fs)
    excluded = primary.excluded_beats()
    for start, stop in excluded:
        ax.axvspan(start / views.fs, stop / views.fs, facecolor="0.85", edgecolor="0.5", hatch="//", alpha=0.5,
                   lw=0, label="excluded beat")
    for r in primary.rpeaks:
        ax.axvline(r / views.fs, color="tab:red", lw=0.5, alpha=0.4)
    ax.set_xlim(0, t[-1])
    ax.set_xlabel("time (s)")
    rhythm = primary.rhythm
    n_tokens = int(np.count_nonzero(primary.weights(phase)))
    warning = "  ·  TOO FEW REGULAR BEATS" if rhythm.flag == "too_few_beats" else ""
    ax.set_title(f"ECG: shaded, the {n_tokens} tokens ({1000 * primary.patch / views.fs:.0f} ms each) that phase "
                 f"{phase} pools over {rhythm.n_usable} of {rhythm.n_beats} complete beats, bars their weights "
                 f"({primary.pooling or 'pooling'}); hatched, the {len(excluded)} beats excluded by the RR rule "
                 f"(R peaks in red){warning}", fontsize=9)


def draw_token_weights(ax: Axes, alignment: SubjectAlignment, phase: int, fs: float) -> None:
    """Each token pooled into ``phase`` shaded (darker the heavier) and its share of the phase token as a bar on
    a twin axis (label ``weights``) along the bottom of ``ax``."""
    weights = alignment.weights(phase)
    pooled = np.flatnonzero(weights > 0)
    top = float(weights.max()) if len(pooled) else 1.0
    for n in pooled:
        start = n * alignment.patch / fs
        ax.axvspan(start, start + alignment.patch / fs, color=_SHADE, alpha=0.2 + 0.5 * weights[n] / top, lw=0)
    bars = ax.twinx()
    bars.set_label("weights")
    bars.bar((pooled + 0.5) * alignment.patch / fs, weights[pooled], width=alignment.patch / fs, color="tab:brown",
             alpha=0.8)
    bars.set_ylim(0, 4 * top)  # the bars fill the bottom quarter, under the trace's baseline
    bars.set_ylabel("pooling weight", fontsize=8)
    bars.tick_params(labelsize=7)


def slice_strip(frames: np.ndarray, phase: int, gap: int = 1) -> np.ndarray:
    """Every slice of ``frames`` ``[S, T, H, W]`` at ``phase``, side by side base to apex, ``gap`` white pixels
    apart: ``[H, S * W + (S - 1) * gap]`` (one slice: that frame itself)."""
    parts: list[np.ndarray] = []
    for k, image in enumerate(frames[:, phase]):
        if k:
            parts.append(np.ones((image.shape[0], gap), dtype=image.dtype))
        parts.append(image)
    return np.concatenate(parts, axis=1)


def draw_frame(ax: Axes, views: SubjectViews, phase: int) -> None:
    """The CMR frame of ``phase``, as the model saw it: every slice, base to apex."""
    ax.set_label("cmr")
    ax.imshow(slice_strip(views.frames, phase), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    slices = len(views.frames)
    ax.set_title(f"CMR frame {phase}" + (f", {slices} slices base to apex" if slices > 1 else ""), fontsize=9)


def draw_volumes(ax: Axes, views: SubjectViews, phase: int) -> None:
    """LV/RV volume over one cycle with a cursor at ``phase`` (a note when the cohort has no curve)."""
    ax.set_label("volumes")
    rr_ms = views.primary.rr_ms
    cursor = phase / views.n_phases * rr_ms
    if views.volumes is None:
        ax.text(0.5, 0.5, "no volume curve\nin this cohort", ha="center", va="center", transform=ax.transAxes,
                color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        n = views.volumes.shape[-1]
        t = np.arange(n + 1) / n * rr_ms  # close the cycle: the next R peak repeats frame 0
        for row, name, colour in ((0, "LV", "tab:red"), (1, "RV", "tab:blue")):
            curve = np.append(views.volumes[row], views.volumes[row, 0])
            ax.plot(t, curve, color=colour, lw=1.2, label=name)
            ax.plot(cursor, np.interp(cursor, t, curve), "o", color=colour, ms=5)
        ax.axvline(cursor, color=_SHADE, lw=2)
        ax.set_xlim(0, rr_ms)
        ax.set_xlabel("time after R (ms)")
        ax.set_ylabel("volume (mL)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title("LV / RV volume", fontsize=9)


def draw_similarity(ax: Axes, alignment: SubjectAlignment, phase: int, label: str) -> None:
    """Local ``T x T`` similarity: rows ECG phases, columns CMR frames; argmax per row, current row outlined."""
    ax.set_label("similarity")
    t = alignment.n_phases
    sim = np.where(alignment.valid[:, None] & alignment.valid[None, :], alignment.similarity, np.nan)
    finite = sim[np.isfinite(sim)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    image = ax.imshow(sim, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="cosine")
    ax.plot([-0.5, t - 0.5], [-0.5, t - 0.5], ls="--", color="white", lw=0.7)
    best = alignment.argmax()
    rows = np.flatnonzero(best >= 0)
    ax.scatter(best[rows], rows, marker="x", s=14, color=np.where(best[rows] == rows, "white", "red"), lw=1.0)
    ax.add_patch(Rectangle((-0.5, phase - 0.5), t, 1.0, fill=False, edgecolor=_SHADE, lw=1.8))
    ax.set_xlabel("CMR frame  (x: row argmax, red if off-diagonal)", fontsize=8)
    ax.set_ylabel("ECG phase")
    m = alignment.metrics()
    ax.set_title(f"{label}\ndiag. acc {m.diagonal_accuracy:.2f} · phase error {m.phase_error_frames:.2f} fr "
                 f"({m.phase_error_ms:.0f} ms)", fontsize=9)
