"""Per-pathology heatmaps: the attention of the words naming a finding, averaged and upsampled to the image."""

from __future__ import annotations

import numpy as np
import torch

from .decode import DecodedCaption
from .mentions import find_mentions


def upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of one ``[G, G]`` attention grid to ``shape`` (cell centres aligned)."""
    t = torch.as_tensor(np.asarray(grid, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


HEATMAP_WORDS: tuple[str, ...] = ("phrase", "terms")


def pathology_heatmaps(decoded: DecodedCaption, shape: tuple[int, int], words: str = "phrase"
                       ) -> dict[str, np.ndarray]:
    """One heatmap per pathology the caption asserts (negated mentions give none), scaled to max 1.

    The heatmap averages the attention maps of the words that name the finding over all its asserted
    mentions: with ``words="phrase"`` the content words of its phrase ("small left pleural effusion"),
    with ``words="terms"`` only the pathology terms ("effusion"; "heart" + "enlarged").
    """
    if words not in HEATMAP_WORDS:
        raise ValueError(f"words must be one of {HEATMAP_WORDS}, got {words!r}")
    positions: dict[str, list[int]] = {}
    for m in find_mentions(list(decoded.words)):
        if not m.negated:
            positions.setdefault(m.pathology, []).extend(m.phrase_indices if words == "phrase" else m.word_indices)
    maps = {}
    for pathology, idx in positions.items():
        heat = upsample(decoded.attention[sorted(set(idx))].mean(0), shape)
        maps[pathology] = heat / max(float(heat.max()), 1e-12)
    return maps
