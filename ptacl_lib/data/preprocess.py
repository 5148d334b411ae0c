"""Signal preprocessing for training: ECG filtering and resampling, R-peak detection, cine resizing.

Everything here is a pure function of one subject's arrays; ``cache.py`` applies it to a cohort.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from scipy import signal

from ..geometry import DEMO, Geometry
from .readers.records import resample_ecg

#: Below this ECG rate the band's upper edge stays at ``DEMO_LOWPASS_HZ``; from it up, ``ecg_lowpass_hz``
#: keeps the QRS's high-frequency content (notches, slurs) up to 150 Hz, the diagnostic ECG band.
WIDE_BAND_MIN_FS = 250
DEMO_LOWPASS_HZ = 40.0
DIAGNOSTIC_LOWPASS_HZ = 150.0


def ecg_lowpass_hz(fs: float) -> float:
    """The band's upper edge at ECG rate ``fs``: 40 Hz below ``WIDE_BAND_MIN_FS`` (it also removes mains hum),
    else min(150 Hz, 0.45 fs) (mains hum is then notched: ``PreprocessConfig.mains_hz``)."""
    return DEMO_LOWPASS_HZ if fs < WIDE_BAND_MIN_FS else min(DIAGNOSTIC_LOWPASS_HZ, 0.45 * float(fs))


@dataclass(frozen=True)
class PreprocessConfig:
    """What the models see: the input geometry (``ptacl_lib.geometry``; default ``demo``, sized for CPU training
    on the synthetic cohort) and the ECG filters. The band's upper edge follows the geometry's ECG rate
    (``ecg_lowpass_hz``)."""

    geometry: Geometry = DEMO
    highpass_hz: float = 0.5      # baseline-wander removal
    rpeak_method: str = "consensus"  # or any one method of ``neurokit2.ecg_peaks``
    mains_hz: float = 50.0        # mains frequency (50 Europe, 60 the Americas), notched with its harmonics
                                  # where the band reaches it

    @property
    def lowpass_hz(self) -> float:
        """The band's upper edge at the geometry's ECG rate."""
        return ecg_lowpass_hz(self.geometry.ecg_hz)

    def filters(self) -> dict[str, object]:
        """The settings besides the geometry, the derived upper edge included (a run's ``preprocess`` record)."""
        return {"highpass_hz": self.highpass_hz, "lowpass_hz": self.lowpass_hz, "mains_hz": self.mains_hz,
                "rpeak_method": self.rpeak_method}

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form: the geometry's numbers and the filters (a cache's key and ``meta.json``)."""
        return {"geometry": self.geometry.numbers(), **self.filters()}

    @classmethod
    def from_dict(cls, record: dict[str, object], geometry: Geometry | None = None) -> "PreprocessConfig":
        """From ``to_dict``'s or ``filters``'s form (then ``geometry`` gives the geometry); derived keys ignored
        (and an earlier version's ``notch_hz`` read as ``mains_hz``)."""
        if geometry is None:
            geometry = Geometry.from_dict(record["geometry"])  # type: ignore[arg-type]
        record = {("mains_hz" if k == "notch_hz" else k): v for k, v in record.items()}
        names = {f.name for f in fields(cls)} - {"geometry"}
        return cls(geometry=geometry, **{k: v for k, v in record.items() if k in names})  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _butter_bandpass(fs: float, low_hz: float, high_hz: float) -> np.ndarray:
    """The 4th-order Butterworth band-pass of a rate and band, designed once (every ECG of a cohort shares it)."""
    return signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")


def bandpass(ecg: np.ndarray, fs: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass per lead: the high-pass edge removes baseline wander."""
    sos = _butter_bandpass(float(fs), float(low_hz), float(high_hz))
    return signal.sosfiltfilt(sos, ecg, axis=-1).astype(np.float32)


def notch_mains(ecg: np.ndarray, fs: float, mains_hz: float, upper_hz: float) -> np.ndarray:
    """Zero-phase notches (Q 30) at ``mains_hz`` and its harmonics below ``upper_hz`` and Nyquist."""
    out = ecg
    for f0 in np.arange(mains_hz, min(upper_hz, 0.5 * fs), mains_hz):
        b, a = signal.iirnotch(f0, 30.0, fs=fs)
        out = signal.filtfilt(b, a, out, axis=-1)
    return np.asarray(out, dtype=np.float32)


def preprocess_ecg(ecg: np.ndarray, fs: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass (and notch mains hum where the band reaches it), then resample a ``[12, S]`` ECG (mV)
    to the geometry's ``ecg_hz``.

    Per-lead amplitude normalisation is applied afterwards with cohort-level statistics
    (see ``cache.LeadScaler``) so that between-subject voltage differences, which carry
    LV mass, survive.
    """
    if not np.isfinite(ecg).all():
        raise ValueError("ECG contains NaN or infinite samples")
    filtered = bandpass(ecg, fs, config.highpass_hz, config.lowpass_hz)
    if config.mains_hz and config.lowpass_hz > config.mains_hz:
        filtered = notch_mains(filtered, fs, config.mains_hz, config.lowpass_hz)
    return resample_ecg(filtered, fs, config.geometry.ecg_hz)


#: The detectors the consensus polls (``neurokit2.ecg_peaks`` methods), chosen on the benchmark
#: ``benchmarks/bench_rpeaks.py``: each alone keeps sensitivity >= 0.97 on the real record there.
CONSENSUS_DETECTORS: tuple[str, ...] = ("neurokit", "elgendi2010", "martinez2004", "manikandan2012")
#: A beat is kept when at least this many detectors put a peak within ``CONSENSUS_WINDOW_S`` of each other.
CONSENSUS_VOTES = 2
CONSENSUS_WINDOW_S = 0.10
#: No two R peaks closer than this (240 bpm): the larger of two closer detections wins.
REFRACTORY_S = 0.20
#: Detections below this fraction of the recording's median R magnitude are dropped (T waves, noise).
MIN_RELATIVE_AMPLITUDE = 0.35
MIRROR_GAP_S = 0.3
EDGE_S = 0.02


def qrs_magnitude(ecg: np.ndarray, fs: float, leads: np.ndarray | None = None) -> np.ndarray:
    """Polarity-free QRS signal: the spatial magnitude of the 5-30 Hz band of the chosen leads.

    ``ecg`` is ``[L, S]`` with any number of leads; ``leads`` (bool ``[L]``) leaves out leads that
    quality control found flat, saturated or noisy (``ecg_quality.assess_ecg_quality``). A negative
    QRS in one lead (axis deviation, bundle branch block, an ectopic beat) adds as much as a positive one.
    """
    ecg = np.atleast_2d(np.asarray(ecg, dtype=np.float32))
    chosen = np.ones(len(ecg), dtype=bool) if leads is None else np.asarray(leads, dtype=bool).copy()
    if not chosen.any():
        raise ValueError("no usable lead to detect R peaks on")
    ecg = ecg[chosen]
    filtered = bandpass(ecg, fs, 5.0, min(30.0, 0.45 * fs))
    return np.sqrt((filtered ** 2).sum(axis=0))


def _padded(magnitude: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """``magnitude`` with one second of its mirror image on each side, set off by ``MIRROR_GAP_S`` of
    silence: the detectors' moving thresholds have settled at the first beat and still see the last
    one, and a beat near an edge is far enough from its own mirror image not to fall in a detector's
    refractory period. Returns the padded signal and the offset of sample 0."""
    mirror = min(int(fs), len(magnitude) - 1)
    gap = np.zeros(int(MIRROR_GAP_S * fs), dtype=magnitude.dtype)
    head, tail = magnitude[1:mirror + 1][::-1], magnitude[-mirror - 1:-1][::-1]
    return np.concatenate([head, gap, magnitude, gap, tail]), mirror + len(gap)


def _run_detector(method: str, magnitude: np.ndarray, fs: float) -> np.ndarray:
    """One neurokit2 detector on ``magnitude`` (padded by ``_padded``): sample indices of ``magnitude``."""
    import neurokit2 as nk

    padded, offset = _padded(magnitude, fs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ecg_findpeaks is what ecg_peaks runs, without the per-sample table ecg_peaks builds around its answer
        info = nk.ecg_findpeaks(padded, sampling_rate=int(round(fs)), method=method.lower())
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64) - offset


def _to_local_maximum(peaks: np.ndarray, magnitude: np.ndarray, half: int) -> np.ndarray:
    """Each detection moved to the largest magnitude within ``half`` samples (unique, sorted)."""
    n = len(magnitude)
    moved = []
    for p in peaks[(peaks >= -half) & (peaks < n + half)]:
        lo, hi = max(0, p - half), min(n, p + half + 1)
        if hi - lo >= 2:
            moved.append(lo + int(np.argmax(magnitude[lo:hi])))
    return np.unique(np.asarray(moved, dtype=np.int64))


def _vote(candidates: list[np.ndarray], window: int, votes: int) -> np.ndarray:
    """Peaks that ``votes`` detectors agree on. Detections form a cluster while each lies within
    ``window`` of the previous one (so the lobes of one wide QRS stay one cluster); a cluster with
    detections from ``votes`` or more detectors is a beat, placed where the
    first detector of the list that voted put it (``candidates`` in ``CONSENSUS_DETECTORS`` order), so
    that the others decide whether there is a beat but not on which notch of a wide QRS it sits."""
    if not candidates:
        return np.zeros(0, dtype=np.int64)
    points = np.concatenate(candidates)
    owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(candidates)])
    order = np.lexsort((owner, points))
    points, owner = points[order], owner[order]
    kept, first = [], 0
    for i in range(1, len(points) + 1):
        if i == len(points) or points[i] - points[i - 1] > window:
            members, who = points[first:i], owner[first:i]
            if len(set(who.tolist())) >= votes:
                kept.append(int(members[np.argmin(who)]))
            first = i
    return np.unique(np.asarray(kept, dtype=np.int64))


def detect_rpeaks(ecg: np.ndarray, fs: float, method: str = "consensus",
                  leads: np.ndarray | None = None) -> np.ndarray:
    """R-peak sample indices of an ``[L, S]`` ECG (any number of leads, mV).

    The detectors run on ``qrs_magnitude`` (polarity-free, over the usable ``leads``). With
    ``method="consensus"`` each of ``CONSENSUS_DETECTORS`` proposes peaks, every proposal moves to the
    local magnitude maximum within 40 ms, and a beat is kept where at least ``CONSENSUS_VOTES``
    detectors agree within ``CONSENSUS_WINDOW_S`` (a detector that fails on a recording abstains);
    any other ``method`` runs that one ``neurokit2.ecg_peaks`` method. Then: a maximum within 40 ms
    of the recording's first or last sample cannot be told from a beat cut off and is dropped; detections below
    ``MIN_RELATIVE_AMPLITUDE`` of the median R magnitude are dropped; of two detections closer than
    ``REFRACTORY_S`` the larger is kept. Measured in ``benchmarks/bench_rpeaks.py``.
    """
    magnitude = qrs_magnitude(ecg, fs, leads)
    n, half = len(magnitude), max(1, int(0.04 * fs))
    if n < 2 * half + 2:
        raise ValueError(f"ECG of {n} samples is too short to detect R peaks")
    methods = CONSENSUS_DETECTORS if method == "consensus" else (method,)
    candidates = []
    for name in methods:
        try:
            candidates.append(_to_local_maximum(_run_detector(name, magnitude, fs), magnitude, half))
        except Exception as err:  # noqa: BLE001 - a detector that breaks on one recording abstains
            if len(methods) == 1:
                raise ValueError(f"R-peak detector {name!r} failed: {err}") from err
    votes = min(CONSENSUS_VOTES, len(methods))
    found = _vote(candidates, max(1, int(CONSENSUS_WINDOW_S * fs)), votes)
    edge = max(1, int(EDGE_S * fs))
    found = found[(found >= edge) & (found < n - edge)]
    if len(found) > 2:
        found = found[magnitude[found] >= MIN_RELATIVE_AMPLITUDE * np.median(magnitude[found])]
    refractory = int(REFRACTORY_S * fs)
    kept: list[int] = []
    for p in found.tolist():
        if kept and p - kept[-1] < refractory:
            if magnitude[p] > magnitude[kept[-1]]:
                kept[-1] = p
        else:
            kept.append(p)
    return np.asarray(kept, dtype=np.int64)


def rescale_peaks(peaks: np.ndarray, fs: float, to_fs: float) -> np.ndarray:
    """Map sample indices from ``fs`` to ``to_fs``."""
    return np.rint(np.asarray(peaks, dtype=np.float64) * to_fs / fs).astype(np.int64)


def resize_cine(stack: np.ndarray, frames: int, image_size: int) -> np.ndarray:
    """Uniformly subsample a ``[S, T, H, W]`` stack's frames over the cycle and area-resample each to
    ``image_size``², in [0, 1]: ``[S, frames, image_size, image_size]``.

    The stack is min-max normalised as a whole, so that slices keep their relative brightness. Frame ``k``
    of the result still shows cardiac phase ``k / frames`` when the input frames are evenly spaced over one
    RR interval starting at the R peak.
    """
    import torch  # here, so that prepare-ukb's readers and quality checks run without torch
    import torch.nn.functional as F

    s, t, h, w = stack.shape
    if frames > t:
        raise ValueError(f"cine has {t} frames, fewer than the {frames} requested")
    if image_size > min(h, w):
        raise ValueError(f"cine frames are {h}x{w} pixels, smaller than the {image_size} requested (no upsampling)")
    keep = np.floor(np.arange(frames) * t / frames).astype(np.int64)
    chosen = torch.from_numpy(np.ascontiguousarray(stack[:, keep], dtype=np.float32)).reshape(s * frames, 1, h, w)
    if (h, w) != (image_size, image_size):
        chosen = F.interpolate(chosen, size=(image_size, image_size), mode="area")
    out = chosen.reshape(s, frames, image_size, image_size).numpy()
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
