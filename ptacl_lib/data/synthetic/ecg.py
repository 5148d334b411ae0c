"""A 12-lead ECG from one cardiac dipole, with realistic electrode noise.

Coordinates of the dipole: x points to the subject's left, y downwards (inferior), z forwards
(anterior). Each beat adds Gaussian-shaped wave components (P, the QRS pieces, a skewed T)
along fixed directions. Nine electrode potentials (RA, LA, LL, V1..V6) are projections of the
dipole plus each electrode's own noise; every lead is a fixed linear combination of electrode
potentials, so Einthoven's and Goldberger's identities hold for the noisy signal as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .latent import SubjectLatent

ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")

#: leads (rows, in schema.LEADS order) as combinations of electrode potentials (columns).
_LEAD_FROM_ELECTRODES = np.zeros((12, 9))
_LEAD_FROM_ELECTRODES[0, :3] = (-1.0, 1.0, 0.0)          # I   = LA - RA
_LEAD_FROM_ELECTRODES[1, :3] = (-1.0, 0.0, 1.0)          # II  = LL - RA
_LEAD_FROM_ELECTRODES[2, :3] = (0.0, -1.0, 1.0)          # III = LL - LA
_LEAD_FROM_ELECTRODES[3, :3] = (1.0, -0.5, -0.5)         # aVR = RA - (LA + LL) / 2
_LEAD_FROM_ELECTRODES[4, :3] = (-0.5, 1.0, -0.5)         # aVL
_LEAD_FROM_ELECTRODES[5, :3] = (-0.5, -0.5, 1.0)         # aVF
for _k in range(6):                                      # Vk = electrode - Wilson central terminal
    _LEAD_FROM_ELECTRODES[6 + _k, :3] = -1.0 / 3.0
    _LEAD_FROM_ELECTRODES[6 + _k, 3 + _k] = 1.0

# Precordial electrode directions in the transverse plane (degrees from left towards anterior),
# their small inferior tilt and their proximity gain (chest electrodes sit close to the heart).
_PRECORDIAL_ANGLE = np.array([115.0, 94.0, 75.0, 60.0, 30.0, 0.0])
_PRECORDIAL_TILT = np.array([0.0, 0.0, 0.05, 0.1, 0.15, 0.2])
_PRECORDIAL_GAIN = np.array([1.5, 2.2, 2.4, 2.2, 1.8, 1.3])
_MAINS_HZ = 50.0


@dataclass(frozen=True)
class BeatTimes:
    """Fiducial times (seconds from the start of the recording) of every simulated beat."""

    r: np.ndarray          # R-wave maximum
    qrs_on: np.ndarray
    qrs_off: np.ndarray
    p_on: np.ndarray
    t_end: np.ndarray
    r_lag: float           # R-wave maximum after QRS onset, s
    resp_hz: float         # respiration rate driving sinus arrhythmia and baseline wander


@dataclass(frozen=True)
class EcgRecord:
    """One simulated recording."""

    signal: np.ndarray     # float32 [12, n_samples], mV
    beats: BeatTimes
    recorded: np.ndarray   # bool [n_beats], beats whose R maximum lies inside the recording
    rpeaks: np.ndarray     # int [recorded.sum()], sample of each recorded R maximum


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _frontal(deg: float, z: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a), z])


def qrs_components(lat: SubjectLatent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """QRS pieces of one beat: centre and width as fractions of the QRS duration, and dipole vectors (mV)."""
    a, axis = lat.qrs_gain, lat.axis_deg
    septal = 0.18 * a * _unit(np.array([-0.55, 0.15, 0.8]))
    if lat.conduction == "LBBB":   # septum activated from the left, broad notched leftward-posterior R
        main = _frontal(axis, -0.6)
        return (np.array([0.12, 0.36, 0.68]), np.array([0.07, 0.13, 0.13]),
                np.stack([0.15 * a * _unit(np.array([0.6, 0.1, -0.4])), 0.92 * a * main, 0.85 * a * main]))
    if lat.conduction == "RBBB":   # normal LV activation, then a late rightward-anterior R'
        return (np.array([0.1, 0.32, 0.76]), np.array([0.05, 0.08, 0.11]),
                np.stack([septal, a * _frontal(axis, -0.35), 0.45 * a * _unit(np.array([-0.6, 0.05, 0.8]))]))
    return (np.array([0.12, 0.42, 0.72]), np.array([0.055, 0.11, 0.085]),
            np.stack([septal, a * _frontal(axis, -0.35), 0.3 * a * _unit(np.array([-0.45, -0.55, -0.7]))]))


def _t_vector(lat: SubjectLatent, main: np.ndarray) -> np.ndarray:
    """T-wave dipole: concordant normally, discordant in bundle branch block, inverted by LVH strain."""
    size = 0.28 + 0.08 * lat.qrs_gain
    if lat.conduction == "LBBB":
        return -0.45 * size * _unit(main)
    if lat.conduction == "RBBB":
        return size * _unit(_frontal(lat.axis_deg - 10.0, -0.3))
    return size * (1.0 - 1.6 * lat.lvh_strain) * _unit(_frontal(lat.axis_deg - 15.0, 0.35))


def r_lag_seconds(centres: np.ndarray, widths: np.ndarray, vectors: np.ndarray, qrs_s: float) -> float:
    """Time of the QRS vector-magnitude maximum after QRS onset, on a fine grid."""
    t = np.linspace(0.0, 1.2, 1201)[:, None]
    g = np.exp(-0.5 * ((t - centres) / widths) ** 2)
    return float(t[np.argmax(np.linalg.norm(g @ vectors, axis=1)), 0] * qrs_s)


def beat_times(lat: SubjectLatent, rng: np.random.Generator, duration_s: float, r_lag: float) -> BeatTimes:
    """R times with respiratory sinus arrhythmia and jitter, from one beat before the recording to one after."""
    rr = 60.0 / lat.heart_rate
    resp_hz = rng.uniform(0.18, 0.3)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    n_max = int(np.ceil((duration_s + 2.0 * rr) / (rr * 0.8))) + 2
    jitter = rng.normal(0.0, 0.012, n_max)
    times = [rng.uniform(0.05, 0.05 + rr) - rr]
    while times[-1] < duration_s + 0.3:
        t = times[-1]
        times.append(t + rr * (1.0 + lat.rsa * np.sin(2.0 * np.pi * resp_hz * t + phase) + jitter[len(times)]))
    r = np.asarray(times)
    qrs_on = r - r_lag
    return BeatTimes(r=r, qrs_on=qrs_on, qrs_off=qrs_on + lat.qrs_ms / 1000.0, p_on=qrs_on - lat.pr_ms / 1000.0,
                     t_end=qrs_on + lat.qt_ms / 1000.0, r_lag=r_lag, resp_hz=float(resp_hz))


def _sum_waves(n_samples: int, fs: float, centres: np.ndarray, left: np.ndarray, right: np.ndarray,
               vectors: np.ndarray) -> np.ndarray:
    """Sum of skewed Gaussians (one per row) carrying 3-D vectors; evaluated only near each centre."""
    half = int(np.ceil(4.5 * max(left.max(), right.max()) * fs))
    idx = np.rint(centres * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    dt = idx / fs - centres[:, None]
    sigma = np.where(dt < 0.0, left[:, None], right[:, None])
    g = np.exp(-0.5 * (dt / sigma) ** 2)
    keep = (idx >= 0) & (idx < n_samples)
    flat_idx, flat_g = idx[keep], g[keep]
    rows = np.nonzero(keep)[0]
    return np.stack([np.bincount(flat_idx, weights=flat_g * vectors[rows, d], minlength=n_samples)
                     for d in range(3)])


def dipole(lat: SubjectLatent, beats: BeatTimes, rng: np.random.Generator, n_samples: int, fs: float) -> np.ndarray:
    """Noise-free cardiac dipole [3, n_samples] in mV."""
    centres, widths, vectors = qrs_components(lat)
    qrs_s, qt_s = lat.qrs_ms / 1000.0, lat.qt_ms / 1000.0
    n_beats = beats.r.size
    # QRS pieces, with a little beat-to-beat amplitude variation (respiration moves the heart).
    resp = 1.0 + 0.04 * np.sin(2.0 * np.pi * beats.resp_hz * beats.r)
    q_c = (beats.qrs_on[:, None] + centres * qrs_s).ravel()
    q_w = np.tile(widths * qrs_s, n_beats)
    q_v = (resp[:, None, None] * vectors[None]).reshape(-1, 3)
    # P wave: atrial depolarisation, 100 ms starting at P onset.
    p_vec = rng.uniform(0.1, 0.17) * _unit(_frontal(rng.normal(55.0, 12.0), 0.15))
    p_c = beats.p_on + 0.05
    # T wave: skewed, ending (apex + 2.4 right-widths) at QRS onset + QT.
    t_right, t_left = 0.1 * qt_s, 0.16 * qt_s
    t_c = beats.qrs_on + qt_s - 2.4 * t_right + rng.normal(0.0, 0.003, n_beats)
    t_vec = _t_vector(lat, vectors[1])
    centres_all = np.concatenate([q_c, p_c, t_c])
    left = np.concatenate([q_w, np.full(n_beats, 0.017), np.full(n_beats, t_left)])
    right = np.concatenate([q_w, np.full(n_beats, 0.017), np.full(n_beats, t_right)])
    vecs = np.concatenate([q_v, np.tile(p_vec, (n_beats, 1)), np.tile(t_vec, (n_beats, 1))])
    return _sum_waves(n_samples, fs, centres_all, left, right, vecs)


def electrode_vectors(rng: np.random.Generator) -> np.ndarray:
    """Lead-field vectors [9, 3] of RA, LA, LL, V1..V6, with per-subject placement and torso variation."""
    limb = np.array([[-np.sqrt(3) / 2, -0.5, 0.0], [np.sqrt(3) / 2, -0.5, 0.0], [0.0, 1.0, 0.0]]) / np.sqrt(3)
    angle = np.deg2rad(_PRECORDIAL_ANGLE + rng.normal(0.0, 5.0, 6))
    gain = _PRECORDIAL_GAIN * np.exp(rng.normal(0.0, 0.1, 6))
    chest = gain[:, None] * np.stack([np.cos(angle), _PRECORDIAL_TILT, np.sin(angle)], axis=1)
    return np.concatenate([limb, chest])


def electrode_noise(lat: SubjectLatent, rng: np.random.Generator, n_samples: int, fs: float,
                    resp_hz: float, scale: float) -> np.ndarray:
    """Per-electrode noise [9, n_samples] in mV: baseline wander, mains hum and muscle (EMG) noise."""
    level = lat.ecg_noise * scale
    t = np.arange(n_samples) / fs
    # Baseline wander below 0.5 Hz: respiration plus slow drifts, mixed differently at each electrode.
    freqs = np.concatenate([[resp_hz], rng.uniform(0.03, 0.45, 3)])
    basis = np.concatenate([np.sin(2 * np.pi * freqs[:, None] * t), np.cos(2 * np.pi * freqs[:, None] * t)])
    wander = (0.06 * level * rng.standard_normal((9, basis.shape[0]))) @ basis
    # Mains hum: the differential part left after the amplifier's common-mode rejection.
    hum_basis = np.stack([np.sin(2 * np.pi * _MAINS_HZ * t), np.cos(2 * np.pi * _MAINS_HZ * t)])
    hum = (rng.uniform(0.0, 0.012) * level * rng.standard_normal((9, 2))) @ hum_basis
    # Muscle noise: broadband, high-passed by differencing, bursting with a slow envelope.
    envelope = np.exp(0.5 * np.tanh(rng.standard_normal((9, basis.shape[0])) @ basis / 2.0))
    white = rng.standard_normal((9, n_samples + 1))
    emg = rng.uniform(0.004, 0.015) * level * envelope * np.diff(white, axis=1) / np.sqrt(2.0)
    return wander + hum + emg


def simulate_ecg(lat: SubjectLatent, rng: np.random.Generator, duration_s: float, fs: float,
                 noise_scale: float = 1.0) -> EcgRecord:
    """The subject's 12-lead ECG (mV) and its true beat fiducials."""
    n_samples = int(round(duration_s * fs))
    centres, widths, vectors = qrs_components(lat)
    beats = beat_times(lat, rng, duration_s, r_lag_seconds(centres, widths, vectors, lat.qrs_ms / 1000.0))
    clean = dipole(lat, beats, rng, n_samples, fs)
    potentials = electrode_vectors(rng) @ clean
    potentials += electrode_noise(lat, rng, n_samples, fs, beats.resp_hz, noise_scale)
    signal = (_LEAD_FROM_ELECTRODES @ potentials).astype(np.float32)
    # The R maximum on the sample grid: the largest noise-free dipole magnitude near each R time.
    near = np.rint(beats.r * fs).astype(np.int64)[:, None] + np.arange(-3, 4)
    inside = (near[:, 3] >= 0) & (near[:, 3] < n_samples)
    near = np.clip(near[inside], 0, n_samples - 1)
    magnitude = np.linalg.norm(clean[:, near], axis=0)
    rpeaks = near[np.arange(near.shape[0]), np.argmax(magnitude, axis=1)]
    return EcgRecord(signal=signal, beats=beats, recorded=inside, rpeaks=rpeaks)
