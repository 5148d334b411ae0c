"""What every reader returns (``EcgRecord``, ``CineRecord``) and the one error type they raise.

Readers never return silent zeros: anything missing, truncated or inconsistent raises
``ReaderError``, whose ``reason`` is a short machine-readable code (counted by ``prepare-ukb``)
and whose message names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy.signal import resample_poly

from ..schema import LEADS

#: Reason codes a reader may raise (prepare-ukb adds its own pairing codes on top).
READER_REASONS: tuple[str, ...] = (
    "missing_file", "corrupt_file", "unsupported_format", "bad_metadata", "missing_leads",
    "wrong_sample_count", "non_monotonic_trigger_times", "too_few_frames",
)


class ReaderError(ValueError):
    """A file that cannot be turned into a record; ``reason`` is one of ``READER_REASONS``."""

    def __init__(self, path: str | Path, reason: str, detail: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")


@dataclass(frozen=True)
class EcgRecord:
    """A 12-lead ECG: ``signal`` float32 [12, S] in ``units`` (always mV), leads in ``schema.LEADS`` order.

    ``meta`` holds format-specific extras, e.g. ``median_beats`` (float32 [12, M] mV),
    ``median_sampling_rate``, ``intervals`` (device measurements, ms / degrees / bpm) and
    ``derived_leads`` (limb leads computed from I and II because the file lacked them).
    """

    signal: np.ndarray
    sampling_rate: float
    source: str
    units: str = "mV"
    leads: tuple[str, ...] = LEADS
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Length of the strip in seconds."""
        return self.signal.shape[1] / self.sampling_rate

    def resampled(self, sampling_rate: float | None) -> "EcgRecord":
        """The record (and its median beats) at another rate (polyphase filter); None or same rate: unchanged."""
        if sampling_rate is None or sampling_rate == self.sampling_rate:
            return self
        meta = dict(self.meta)
        if "median_beats" in meta:
            meta["median_beats"] = resample_ecg(meta["median_beats"], meta["median_sampling_rate"], sampling_rate)
            meta["median_sampling_rate"] = float(sampling_rate)
        return replace(self, signal=resample_ecg(self.signal, self.sampling_rate, sampling_rate),
                       sampling_rate=float(sampling_rate), meta=meta)


@dataclass(frozen=True)
class CineRecord:
    """One cine slice over a cardiac cycle: ``frames`` float32 [T, H, W] in scanner intensity units.

    ``frame_times`` are ms after the R peak (DICOM TriggerTime), strictly increasing;
    ``cycle_ms`` is the RR interval the frames cover; ``pixel_spacing`` is (row, column) mm;
    ``slice_location`` is the slice position along the stack normal in mm; ``slice_index`` /
    ``n_slices`` say which slice of the stack was picked.
    """

    frames: np.ndarray
    frame_times: np.ndarray
    cycle_ms: float
    pixel_spacing: tuple[float, float]
    slice_location: float
    slice_index: int
    n_slices: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def require_file(path: str | Path) -> Path:
    """``path`` as a Path, or ``ReaderError(missing_file)`` when no such file exists."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(path, "missing_file", "file does not exist")
    return path


def resample_ecg(signal: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Resample [..., S] from ``rate_in`` to ``rate_out`` Hz with an anti-aliasing polyphase filter."""
    ratio = Fraction(float(rate_out) / float(rate_in)).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32, copy=False)


_LEAD_ALIASES: dict[str, str] = {lead.upper(): lead for lead in LEADS}


def canonical_lead(name: str) -> str | None:
    """Map a lead label from any file ("Lead aVR", "AVR", "v1", "MDC_ECG_LEAD_II") to ``LEADS``; None if unknown."""
    label = name.strip().upper()
    if label in _LEAD_ALIASES:
        return _LEAD_ALIASES[label]
    return _LEAD_ALIASES.get(re.sub(r"^(MDC_ECG_LEAD_|LEAD)", "", label.replace(" ", "")))


def assemble_leads(channels: Mapping[str, np.ndarray], path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stack named channels into float32 [12, S] in ``LEADS`` order.

    The limb leads III, aVR, aVL and aVF are derived from I and II (Einthoven and Goldberger)
    when a file stores only the 8 independent leads; the derived names are returned.
    Missing independent leads or unequal lengths raise ``ReaderError``.
    """
    by_lead: dict[str, np.ndarray] = {}
    for name, values in channels.items():
        lead = canonical_lead(name)
        if lead is not None:
            by_lead[lead] = np.asarray(values, dtype=np.float32)
    lengths = {lead: v.shape[-1] for lead, v in by_lead.items()}
    if len(set(lengths.values())) > 1:
        raise ReaderError(path, "wrong_sample_count", f"leads have unequal lengths {lengths}")
    derived: list[str] = []
    if "I" in by_lead and "II" in by_lead:
        i, ii = by_lead["I"], by_lead["II"]
        for lead, value in (("III", ii - i), ("aVR", -(i + ii) / 2), ("aVL", i - ii / 2), ("aVF", ii - i / 2)):
            if lead not in by_lead:
                by_lead[lead] = value
                derived.append(lead)
    missing = [lead for lead in LEADS if lead not in by_lead]
    if missing:
        raise ReaderError(path, "missing_leads", f"missing leads {missing}")
    return np.stack([by_lead[lead] for lead in LEADS]), tuple(derived)
