"""Projection heads into the shared ECG-CMR embedding space."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Linear map ``in_dim -> out_dim`` (or a one-hidden-layer GELU MLP when ``hidden > 0``).

    Applied position-wise, so the same head projects pooled embeddings ``[B, D]`` and tokens ``[B, T, D]``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0) -> None:
        super().__init__()
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
