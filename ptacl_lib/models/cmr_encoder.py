"""CMR encoder: a small CNN applied to every cine frame, then a temporal transformer across frames.

A frame of a multi-slice cine is its ``S`` short-axis slices (base to apex) at one cardiac phase; the
frame CNN reads them as ``S`` input channels, so the encoder still yields one token per frame (phase)
and the local loss is unchanged. With ``S = 1`` this is the single-slice encoder exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import sinusoidal_positions, transformer_stack


@dataclass(frozen=True)
class CMREncoderOutput:
    """What the CMR encoder yields for ``B`` cines of ``T`` frames."""

    pooled: torch.Tensor  # [B, D] mean of the frame tokens
    tokens: torch.Tensor  # [B, T, D] one token per frame


class FrameCNN(nn.Module):
    """One strided conv per stage (GroupNorm, GELU), global average pool, linear to ``dim``.

    Every stage is a 3x3 conv of stride 2, except the first when ``first_stride`` is 4: then it reads
    non-overlapping 4x4 patches, so every later stage works on a quarter of the pixels.

    GroupNorm instead of BatchNorm keeps every sample independent of its batch, so a loss is
    invariant to batch order and identical across data-parallel ranks.
    """

    def __init__(self, channels: tuple[int, ...], dim: int, first_stride: int = 2, slices: int = 1) -> None:
        super().__init__()
        if first_stride not in (2, 4):
            raise ValueError(f"the frame CNN's first stride is 2 or 4, got {first_stride}")
        blocks: list[nn.Module] = []
        in_ch = slices
        for i, out_ch in enumerate(channels):
            if i == 0 and first_stride == 4:
                conv = nn.Conv2d(in_ch, out_ch, 4, stride=4)
            else:
                conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
            blocks += [conv, nn.GroupNorm(min(8, out_ch), out_ch), nn.GELU()]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.proj = nn.Linear(in_ch, dim)
        self.channels_last = False

    def use_channels_last(self) -> None:
        """Keep kernels and activations in NHWC, the layout CUDA's tensor-core convolutions prefer."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[M, slices, H, W]`` -> ``[M, dim]``."""
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self.proj(self.features(frames).mean(dim=(-2, -1)))


class CMREncoder(nn.Module):
    """``[B, S, T, H, W]`` cine in [0, 1] (``S = slices``, 1 included) -> per-frame tokens and their mean."""

    def __init__(self, channels: tuple[int, ...], dim: int, depth: int, heads: int,
                 mlp_ratio: float = 2.0, dropout: float = 0.0, first_stride: int = 2, slices: int = 1) -> None:
        super().__init__()
        self.dim, self.slices = dim, slices
        self.frame_encoder = FrameCNN(channels, dim, first_stride, slices)
        self.transformer = transformer_stack(dim, depth, heads, mlp_ratio, dropout)

    def forward(self, cmr: torch.Tensor) -> CMREncoderOutput:
        if cmr.ndim != 5 or cmr.shape[1] != self.slices:
            raise ValueError(f"CMR batch must be [B, {self.slices}, T, H, W] ({self.slices} slice(s)), "
                             f"got {tuple(cmr.shape)}")
        b, s, t, h, w = cmr.shape
        frames = cmr.transpose(1, 2).reshape(b * t, s, h, w)
        frames = self.frame_encoder(frames).reshape(b, t, self.dim)
        positions = sinusoidal_positions(t, self.dim, cmr.device).to(frames.dtype)
        tokens = self.transformer(frames + positions)
        return CMREncoderOutput(tokens.mean(dim=1), tokens)
