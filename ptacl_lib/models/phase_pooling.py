"""Parameter-free pooling of ECG time tokens into cardiac-phase tokens (docs/design.md §3).

The paper's exact segmentation rule is not public. This module implements the project's own
rule, ``beat_phase_pool``:

1. R peaks (sample indices, padded with -1) split the recording into beats. A *complete* beat
   ``j`` is the interval ``[R_j, R_{j+1})`` between two detected peaks; tokens before the first
   or after the last peak belong to no complete beat and are ignored.
2. A token at time ``t`` inside beat ``j`` has phase ``phi = (t - R_j) / (R_{j+1} - R_j)`` in [0, 1).
3. The ECG-gated cine's frame ``k`` of ``T`` shows phase ``k / T``. Each token goes to the frame
   nearest in phase, circularly: bin ``floor(phi * T + 1/2) mod T``. A phase just before the next
   R peak therefore joins frame 0, which is acquired at an R peak too.
4. Only *usable* beats are pooled: a beat whose RR lies outside ``RR_TOLERANCE`` (±20 %) of the
   recording's median RR, or that follows a premature beat (compensatory pause), is left out
   (``ptacl_lib.data.rhythm``; ``rr_tolerance=None`` pools every complete beat).
5. Phase token ``k`` is the plain mean of every token in bin ``k`` over the usable beats. A bin
   that receives no token is marked invalid in the returned mask and holds zeros; a recording
   with no usable beat therefore has an all-False mask and takes no part in the local loss.

Other rules plug in through ``PHASE_POOLERS``: any callable with the ``PhasePooler`` signature.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.rhythm import RR_TOLERANCE, usable_beats

#: ``(tokens [B,N,D], token_times [N], rpeaks [B,K], n_phases) -> (phase_tokens [B,T,D], mask [B,T])``
PhasePooler = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def token_phase_bins(token_times: torch.Tensor, rpeaks: torch.Tensor, n_phases: int,
                     rr_tolerance: float | None = RR_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase bin of every token for every recording: ``(bins [B,N] int64, pooled [B,N] bool)``.

    ``pooled`` is True for a token inside a complete, usable beat (rule 4 of the module docstring;
    ``rr_tolerance=None``: every complete beat). ``rpeaks`` may come in any order and be padded with
    any negative value.
    """
    if rpeaks.ndim != 2:
        raise ValueError(f"rpeaks must be [B, K], got {tuple(rpeaks.shape)}")
    b, n = rpeaks.shape[0], token_times.shape[0]
    if rpeaks.shape[1] < 2:  # no complete beat is possible
        zeros = torch.zeros(b, n, dtype=torch.long, device=rpeaks.device)
        return zeros, zeros.bool()
    peaks = torch.where(rpeaks >= 0, rpeaks.to(torch.float64), torch.inf).sort(dim=1).values
    times = token_times.to(device=peaks.device, dtype=torch.float64).expand(b, n).contiguous()
    beat = torch.searchsorted(peaks, times, right=True) - 1  # last peak <= t; -1 before the first
    clamped = beat.clamp(0, peaks.shape[1] - 2)
    start, end = peaks.gather(1, clamped), peaks.gather(1, clamped + 1)
    inside = (beat >= 0) & (beat <= peaks.shape[1] - 2) & torch.isfinite(end) & (end > start)
    if rr_tolerance is not None:
        inside = inside & usable_beats(peaks, rr_tolerance).gather(1, clamped)
    phase = torch.where(inside, (times - start) / torch.where(inside, end - start, 1.0), 0.0)
    bins = torch.floor(phase * n_phases + 0.5).long() % n_phases  # round half up
    return bins, inside


def beat_phase_pool(tokens: torch.Tensor, token_times: torch.Tensor, rpeaks: torch.Tensor,
                    n_phases: int, rr_tolerance: float | None = RR_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Average ECG tokens per cardiac-phase bin over the usable beats (the module docstring's rule).

    Returns ``phase_tokens [B, T, D]`` (zeros where empty) and ``mask [B, T]`` (True = at least one token).
    """
    if tokens.ndim != 3 or tokens.shape[:1] != rpeaks.shape[:1] or tokens.shape[1] != token_times.shape[0]:
        raise ValueError(f"shape mismatch: tokens {tuple(tokens.shape)}, token_times {tuple(token_times.shape)}, "
                         f"rpeaks {tuple(rpeaks.shape)}")
    bins, inside = token_phase_bins(token_times, rpeaks, n_phases, rr_tolerance)
    weights = F.one_hot(bins, n_phases).to(tokens.dtype) * inside[..., None].to(tokens.dtype)  # [B, N, T]
    counts = weights.sum(dim=1)  # [B, T]
    sums = torch.bmm(weights.transpose(1, 2), tokens)  # [B, T, D]
    return sums / counts.clamp_min(1.0)[..., None], counts > 0


PHASE_POOLERS: dict[str, PhasePooler] = {
    "beat_nearest_frame": beat_phase_pool,
    # every complete beat, whatever its RR (the rule before rhythm-aware pooling; for comparisons)
    "beat_nearest_frame_all_beats": partial(beat_phase_pool, rr_tolerance=None),
}
