"""Real-shaped 12-lead ECGs with known beat times for the R-peak, rhythm and quality tests.

Each beat is a sum of Gaussians (P, QRS, T) whose lead projections follow a fixed electrical axis;
a premature ventricular beat (PVC) has no P wave, a wide (140 ms) QRS of opposite polarity and a
large discordant T wave; a wide-QRS (bundle-branch-block-like) beat is notched and 140 ms wide.
The R peak reported for a beat is the sample of its largest QRS magnitude.
"""

from __future__ import annotations

import numpy as np

FS = 500.0
#: projection of the heart vector on each lead (I, II, III, aVR, aVL, aVF, V1..V6): normal axis
LEAD_GAINS = np.array([0.6, 1.0, 0.4, -0.8, 0.1, 0.7, -0.5, 0.2, 0.7, 1.1, 1.0, 0.8])


def _gauss(t: np.ndarray, centre: float, width: float, height: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((t - centre) / width) ** 2)


def beat_wave(t: np.ndarray, r: float, kind: str) -> np.ndarray:
    """One beat's wave (mV, before lead projection) around R time ``r`` (s)."""
    if kind == "normal":
        return (_gauss(t, r - 0.16, 0.025, 0.12) + _gauss(t, r - 0.03, 0.008, -0.1) + _gauss(t, r, 0.010, 1.2)
                + _gauss(t, r + 0.03, 0.008, -0.25) + _gauss(t, r + 0.28, 0.05, 0.3))
    if kind == "pvc":
        return _gauss(t, r, 0.035, -1.3) + _gauss(t, r + 0.07, 0.03, 0.5) + _gauss(t, r + 0.32, 0.07, 0.5)
    if kind == "wide":
        return (_gauss(t, r - 0.18, 0.025, 0.12) + _gauss(t, r - 0.025, 0.02, 0.9) + _gauss(t, r + 0.025, 0.02, 1.0)
                + _gauss(t, r + 0.30, 0.06, -0.3))
    raise ValueError(kind)


def make_ecg(r_times: np.ndarray, kinds: list[str], seconds: float = 10.0, noise_mv: float = 0.02,
             seed: int = 0, af: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(ecg float32 [12, S], true R samples)``; ``af`` adds a 6 Hz fibrillatory wave (no P waves then)."""
    t = np.arange(int(seconds * FS)) / FS
    wave = np.zeros_like(t)
    for r, kind in zip(r_times, kinds):
        wave += beat_wave(t, r, kind)
    if af:
        wave += 0.05 * np.sin(2 * np.pi * 6.1 * t) + 0.03 * np.sin(2 * np.pi * 4.3 * t + 1)
    rng = np.random.default_rng(seed)
    ecg = LEAD_GAINS[:, None] * wave[None] + noise_mv * rng.standard_normal((12, len(t)))
    ecg += 0.1 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, (12, 1)))  # baseline wander
    magnitude = np.abs(ecg - np.median(ecg, axis=1, keepdims=True)).sum(axis=0)
    half = int(0.05 * FS)
    true = []
    for r in r_times:
        c = int(round(r * FS))
        lo, hi = max(0, c - half), min(len(t), c + half)
        true.append(lo + int(np.argmax(magnitude[lo:hi])))
    return ecg.astype(np.float32), np.asarray(true, dtype=np.int64)


def regular_times(rr: float, seconds: float = 10.0, first: float = 0.4) -> np.ndarray:
    return np.arange(first, seconds - 0.3, rr)
