"""UMAP maps of ECG embeddings, one panel per arm, coloured by phenotype and covariates.

One UMAP is fitted per arm (cosine metric, fixed seed) and reused for every colouring, so the
rows of the grid are the same map painted by LVEF, LV mass, sex and conduction pattern.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..arms import ARM_LABELS

#: Colourings of the grid: label -> cohort table column. Columns absent from a table are skipped.
DEFAULT_COLOURINGS: dict[str, str] = {"LVEF (%)": "lvef", "LV mass (g)": "lvm", "sex": "sex",
                                      "conduction": "conduction"}


def umap_coordinates(embeddings: np.ndarray, seed: int = 0, n_neighbors: int = 15,
                     min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP (umap-learn, cosine metric) of ``[N, E]`` embeddings; ``n_neighbors`` is capped at ``N - 1``."""
    import umap  # imported here: its numba compilation costs seconds

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if len(embeddings) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(embeddings)}")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(embeddings) - 1), min_dist=min_dist,
                        metric="cosine", random_state=seed, n_jobs=1,
                        init="spectral" if len(embeddings) > 10 else "random")
    return reducer.fit_transform(embeddings)


def colourings(table: pd.DataFrame, rows: np.ndarray,
               columns: Mapping[str, str] = DEFAULT_COLOURINGS) -> dict[str, np.ndarray]:
    """The values that paint each row of the grid, for cohort ``rows`` (columns missing from ``table`` are skipped)."""
    return {label: table[col].to_numpy()[rows] for label, col in columns.items() if col in table.columns}


def plot_umap_grid(coordinates: Mapping[str, np.ndarray], colours: Mapping[str, np.ndarray],
                   arm_labels: Mapping[str, str] | None = None, point_size: float = 8.0,
                   panel_size: float = 3.0) -> Figure:
    """Grid: one column per arm (``coordinates`` keys), one row per colouring (``colours`` keys).

    Column titles come from ``arm_labels`` (default: ``ARM_LABELS``). Numeric colourings share a
    colour scale across arms (one colour bar per row); text colourings (sex, conduction) use one
    legend per row.
    """
    arms, rows = list(coordinates), list(colours)
    if not arms or not rows:
        raise ValueError("need at least one arm and one colouring")
    n_points = {len(c) for c in coordinates.values()} | {len(v) for v in colours.values()}
    if len(n_points) != 1:
        raise ValueError(f"coordinates and colourings disagree in number of points: {sorted(n_points)}")
    fig, axes = plt.subplots(len(rows), len(arms), figsize=(panel_size * len(arms) + 1.2, panel_size * len(rows)),
                             squeeze=False, constrained_layout=True)
    for r, label in enumerate(rows):
        values = np.asarray(colours[label])
        numeric = np.issubdtype(values.dtype, np.number)
        if numeric:
            finite = values[np.isfinite(values)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        else:
            categories = sorted({str(v) for v in values})
            palette = dict(zip(categories, plt.get_cmap("tab10").colors))
        for c, arm in enumerate(arms):
            ax = axes[r, c]
            xy = coordinates[arm]
            if numeric:
                mappable = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", vmin=vmin, vmax=vmax,
                                      s=point_size, linewidths=0)
            else:
                for cat in categories:
                    sel = np.array([str(v) == cat for v in values])
                    ax.scatter(xy[sel, 0], xy[sel, 1], color=palette[cat], s=point_size, linewidths=0, label=cat)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title((ARM_LABELS if arm_labels is None else arm_labels).get(arm, arm))
            if c == 0:
                ax.set_ylabel(label)
        if numeric:
            fig.colorbar(mappable, ax=axes[r, :].tolist(), shrink=0.9, label=label)
        else:
            axes[r, -1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, markerscale=2)
    return fig
