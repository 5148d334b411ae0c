"""Signal preprocessing for training: ECG filtering and resampling, R-peak detection, cine resizing.

Everything here is a pure function of one subject's arrays; ``cache.py`` applies it to a cohort.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal

from .readers.records import resample_ecg


@dataclass(frozen=True)
class PreprocessConfig:
    """What the models see. Defaults are sized for CPU training on the synthetic cohort."""

    target_fs: int = 100          # ECG sampling rate after resampling (Hz)
    highpass_hz: float = 0.5      # baseline-wander removal
    lowpass_hz: float = 40.0      # upper band edge; also removes mains hum
    n_frames: int = 25            # cine frames kept per cycle (uniformly subsampled)
    image_size: int = 32          # cine frame side after area resampling
    rpeak_method: str = "neurokit"  # any method of ``neurokit2.ecg_peaks``

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (stored in run configs and cache keys)."""
        return asdict(self)


def bandpass(ecg: np.ndarray, fs: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass per lead: the high-pass edge removes baseline wander."""
    sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, ecg, axis=-1).astype(np.float32)


def preprocess_ecg(ecg: np.ndarray, fs: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass then resample a ``[12, S]`` ECG (mV) to ``config.target_fs``.

    Per-lead amplitude normalisation is applied afterwards with cohort-level statistics
    (see ``cache.LeadScaler``) so that between-subject voltage differences, which carry
    LV mass, survive.
    """
    if not np.isfinite(ecg).all():
        raise ValueError("ECG contains NaN or infinite samples")
    return resample_ecg(bandpass(ecg, fs, config.highpass_hz, config.lowpass_hz), fs, config.target_fs)


def detect_rpeaks(ecg: np.ndarray, fs: float, method: str = "neurokit") -> np.ndarray:
    """R-peak sample indices of a 12-lead ECG, detected with neurokit2 on a polarity-free lead.

    The detector runs on the spatial magnitude of the band-passed limb and precordial leads,
    so a negative QRS in one lead (axis deviation, bundle branch block) does not hide a beat.
    Each detection is moved to the local maximum of the magnitude within ±40 ms, and detections
    below half the recording's median R amplitude are dropped.
    """
    import neurokit2 as nk

    filtered = bandpass(ecg, fs, 5.0, min(30.0, 0.45 * fs))
    magnitude = np.sqrt((filtered[[0, 1, 6, 7, 8, 9, 10, 11]] ** 2).sum(axis=0))
    # One second of silence on each side lets the detector's moving thresholds settle before the
    # first beat and after the last one, which it otherwise misses.
    pad = int(fs)
    _, info = nk.ecg_peaks(np.pad(magnitude, pad), sampling_rate=int(fs), method=method)
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64) - pad
    n, half = len(magnitude), max(1, int(0.04 * fs))
    refined = []
    for p in peaks[(peaks >= -half) & (peaks < n + half)]:
        lo, hi = max(0, p - half), min(n, p + half + 1)
        if hi - lo < 2:
            continue
        q = lo + int(np.argmax(magnitude[lo:hi]))
        if 0 < q < n - 1:  # a maximum on the recording's edge is a beat cut off, not an R peak
            refined.append(q)
    found = np.unique(np.asarray(refined, dtype=np.int64))
    if len(found) > 2:  # amplitude consistency: a T wave beside the padding is not half an R wave
        found = found[magnitude[found] >= 0.5 * np.median(magnitude[found])]
    return found


def rescale_peaks(peaks: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Map sample indices from ``fs`` to ``target_fs``."""
    return np.rint(np.asarray(peaks, dtype=np.float64) * target_fs / fs).astype(np.int64)


def resize_cine(cine: np.ndarray, n_frames: int, image_size: int) -> np.ndarray:
    """Uniformly subsample frames over the cycle and area-resample each to ``image_size``², in [0, 1].

    Frame ``k`` of the result still shows cardiac phase ``k / n_frames`` when the input frames are
    evenly spaced over one RR interval starting at the R peak.
    """
    t = cine.shape[0]
    if n_frames > t:
        raise ValueError(f"cine has {t} frames, fewer than the {n_frames} requested")
    keep = np.floor(np.arange(n_frames) * t / n_frames).astype(np.int64)
    frames = torch.from_numpy(np.ascontiguousarray(cine[keep], dtype=np.float32))[:, None]
    if frames.shape[-1] != image_size or frames.shape[-2] != image_size:
        frames = F.interpolate(frames, size=(image_size, image_size), mode="area")
    frames = frames[:, 0].numpy()
    lo, hi = float(frames.min()), float(frames.max())
    return (frames - lo) / (hi - lo) if hi > lo else np.zeros_like(frames)
