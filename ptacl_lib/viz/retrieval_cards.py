"""Retrieval case cards: a query ECG above its own CMR and the CMRs of the patients its embedding retrieved.

Each retrieved patient is shown by one mid-systolic cine frame, its phenotypes and its cosine
distance to the query, so a reader sees at a glance whether "similar ECG embedding" meant
"similar heart".
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..data import Cohort
from ..data.schema import LEADS, PHENOTYPES
from ..evaluate.embeddings import Embeddings
from ..evaluate.pipeline import query_neighbours

#: Phenotypes printed under each frame: (column, label, unit).
CARD_PHENOTYPES: tuple[tuple[str, str, str], ...] = (
    ("lvedv", "EDV", "mL"), ("lvef", "EF", "%"), ("lvm", "LVM", "g"), ("rvef", "RVEF", "%"))


def mid_slice(cohort: Cohort, row: int) -> np.ndarray:
    """The cine of ``row``'s middle short-axis slice, ``[T, H, W]`` (a single-slice cohort's only one)."""
    stack = cohort.cmr(row)
    return stack[len(stack) // 2]


def end_systole_frame(cohort: Cohort, row: int) -> int:
    """The cine frame of end-systole: the minimum of the LV volume curve when the cohort stores one (extra
    ``volumes``, ``[2, T]``: LV and RV in mL); otherwise the frame with the least bright signal of the middle
    slice, since the blood pool is the brightest tissue of a bSSFP cine and is smallest then."""
    volumes = cohort.extra("volumes", row)
    if volumes is not None:
        return int(np.argmin(np.asarray(volumes)[0]))
    cine = mid_slice(cohort, row)
    return int(np.argmin(cine.reshape(len(cine), -1).sum(axis=1)))


def mid_systole_frame(cohort: Cohort, row: int) -> int:
    """Cine frame halfway between end-diastole (frame 0, the R peak) and end-systole (``end_systole_frame``)."""
    return end_systole_frame(cohort, row) // 2


def _phenotype_text(table_row: pd.Series) -> str:
    return "\n".join(f"{label} {float(table_row[col]):.0f} {unit}" for col, label, unit in CARD_PHENOTYPES)


def retrieval_card(cohort: Cohort, query_row: int, neighbour_rows: Sequence[int], distances: Sequence[float],
                   leads: Sequence[str] = ("I", "II", "V5"), title: str | None = None,
                   panel_size: float = 1.9, query_cohort: Cohort | None = None) -> Figure:
    """One card: the query's ECG (``leads``, full length), then its own mid-systolic frame and each neighbour's.

    ``*_row`` are cohort rows; ``distances`` are the neighbours' cosine distances to the query. The query
    comes from ``query_cohort`` when given (a held-out test cohort), else from ``cohort`` like its neighbours.
    """
    if len(neighbour_rows) != len(distances):
        raise ValueError(f"{len(neighbour_rows)} neighbours but {len(distances)} distances")
    unknown = [lead for lead in leads if lead not in LEADS]
    if unknown:
        raise ValueError(f"unknown leads {unknown}; expected names from {LEADS}")
    n_cols = len(neighbour_rows) + 1
    fig = plt.figure(figsize=(panel_size * n_cols, panel_size * 2.6), constrained_layout=True)
    grid = fig.add_gridspec(2, n_cols, height_ratios=[1.0, 1.6])

    source = query_cohort or cohort
    ecg = source.ecg(query_row)
    seconds = np.arange(ecg.shape[1]) / source.geometry.ecg_hz
    ax = fig.add_subplot(grid[0, :])
    spacing = 2.0 * float(np.max(np.abs(ecg[[LEADS.index(lead) for lead in leads]]))) or 1.0
    for j, lead in enumerate(leads):
        ax.plot(seconds, ecg[LEADS.index(lead)] - j * spacing, lw=0.7, color="black")
        ax.text(seconds[0], -j * spacing + 0.3 * spacing, lead, fontsize=8, color="tab:red")
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_xlim(seconds[0], seconds[-1])
    ax.set_title(title or f"query {source.table['subject_id'].iloc[query_row]}", fontsize=10, loc="left")

    panels = [(source, query_row, "query (own CMR)")] + [
        (cohort, int(r), f"#{n + 1}  d={float(d):.3f}") for n, (r, d) in enumerate(zip(neighbour_rows, distances))]
    for c, (owner, row, heading) in enumerate(panels):
        ax = fig.add_subplot(grid[1, c])
        table = owner.table
        frame = mid_slice(owner, row)[mid_systole_frame(owner, row)]
        ax.imshow(frame, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(heading, fontsize=8)
        ax.set_xlabel(f"{table['subject_id'].iloc[row]}\n{_phenotype_text(table.iloc[row])}", fontsize=7)
        if c == 0:
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:red")
                spine.set_linewidth(2)
    return fig


def spread_queries(embeddings: Embeddings, n: int, phenotype: str = "lvef") -> np.ndarray:
    """``n`` test positions spread evenly over the range of ``phenotype`` (lowest, ..., highest)."""
    test = embeddings.subset("test")
    order = np.argsort(test.phenotypes[:, PHENOTYPES.index(phenotype)], kind="stable")
    return order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]


def card_for_query(cohort: Cohort, embeddings: Embeddings, query: int, k: int = 5, title: str | None = None,
                   leads: Sequence[str] = ("I", "II", "V5"), test_cohort: Cohort | None = None) -> Figure:
    """The retrieval card of test position ``query``: its ``k`` nearest training ECG embeddings.

    ``test_cohort`` is where the test rows live when the study scored a held-out test cohort."""
    train, test = embeddings.subset("train"), embeddings.subset("test")
    nn = query_neighbours(embeddings, k)
    return retrieval_card(cohort, int(test.index[query]), train.index[nn.indices[query]], nn.distances[query],
                          leads=leads, title=title, query_cohort=test_cohort)
