"""Parameter-free pooling of ECG time tokens into cardiac-phase tokens (docs/design.md §3).

The paper's exact segmentation rule is not public. This module implements the project's own rules.
Every rule shares the beat geometry:

1. R peaks (sample indices, padded with -1) split the recording into beats. A *complete* beat
   ``j`` is the interval ``[R_j, R_{j+1})`` between two detected peaks; time before the first
   or after the last peak belongs to no complete beat and is ignored.
2. A time ``t`` inside beat ``j`` has phase ``phi = (t - R_j) / (R_{j+1} - R_j)`` in [0, 1).
3. The ECG-gated cine's frame ``k`` of ``T`` shows phase ``k / T``; it stands for the phases nearest
   to it, circularly: ``[(k - 1/2) / T, (k + 1/2) / T)``. A phase just before the next R peak
   therefore joins frame 0, which is acquired at an R peak too.
4. Only *usable* beats are pooled: a beat whose RR lies outside ``RR_TOLERANCE`` (±20 %) of the
   recording's median RR, or that follows a premature beat (compensatory pause), is left out
   (``ptacl_lib.data.rhythm``; ``rr_tolerance=None`` pools every complete beat).

A rule gives every token a non-negative weight for every phase (``PhasePooler.weights``); phase token
``k`` is the weighted mean of the tokens, and a phase whose weights are all zero is marked invalid in the
returned mask and holds zeros (a recording with no usable beat has an all-False mask and takes no part
in the local loss). The rules:

- ``beat_nearest_frame`` (``nearest_frame_weights``): a token goes, by its centre, to the nearest frame,
  bin ``floor(phi * T + 1/2) mod T``, with weight 1: a plain mean per bin. With tokens wider than a
  frame, a beat fills only some bins.
- ``beat_overlap`` (``overlap_weights``): a token's time span ``[t - w/2, t + w/2)`` (``w``: the spacing of
  the tokens, which are non-overlapping patches) is cut at the R peaks; each part inside a usable beat
  is mapped to phase and weighs, for every frame, the length of its overlap with that frame's phase
  interval (phase units). Adjacent tokens tile the recording, so every frame of a usable beat that the
  tokens cover receives weight: no bin is empty where a beat is usable.

Other rules plug in through ``PHASE_POOLERS``: a ``PhasePooler`` around their weight function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.rhythm import RR_TOLERANCE, usable_beats

#: ``(token_times [N], rpeaks [B,K], n_phases) -> weights [B,N,T]``: how much each token counts in each phase.
PhaseWeights = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def sorted_peaks(rpeaks: torch.Tensor) -> torch.Tensor:
    """``rpeaks [B,K]`` in any order, padded with any negative value -> float64, sorted, padded with ``inf``."""
    if rpeaks.ndim != 2:
        raise ValueError(f"rpeaks must be [B, K], got {tuple(rpeaks.shape)}")
    return torch.where(rpeaks >= 0, rpeaks.to(torch.float64), torch.inf).sort(dim=1).values


def pooled_beats(peaks: torch.Tensor, rr_tolerance: float | None = RR_TOLERANCE) -> torch.Tensor:
    """``[B, K-1]`` bool (``[B, 0]`` under 2 peaks): beat ``j`` of sorted, ``inf``-padded ``peaks [B,K]``
    (``sorted_peaks``) is pooled: complete (finite, positive RR) and usable (rule 4 of the module docstring;
    ``rr_tolerance=None``: every complete beat)."""
    if peaks.shape[1] < 2:  # no complete beat is possible
        return torch.zeros(peaks.shape[0], 0, dtype=torch.bool, device=peaks.device)
    if rr_tolerance is not None:
        return usable_beats(peaks, rr_tolerance)  # complete beats only
    rr = peaks[:, 1:] - peaks[:, :-1]
    return torch.isfinite(rr) & (rr > 0)


def token_phase_bins(token_times: torch.Tensor, rpeaks: torch.Tensor, n_phases: int,
                     rr_tolerance: float | None = RR_TOLERANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest phase bin of every token's centre for every recording: ``(bins [B,N] int64, pooled [B,N] bool)``.

    ``pooled`` is True for a token inside a complete, usable beat (rule 4 of the module docstring;
    ``rr_tolerance=None``: every complete beat). ``rpeaks`` may come in any order and be padded with
    any negative value.
    """
    peaks = sorted_peaks(rpeaks)
    b, n = rpeaks.shape[0], token_times.shape[0]
    pooled = pooled_beats(peaks, rr_tolerance)
    if pooled.shape[1] == 0:  # fewer than 2 peaks: no complete beat
        zeros = torch.zeros(b, n, dtype=torch.long, device=rpeaks.device)
        return zeros, zeros.bool()
    times = token_times.to(device=peaks.device, dtype=torch.float64).expand(b, n).contiguous()
    beat = torch.searchsorted(peaks, times, right=True) - 1  # last peak <= t; -1 before the first
    clamped = beat.clamp(0, peaks.shape[1] - 2)
    start, end = peaks.gather(1, clamped), peaks.gather(1, clamped + 1)
    inside = (beat >= 0) & (beat <= peaks.shape[1] - 2) & pooled.gather(1, clamped)
    phase = torch.where(inside, (times - start) / torch.where(inside, end - start, 1.0), 0.0)
    bins = torch.floor(phase * n_phases + 0.5).long() % n_phases  # round half up
    return bins, inside


def nearest_frame_weights(token_times: torch.Tensor, rpeaks: torch.Tensor, n_phases: int,
                          rr_tolerance: float | None = RR_TOLERANCE) -> torch.Tensor:
    """``[B,N,T]``: 1 for the bin nearest to each pooled token's centre (``token_phase_bins``), else 0."""
    bins, inside = token_phase_bins(token_times, rpeaks, n_phases, rr_tolerance)
    return F.one_hot(bins, n_phases).to(torch.float32) * inside[..., None].to(torch.float32)


def token_width(token_times: torch.Tensor) -> torch.Tensor:
    """One token's width in samples (float64 scalar): the spacing of the token centres, since the tokens are
    adjacent, non-overlapping patches (``ECGEncoder.token_times``); a lone token is the patch from sample 0."""
    times = token_times.to(torch.float64)
    return times[1] - times[0] if len(times) > 1 else 2.0 * times[0] + 1.0


def overlap_weights(token_times: torch.Tensor, rpeaks: torch.Tensor, n_phases: int,
                    rr_tolerance: float | None = RR_TOLERANCE) -> torch.Tensor:
    """``[B,N,T]`` float64: the phase length (in units of one cycle) that each token's span ``[t - w/2, t + w/2)``
    shares with each frame's phase interval, summed over the usable beats it lies in (the module docstring)."""
    peaks = sorted_peaks(rpeaks)
    b, n, k = rpeaks.shape[0], token_times.shape[0], rpeaks.shape[1]
    weights = torch.zeros(b, n, n_phases, dtype=torch.float64, device=peaks.device)
    usable = pooled_beats(peaks, rr_tolerance)
    if not usable.any():  # fewer than 2 peaks, or no usable beat
        return weights
    times = token_times.to(device=peaks.device, dtype=torch.float64)
    half = token_width(times) / 2.0
    lo, hi = (times - half).expand(b, n).contiguous(), (times + half).expand(b, n)
    rr = peaks[:, 1:] - peaks[:, :-1]
    reach = 1 + math.ceil(float(2.0 * half / rr[usable].min()))  # beats one span can touch
    first = torch.searchsorted(peaks, lo, right=True) - 1  # beat holding the span's start; -1 before the first peak
    cells = torch.arange(n_phases + 1, device=peaks.device, dtype=torch.float64)
    for offset in range(reach):
        beat = first + offset
        clamped = beat.clamp(0, k - 2)
        start, end = peaks.gather(1, clamped), peaks.gather(1, clamped + 1)
        part_lo, part_hi = torch.maximum(lo, start), torch.minimum(hi, end)
        inside = (beat >= 0) & (beat <= k - 2) & usable.gather(1, clamped) & (part_hi > part_lo)
        length = torch.where(inside, end - start, 1.0)
        # phase in frame units shifted by 1/2: frame f's interval is [f, f + 1), and [T, T + 1/2) is frame 0 again
        u_lo = torch.where(inside, (part_lo - start) / length * n_phases + 0.5, 0.0)[..., None]
        u_hi = torch.where(inside, (part_hi - start) / length * n_phases + 0.5, 0.0)[..., None]
        shared = (u_hi - cells).clamp(0.0, 1.0) - (u_lo - cells).clamp(0.0, 1.0)  # [B, N, T + 1]
        weights += shared[..., :n_phases]
        weights[..., 0] += shared[..., n_phases]
    return weights / n_phases


def pool_phases(tokens: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of ``tokens [B,N,D]`` per phase under non-negative ``weights [B,N,T]``:
    ``(phase_tokens [B,T,D], mask [B,T])``, zeros and False where a phase's weights are all zero."""
    weights = weights.to(tokens.dtype)
    total = weights.sum(dim=1)  # [B, T]
    sums = torch.bmm(weights.transpose(1, 2), tokens)  # [B, T, D]
    return sums / torch.where(total > 0, total, 1.0)[..., None], total > 0


@dataclass(frozen=True)
class PhasePooler:
    """A parameter-free pooling rule, defined by its token -> phase ``weights`` (a ``PhaseWeights``).

    ``pooler(tokens [B,N,D], token_times [N], rpeaks [B,K], n_phases) -> (phase_tokens [B,T,D], mask [B,T])``;
    ``pooler.phase_weights(...)`` gives the share of every token in every phase token (what the inspector draws).
    """

    weights: PhaseWeights

    def __call__(self, tokens: torch.Tensor, token_times: torch.Tensor, rpeaks: torch.Tensor,
                 n_phases: int) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.ndim != 3 or tokens.shape[:1] != rpeaks.shape[:1] or tokens.shape[1] != token_times.shape[0]:
            raise ValueError(f"shape mismatch: tokens {tuple(tokens.shape)}, token_times {tuple(token_times.shape)}, "
                             f"rpeaks {tuple(rpeaks.shape)}")
        return pool_phases(tokens, self.weights(token_times, rpeaks, n_phases))

    def phase_weights(self, token_times: torch.Tensor, rpeaks: torch.Tensor, n_phases: int) -> torch.Tensor:
        """``[B,N,T]``: each token's share of each phase token; a valid phase's column sums to 1, an empty one to 0."""
        weights = self.weights(token_times, rpeaks, n_phases)
        total = weights.sum(dim=1, keepdim=True)
        return weights / torch.where(total > 0, total, 1.0)


#: Today's rule (the module docstring): each token to the frame nearest its centre, a plain mean per bin.
beat_phase_pool = PhasePooler(nearest_frame_weights)

PHASE_POOLERS: dict[str, PhasePooler] = {
    "beat_nearest_frame": beat_phase_pool,
    # every complete beat, whatever its RR (the rule before rhythm-aware pooling; for comparisons)
    "beat_nearest_frame_all_beats": PhasePooler(partial(nearest_frame_weights, rr_tolerance=None)),
    "beat_overlap": PhasePooler(overlap_weights),
}
