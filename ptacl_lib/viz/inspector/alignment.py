"""What one model says about one subject's ECG-phase × CMR-frame alignment, and how well it aligns.

Nothing here draws. ``subject_alignments`` runs the model once per subject and keeps the local
``T x T`` similarity (``ptacl_lib.losses.local_similarity``) together with every ECG token's share of
every phase token, computed by the model's own pooling rule (``PhasePooler.phase_weights``), so the
weights the inspector draws are exactly the ones the model averaged each phase token with.

**Scores.** Row ``k`` of the similarity compares ECG phase ``k`` with every CMR frame. A row is
*correct* when its argmax is frame ``k`` (diagonal accuracy). The phase error of a row is the
distance from its argmax to ``k`` measured **around the cycle**: the cine spans one RR interval
that starts at an R peak, so frame ``T - 1`` is followed by frame 0 of the next beat, and a linear
``|argmax - k|`` would call that one-frame slip ``T - 1`` frames. One frame lasts ``RR / T``, with
RR the subject's mean R-R interval, which turns frames into milliseconds. Phases that received no
ECG token are left out as rows *and* as candidate columns, as in the local loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ...data import collate
from ...data.rhythm import RhythmSummary, rhythm_summary
from ...losses import local_similarity
from ...models import PTACLModel
from ...runtime import autocast, to_device


@dataclass(frozen=True)
class AlignmentMetrics:
    """Per-subject alignment scores over the ``n_scored`` phases that received ECG tokens (NaN if none)."""

    diagonal_accuracy: float  #: fraction of rows whose argmax is their own frame
    phase_error_frames: float  #: mean circular distance argmax -> own frame, in frames
    phase_error_ms: float  #: the same in milliseconds (one frame = RR / T)
    n_scored: int


def circular_frame_distance(a: np.ndarray, b: np.ndarray, n_frames: int) -> np.ndarray:
    """Distance between frame indices on a cycle of ``n_frames``: ``min(|a - b|, n - |a - b|)``."""
    d = np.abs(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64)) % n_frames
    return np.minimum(d, n_frames - d)


def row_argmax(similarity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Best-matching frame of each ECG phase among the valid frames; -1 for invalid rows (or none valid)."""
    sim = np.asarray(similarity, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or valid.shape != (sim.shape[0],):
        raise ValueError(f"expected a square [T, T] similarity and a [T] mask, got {sim.shape} and {valid.shape}")
    best = np.full(sim.shape[0], -1, dtype=np.int64)
    if valid.any():
        masked = np.where(valid[None, :], sim, -np.inf)
        best[valid] = np.argmax(masked[valid], axis=1)
    return best


def alignment_metrics(similarity: np.ndarray, valid: np.ndarray, rr_ms: float) -> AlignmentMetrics:
    """Diagonal accuracy and mean circular phase error of a ``[T, T]`` similarity (see the module docstring)."""
    best = row_argmax(similarity, valid)
    rows = np.flatnonzero(best >= 0)
    if len(rows) == 0:
        return AlignmentMetrics(float("nan"), float("nan"), float("nan"), 0)
    n_frames = len(best)
    error = circular_frame_distance(best[rows], rows, n_frames).astype(np.float64)
    return AlignmentMetrics(diagonal_accuracy=float(np.mean(best[rows] == rows)),
                            phase_error_frames=float(error.mean()),
                            phase_error_ms=float(error.mean() * rr_ms / n_frames), n_scored=len(rows))


def phase_segments(pooled: np.ndarray, patch: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of the tokens where ``pooled [N]`` is True, adjacent tokens merged.

    Token ``n`` covers samples ``[n * patch, (n + 1) * patch)`` (the ECG encoder's patching).
    """
    hits = np.flatnonzero(np.asarray(pooled, dtype=bool))
    segments: list[tuple[int, int]] = []
    for n in hits:
        start, stop = int(n) * patch, (int(n) + 1) * patch
        if segments and segments[-1][1] == start:
            segments[-1] = (segments[-1][0], stop)
        else:
            segments.append((start, stop))
    return segments


@dataclass(frozen=True)
class SubjectAlignment:
    """One model's outputs for one subject, as the inspector needs them (numpy, CPU)."""

    similarity: np.ndarray  #: float32 [T, T]; [k, l] = cosine of ECG phase k and CMR frame l
    valid: np.ndarray  #: bool [T]; phase k received at least one ECG token
    token_weights: np.ndarray  #: float32 [N, T]; token n's share of phase token k (a valid phase's column sums to 1)
    patch: int  #: ECG samples per token
    rpeaks: np.ndarray  #: int64 [K]; R peaks in samples of the model's ECG
    fs: float  #: sampling rate of the model's ECG (Hz)
    pooling: str = ""  #: the model's phase-pooling rule (``ModelConfig.phase_pooling``)

    @property
    def n_phases(self) -> int:
        return self.similarity.shape[0]

    @property
    def rr_ms(self) -> float:
        """Mean R-R interval in milliseconds (the duration the cine spans)."""
        return float(np.mean(np.diff(self.rpeaks))) * 1000.0 / self.fs

    @property
    def rhythm(self) -> RhythmSummary:
        """Which beats the pooling used (``ptacl_lib.data.rhythm``: RR within ±20 % of the median, not after
        a premature beat)."""
        return rhythm_summary(self.rpeaks, self.fs)

    def excluded_beats(self) -> list[tuple[int, int]]:
        """Sample ranges ``[R_j, R_{j+1})`` of the complete beats left out of the pooling."""
        peaks = np.sort(self.rpeaks)
        return [(int(peaks[j]), int(peaks[j + 1])) for j in np.flatnonzero(~self.rhythm.usable)]

    def argmax(self) -> np.ndarray:
        """Best frame per ECG phase (-1 where the phase is invalid)."""
        return row_argmax(self.similarity, self.valid)

    def metrics(self) -> AlignmentMetrics:
        return alignment_metrics(self.similarity, self.valid, self.rr_ms)

    def weights(self, phase: int) -> np.ndarray:
        """``[N]``: each ECG token's share of phase token ``phase`` (zeros where the phase is empty)."""
        if not 0 <= phase < self.n_phases:
            raise ValueError(f"phase {phase} outside 0..{self.n_phases - 1}")
        return self.token_weights[:, phase]

    def segments(self, phase: int) -> list[tuple[int, int]]:
        """ECG sample ranges pooled into ``phase`` (tokens of non-zero weight), over every usable complete beat."""
        return phase_segments(self.weights(phase) > 0, self.patch)


@torch.no_grad()
def subject_alignments(model: PTACLModel, items: Sequence[dict[str, Any]], fs: float,
                       device: torch.device = torch.device("cpu")) -> list[SubjectAlignment]:
    """Run ``model`` once on ``PTACLDataset`` items (ECG at ``fs`` Hz, one batch) and keep what the inspector shows."""
    batch = to_device(collate(list(items)), device)
    was_training = model.training
    model.eval()
    try:
        with autocast(device):
            out = model(batch)
    finally:
        model.train(was_training)
    similarity = local_similarity(out["ecg_phase"], out["cmr_frames"]).float().cpu().numpy()
    encoder = model.ecg_encoder
    token_times = encoder.token_times(batch["ecg"].shape[-1] // encoder.patch, device=device)
    weights = model.phase_pool.phase_weights(token_times, batch["rpeaks"], similarity.shape[1])
    weights = weights.to(torch.float32).cpu().numpy()
    valid, rpeaks = out["phase_mask"].cpu().numpy(), batch["rpeaks"].cpu().numpy()
    return [SubjectAlignment(similarity=similarity[b], valid=valid[b], token_weights=weights[b],
                             patch=int(encoder.patch), rpeaks=rpeaks[b][rpeaks[b] >= 0], fs=float(fs),
                             pooling=model.config.phase_pooling)
            for b in range(len(items))]
