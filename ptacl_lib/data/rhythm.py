"""Which beats are regular enough to pool: the rhythm rule behind the phase tokens (docs/design.md §3).

Phase pooling assumes that every beat between two R peaks is the same cardiac cycle stretched to
its RR interval. That fails for an ectopic beat (short RR), the compensatory pause after it (long
RR), a missed or doubled detection, and the irregular RR of atrial fibrillation. The rule:

- Beat ``j`` is the interval ``[R_j, R_{j+1})`` and has ``RR_j = R_{j+1} - R_j``. The reference is
  the median RR of the recording's beats (the lower median for an even count).
- Beat ``j`` is *usable* when ``|RR_j - median| <= RR_TOLERANCE * median`` **and** the beat before
  it was not premature (``RR_{j-1} >= (1 - RR_TOLERANCE) * median``): the beat after a premature
  beat carries the compensatory pause and an atypical filling, even when its RR happens to fit.
- A recording with fewer than ``MIN_USABLE_BEATS`` usable beats is flagged ``too_few_beats``: its
  phase tokens would stand on one or two cycles (or none), and it is reported, not silently pooled.

``usable_beats`` is the tensor form the pooling uses (``models.phase_pooling``); ``rhythm_summary``
is the per-subject report the preprocessing cache and ``prepare-ukb`` write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Relative tolerance of a usable beat's RR around the recording's median RR (±20 %).
RR_TOLERANCE = 0.20
#: Fewer usable beats than this: the subject is flagged ``too_few_beats``.
MIN_USABLE_BEATS = 3


def usable_beats(peaks: torch.Tensor, tolerance: float = RR_TOLERANCE) -> torch.Tensor:
    """``[B, K-1]`` bool: beat ``j`` of each row (between sorted peaks ``j`` and ``j+1``) is usable.

    ``peaks`` is ``[B, K]`` float, sorted along K, padded with ``inf`` (as ``token_phase_bins`` builds it).
    """
    import torch

    rr = peaks[:, 1:] - peaks[:, :-1]
    exists = torch.isfinite(rr) & (rr > 0)
    median = torch.where(exists, rr, torch.nan).nanmedian(dim=1, keepdim=True).values
    regular = exists & ((rr - median).abs() <= tolerance * median)
    premature = exists & (rr < (1.0 - tolerance) * median)
    after_premature = torch.zeros_like(premature)
    after_premature[:, 1:] = premature[:, :-1]
    return regular & ~after_premature


@dataclass(frozen=True)
class RhythmSummary:
    """One recording's beats: how many, how many left out of the pooling, and the flag."""

    n_beats: int  #: complete beats (detected R peaks minus one)
    n_excluded: int  #: complete beats left out by the RR rule
    median_rr_ms: float  #: NaN without a complete beat
    usable: np.ndarray  #: bool [n_beats]

    @property
    def n_usable(self) -> int:
        return self.n_beats - self.n_excluded

    @property
    def flag(self) -> str:
        """``"ok"`` or ``"too_few_beats"`` (fewer than ``MIN_USABLE_BEATS`` usable beats)."""
        return "ok" if self.n_usable >= MIN_USABLE_BEATS else "too_few_beats"

    def columns(self) -> dict[str, object]:
        """The manifest / report columns."""
        return {"n_beats": self.n_beats, "n_excluded_beats": self.n_excluded,
                "median_rr_ms": round(self.median_rr_ms, 1), "rhythm_flag": self.flag}


def rhythm_summary(rpeaks: np.ndarray, fs: float, tolerance: float = RR_TOLERANCE) -> RhythmSummary:
    """Apply the module's rule to one recording's R peaks (sample indices at ``fs``; negatives are padding)."""
    peaks = np.sort(np.asarray(rpeaks, dtype=np.float64)[np.asarray(rpeaks) >= 0])
    if len(peaks) < 2:
        return RhythmSummary(0, 0, float("nan"), np.zeros(0, dtype=bool))
    import torch

    usable = usable_beats(torch.from_numpy(peaks)[None], tolerance)[0].numpy()
    return RhythmSummary(n_beats=len(usable), n_excluded=int((~usable).sum()),
                         median_rr_ms=float(np.median(np.diff(peaks))) * 1000.0 / fs, usable=usable)
