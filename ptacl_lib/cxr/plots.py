"""Figures for the CXR notebook: phantoms with their masks, heatmaps over images, per-word attention."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .decode import DecodedCaption
from .heatmaps import upsample
from .phantoms import Finding


def show_phantoms(images: np.ndarray, findings: Sequence[Sequence[Finding]], captions: Sequence[str],
                  n: int = 6) -> Figure:
    """The first ``n`` phantoms with each finding's ground-truth outline and the caption as title."""
    n = min(n, len(images))
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3.6), squeeze=False)
    for ax, img, truth, cap in zip(axes[0], images, findings, captions):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        for f in truth:
            ax.contour(f.mask, levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(textwrap.fill(cap, 38), fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def overlay_heatmap(ax: Axes, image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None = None,
                    title: str = "") -> None:
    """The image in grey, the heatmap in colour, the true region outlined and the heatmap peak marked."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
    if mask is not None:
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1.0)
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    ax.plot(x, y, marker="+", color="yellow", markersize=12, markeredgewidth=2)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def show_word_attention(image: np.ndarray, decoded: DecodedCaption, max_words: int = 12) -> Figure:
    """The attention map behind each of the first ``max_words`` generated words."""
    n = min(max_words, len(decoded.words))
    cols = min(n, 6)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        heat = upsample(decoded.attention[k], image.shape)
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{decoded.words[k]}  (beta {decoded.gates[k]:.2f})", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[dict[str, float]]) -> Figure:
    """Training cross-entropy and attention penalty per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["cross_entropy"] for h in history], marker="o", label="cross-entropy")
    ax.plot(epochs, [h["attention_penalty"] for h in history], marker="s", label="attention penalty")
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    return fig



def show_lung_cases(cases: Sequence[dict]) -> Figure:
    """Real cases (``pipeline.lung_cases``): each image with its heatmap, the lung boxes outlined and the caption."""
    fig, axes = plt.subplots(1, max(len(cases), 1), figsize=(3.4 * max(len(cases), 1), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        overlay_heatmap(ax, case["image"], case["heatmap"], case["lungs"],
                        textwrap.fill(f"[{case['heatmap_of']}] {case['generated']}", 40)[:240])
    for ax in axes[0][len(cases):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
