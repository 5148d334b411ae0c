"""Ventricular volume over the cardiac cycle, timed by the ECG.

Time runs from the R peak. After QRS onset plus the electromechanical delay the ventricle ejects
until end-systole near the end of the T wave, stays at end-systolic volume through isovolumic
relaxation, fills rapidly, fills slowly (diastasis) and gets the atrial kick that follows the P
wave and ends at the next QRS onset. Each phase is a smooth cosine ramp, so the curve is exactly
at end-diastolic volume from the QRS onset until ejection starts and exactly at end-systolic
volume during isovolumic relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .latent import SubjectLatent

_ATRIAL_DELAY_S = 0.06     # P onset to the start of atrial contraction
_SLOW_FILL_FRACTION = 0.08


@dataclass(frozen=True)
class ChamberTiming:
    """Event times of one ventricle, in seconds after the R peak (diastolic events relative to the next R)."""

    ejection_start: float
    end_systole: float
    fill_start: float
    rapid_fill: float          # duration of rapid filling
    qrs_lead: float            # QRS onset of the next beat is this long before its R
    atrial_duration: float
    early_fraction: float      # share of the stroke volume refilled by rapid filling


def chamber_timings(lat: SubjectLatent, r_lag_s: float, rr_s: float) -> tuple[ChamberTiming, ChamberTiming]:
    """LV and RV timings. The RV ejects a little later, much later in RBBB."""
    ms = 1e-3
    atrial_duration = lat.pr_ms * ms - _ATRIAL_DELAY_S
    next_qrs = rr_s - r_lag_s
    ej = lat.emd_ms * ms - r_lag_s
    es = lat.qt_ms * ms - r_lag_s + lat.es_delay_ms * ms
    rv_shift = (0.035, 0.025) if lat.conduction == "RBBB" else (0.01, 0.015)

    def chamber(ejection: float, end_systole: float, ivrt: float) -> ChamberTiming:
        fill = min(end_systole + ivrt, next_qrs - 0.06)
        return ChamberTiming(ejection_start=ejection, end_systole=end_systole, fill_start=fill,
                             rapid_fill=lat.rapid_fill_ms * ms, qrs_lead=r_lag_s,
                             atrial_duration=atrial_duration, early_fraction=lat.early_fill_fraction)

    lv = chamber(ej, es, lat.ivrt_ms * ms)
    rv = chamber(ej + rv_shift[0], es + rv_shift[1], 0.8 * lat.ivrt_ms * ms)
    return lv, rv


def _ramp(t: np.ndarray, start: np.ndarray | float, stop: np.ndarray | float, power: float = 1.0) -> np.ndarray:
    """0 before ``start``, 1 after ``stop``, a cosine in between (``power`` < 1 makes it front-loaded)."""
    u = np.clip((t - start) / np.maximum(np.asarray(stop) - start, 1e-6), 0.0, 1.0) ** power
    return 0.5 * (1.0 - np.cos(np.pi * u))


def ventricular_volume(t: np.ndarray, rr: np.ndarray | float, edv: float, esv: float,
                       timing: ChamberTiming) -> np.ndarray:
    """Volume (mL) at ``t`` seconds after R in a beat of length ``rr`` (both broadcastable)."""
    sv = edv - esv
    fill_end = np.asarray(rr) - timing.qrs_lead
    atrial_start = np.maximum(fill_end - timing.atrial_duration, timing.fill_start)
    rapid_end = np.minimum(timing.fill_start + timing.rapid_fill, fill_end)
    early, slow = timing.early_fraction, _SLOW_FILL_FRACTION
    filled = (early * _ramp(t, timing.fill_start, rapid_end, 0.6)
              + slow * np.clip((t - timing.fill_start) / (fill_end - timing.fill_start), 0.0, 1.0)
              + (1.0 - early - slow) * _ramp(t, atrial_start, fill_end))
    return edv - sv * _ramp(t, timing.ejection_start, timing.end_systole, 0.8) + sv * filled
