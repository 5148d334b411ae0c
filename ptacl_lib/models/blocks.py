"""Building blocks shared by both encoders: a pre-norm transformer stack and fixed sinusoidal positions."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sine/cosine position codes ``[n, dim]`` (parameter-free, so any sequence length works)."""
    position = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(n, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


def transformer_stack(dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float) -> nn.TransformerEncoder:
    """``depth`` pre-norm encoder layers (GELU, batch-first) followed by a final LayerNorm."""
    layer = nn.TransformerEncoderLayer(
        d_model=dim, nhead=heads, dim_feedforward=int(dim * mlp_ratio), dropout=dropout,
        activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
