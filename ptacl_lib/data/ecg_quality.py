"""Per-subject ECG signal quality: flat, saturated and noisy leads, arm-lead reversal, a score.

Checks, each on one lead of a ``[12, S]`` ECG in mV (lead order ``schema.LEADS``):

- **flat**: peak-to-peak below ``FLAT_MV`` (a disconnected or missing lead);
- **saturated**: more than ``SATURATED_FRACTION`` of the samples sit on the lead's extreme value
  (the amplifier clipped), or any sample beyond ``RAIL_MV``;
- **noisy**: high-frequency noise (power above 40 Hz) above ``NOISE_RATIO`` of the median QRS-band
  (5-30 Hz) power of the recording's non-flat leads (a median, so that a lead with a small QRS but a
  clean trace is not called noisy). The noise level reported per subject is the median of this
  ratio over the usable leads;
- **arm-lead reversal** (``lead_reversal``): lead I's QRS points down *and* aVR's points up. With the
  arm electrodes swapped lead I inverts and aVR and aVL trade places; in a normal axis aVR points
  down. Extreme right-axis deviation (dextrocardia) gives the same picture, so it is a flag, not a verdict.

``score`` is the fraction of usable leads (neither flat, saturated nor noisy) times the median
correlation of each beat (-0.2 s to +0.4 s around its R peak) with the average beat, on lead II
(or the first usable lead); a recording with fewer than three R peaks scores 0. neurokit2's
``ecg_quality(method="averageQRS")`` was tried for this term and left out: on clean synthetic
recordings it ranged from 0.33 to 0.71, too spread to threshold. neurokit2's detectors find the beats.
``prepare-ukb --min-ecg-quality`` skips subjects
below the threshold and keeps the rest with their flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .preprocess import bandpass, detect_rpeaks
from .schema import LEADS

FLAT_MV = 0.05
SATURATED_FRACTION = 0.05
RAIL_MV = 20.0
NOISE_RATIO = 0.5
#: Samples of QRS around each R peak (±) that decide a lead's QRS polarity, in seconds.
_QRS_HALF_S = 0.05


@dataclass(frozen=True)
class EcgQuality:
    """One subject's ECG quality (see the module docstring)."""

    score: float
    noise_level: float
    flat_leads: tuple[str, ...] = ()
    saturated_leads: tuple[str, ...] = ()
    noisy_leads: tuple[str, ...] = ()
    lead_reversal: bool = False
    rpeaks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), compare=False, repr=False)

    @property
    def usable_leads(self) -> np.ndarray:
        """bool [12]: leads neither flat, saturated nor noisy."""
        bad = set(self.flat_leads) | set(self.saturated_leads) | set(self.noisy_leads)
        return np.array([lead not in bad for lead in LEADS])

    @property
    def flags(self) -> tuple[str, ...]:
        """Short names of what was found, e.g. ``("flat:V1", "lead_reversal")``; empty when clean."""
        found = [f"flat:{lead}" for lead in self.flat_leads] + [f"saturated:{lead}" for lead in self.saturated_leads]
        found += [f"noisy:{lead}" for lead in self.noisy_leads]
        return (*found, *(("lead_reversal",) if self.lead_reversal else ()))

    def columns(self) -> dict[str, object]:
        """The manifest / errors.csv columns."""
        return {"ecg_quality": round(self.score, 3), "ecg_noise": round(self.noise_level, 3),
                "ecg_flags": ";".join(self.flags)}


def _band_power(ecg: np.ndarray, fs: float, low: float, high: float) -> np.ndarray:
    return np.mean(bandpass(ecg, fs, low, high) ** 2, axis=-1)


def _qrs_polarity(lead: np.ndarray, peaks: np.ndarray, half: int) -> float:
    """Mean over beats of (max + min) of the baseline-free QRS: > 0 points up, < 0 down."""
    values = [lead[max(0, p - half): p + half + 1] for p in peaks]
    return float(np.mean([w.max() + w.min() for w in values if len(w)])) if values else 0.0


def beat_template_correlation(lead: np.ndarray, peaks: np.ndarray, fs: float) -> float:
    """Median Pearson correlation of each beat (-0.2 s..+0.4 s around R) with the average beat; 0 if < 3 beats."""
    before, after = int(0.2 * fs), int(0.4 * fs)
    beats = np.stack([lead[p - before: p + after] for p in peaks if p >= before and p + after <= len(lead)]) \
        if len(peaks) else np.zeros((0, before + after))
    if len(beats) < 3:
        return 0.0
    centred = beats - beats.mean(axis=1, keepdims=True)
    template = centred.mean(axis=0)
    denominator = np.linalg.norm(centred, axis=1) * np.linalg.norm(template)
    correlation = centred @ template / np.maximum(denominator, 1e-12)
    return float(np.clip(np.median(correlation), 0.0, 1.0))


def assess_ecg_quality(ecg: np.ndarray, fs: float) -> EcgQuality:
    """The quality of a ``[12, S]`` ECG in mV at ``fs`` Hz (module docstring)."""
    ecg = np.asarray(ecg, dtype=np.float32)
    if ecg.ndim != 2 or ecg.shape[0] != len(LEADS):
        raise ValueError(f"expected a [12, S] ECG, got shape {ecg.shape}")
    span = ecg.max(axis=1) - ecg.min(axis=1)
    flat = span < FLAT_MV
    at_edge = np.mean((ecg >= ecg.max(axis=1, keepdims=True)) | (ecg <= ecg.min(axis=1, keepdims=True)), axis=1)
    saturated = ~flat & ((at_edge > SATURATED_FRACTION) | (np.abs(ecg).max(axis=1) > RAIL_MV))
    centred = ecg - np.median(ecg, axis=1, keepdims=True)
    qrs_power = _band_power(centred, fs, 5.0, 30.0)
    reference = np.median(qrs_power[~flat]) if (~flat).any() else 1.0
    noise = _band_power(centred, fs, 40.0, 0.45 * fs) / max(float(reference), 1e-12)
    noisy = ~flat & ~saturated & (noise > NOISE_RATIO)
    usable = ~(flat | saturated | noisy)
    names = np.asarray(LEADS)
    if not usable.any():
        return EcgQuality(0.0, float(np.median(noise)), tuple(names[flat]), tuple(names[saturated]),
                          tuple(names[noisy]))
    peaks = detect_rpeaks(ecg, fs, leads=usable)
    filtered = bandpass(centred, fs, 0.5, min(40.0, 0.45 * fs))
    half = int(_QRS_HALF_S * fs)
    lead_i, avr = LEADS.index("I"), LEADS.index("aVR")
    reversal = bool(usable[lead_i] and usable[avr] and len(peaks) >= 2
                    and _qrs_polarity(filtered[lead_i], peaks, half) < 0 < _qrs_polarity(filtered[avr], peaks, half))
    lead = LEADS.index("II") if usable[LEADS.index("II")] else int(np.argmax(usable))
    template = beat_template_correlation(filtered[lead], peaks, fs)
    return EcgQuality(score=float(usable.mean() * template), noise_level=float(np.median(noise[usable])),
                      flat_leads=tuple(names[flat]), saturated_leads=tuple(names[saturated]),
                      noisy_leads=tuple(names[noisy]), lead_reversal=reversal, rpeaks=peaks)
