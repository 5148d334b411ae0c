"""ECG encoder: a convolutional stem, then a transformer over non-overlapping time patches of the 12 leads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import sinusoidal_positions, transformer_stack


@dataclass(frozen=True)
class ECGEncoderOutput:
    """What the ECG encoder yields for a batch of ``B`` recordings cut into ``N`` patches."""

    pooled: torch.Tensor  # [B, D] mean of the tokens
    tokens: torch.Tensor  # [B, N, D] one token per time patch
    token_times: torch.Tensor  # [N] centre of each patch, in samples of the input signal


#: Kernel of the stem's first convolution, in samples (50 ms at the default 100 Hz): about a QRS half-width.
#: ``ModelConfig.ecg_stem_kernel`` gives it at other rates.
STEM_KERNEL = 5


def patch_embedding(leads: int, patch: int, dim: int, stem: int, stem_kernel: int = STEM_KERNEL) -> nn.Module:
    """``[B, leads, L]`` -> ``[B, dim, L // patch]``: a strided convolution, after a ``stem``-channel convolution.

    ``stem = 0`` is the plain linear patchify of a ViT. A convolutional stem before the patches
    ("Early convolutions help transformers see better", Xiao et al., NeurIPS 2021) lets every patch
    see the waveform's local shape across its edges; on the demo cohort it raised the supervised arm's
    validation fit (``docs/design.md`` §5, "Encoder").
    """
    patchify = nn.Conv1d(stem if stem > 0 else leads, dim, kernel_size=patch, stride=patch)
    if stem <= 0:
        return patchify
    return nn.Sequential(nn.Conv1d(leads, stem, stem_kernel, padding=stem_kernel // 2), nn.GELU(), patchify)


class ECGEncoder(nn.Module):
    """Embed ``[B, leads, L]`` into patches (``patch_embedding``), add sinusoidal positions, run a transformer.

    Patch ``n`` covers samples ``[n*P, (n+1)*P)``; its token time is the patch centre ``n*P + (P-1)/2``.
    Samples past the last whole patch are dropped.
    """

    def __init__(self, leads: int, patch: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 2.0, dropout: float = 0.0, stem: int = 0, stem_kernel: int = STEM_KERNEL) -> None:
        super().__init__()
        self.leads, self.patch, self.dim = leads, patch, dim
        self.patchify = patch_embedding(leads, patch, dim, stem, stem_kernel)
        self.transformer = transformer_stack(dim, depth, heads, mlp_ratio, dropout)

    def embed_patches(self, ecg: torch.Tensor) -> torch.Tensor:
        """``[B, leads, L]`` -> patch embeddings ``[B, N, D]`` (before positions and attention)."""
        if ecg.ndim != 3 or ecg.shape[1] != self.leads:
            raise ValueError(f"ECG batch must be [B, {self.leads}, L], got {tuple(ecg.shape)}")
        if ecg.shape[-1] < self.patch:
            raise ValueError(f"ECG of {ecg.shape[-1]} samples is shorter than one patch ({self.patch})")
        return self.patchify(ecg).transpose(1, 2)

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[B, N, D]`` -> contextual tokens ``[B, N, D]``."""
        positions = sinusoidal_positions(patches.shape[1], self.dim, patches.device).to(patches.dtype)
        return self.transformer(patches + positions)

    def token_times(self, n_patches: int, device: torch.device | None = None) -> torch.Tensor:
        """Centre of each patch in samples, ``[N]`` float."""
        return torch.arange(n_patches, device=device, dtype=torch.float32) * self.patch + (self.patch - 1) / 2

    def patch_targets(self, ecg: torch.Tensor) -> torch.Tensor:
        """The raw signal cut like the tokens: ``[B, N, leads * P]`` (the masked-reconstruction target)."""
        n = ecg.shape[-1] // self.patch
        cut = ecg[..., : n * self.patch].reshape(ecg.shape[0], self.leads, n, self.patch)
        return cut.permute(0, 2, 1, 3).reshape(ecg.shape[0], n, self.leads * self.patch)

    def forward(self, ecg: torch.Tensor) -> ECGEncoderOutput:
        tokens = self.encode_patches(self.embed_patches(ecg))
        return ECGEncoderOutput(tokens.mean(dim=1), tokens, self.token_times(tokens.shape[1], tokens.device))
