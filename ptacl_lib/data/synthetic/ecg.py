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
#: Beat classes of the ``beat_labels`` extra: sinus, premature ventricular, atrial fibrillation.
BEAT_LABELS: tuple[str, ...] = ("N", "V", "A")
_PVC_QT_EXTRA_S = 0.04    # repolarisation after a PVC ends later than after a sinus beat


@dataclass(frozen=True)
class BeatTimes:
    """Fiducial times (seconds from the start of the recording) of every simulated beat."""

    r: np.ndarray          # R-wave maximum
    qrs_on: np.ndarray
    qrs_off: np.ndarray
    p_on: np.ndarray
    t_end: np.ndarray
    r_lag: float           # R-wave maximum after QRS onset in a supraventricular beat, s
    resp_hz: float         # respiration rate driving sinus arrhythmia and baseline wander
    labels: np.ndarray     # int8 per beat: index into BEAT_LABELS (N sinus, V PVC, A atrial fibrillation)


@dataclass(frozen=True)
class EcgRecord:
    """One simulated recording."""

    signal: np.ndarray     # float32 [12, n_samples], mV
    beats: BeatTimes
    recorded: np.ndarray   # bool [n_beats], beats whose R maximum lies inside the recording
    rpeaks: np.ndarray     # int [recorded.sum()], sample of each recorded R maximum
    labels: np.ndarray     # int8 [recorded.sum()], BEAT_LABELS index of each recorded beat


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _frontal(deg: float, z: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a), z])


def orientation(lat: SubjectLatent) -> np.ndarray:
    """Rotation [3, 3] of the subject's heart: tilt about the left-right axis, then about the vertical axis."""
    ax, ay = np.deg2rad(lat.rot_x_deg), np.deg2rad(lat.rot_y_deg)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(ax), -np.sin(ax)], [0.0, np.sin(ax), np.cos(ax)]])
    turn = np.array([[np.cos(ay), 0.0, -np.sin(ay)], [0.0, 1.0, 0.0], [np.sin(ay), 0.0, np.cos(ay)]])
    return turn @ tilt


def qrs_components(lat: SubjectLatent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """QRS pieces of one beat: centre and width as fractions of the QRS duration, and dipole vectors (mV)."""
    a, axis = lat.qrs_gain, lat.axis_deg
    septal = 0.18 * a * _unit(np.array([-0.55, 0.15, 0.8]))
    # Right-ventricular free wall: rightward and anterior, early in the QRS, partly cancelled by the LV.
    rv = lat.rv_gain * _unit(np.array([-0.6, 0.25, 0.75]))
    if lat.conduction == "LBBB":   # septum activated from the left, broad notched leftward-posterior R
        main = _frontal(axis, -0.6)
        centres, widths = np.array([0.12, 0.36, 0.68, 0.25]), np.array([0.07, 0.13, 0.13, 0.1])
        vectors = np.stack([0.15 * a * _unit(np.array([0.6, 0.1, -0.4])), 0.92 * a * main, 0.85 * a * main, rv])
    elif lat.conduction == "RBBB":   # normal LV activation, then a late rightward-anterior R' (delayed RV)
        centres, widths = np.array([0.1, 0.32, 0.76, 0.8]), np.array([0.05, 0.08, 0.11, 0.08])
        vectors = np.stack([septal, a * _frontal(axis, -0.35), 0.45 * a * _unit(np.array([-0.6, 0.05, 0.8])), rv])
    else:
        centres, widths = np.array([0.12, 0.42, 0.72, 0.3]), np.array([0.055, 0.11, 0.085, 0.08])
        vectors = np.stack([septal, a * _frontal(axis, -0.35), 0.3 * a * _unit(np.array([-0.45, -0.55, -0.7])), rv])
    return centres, widths, vectors @ orientation(lat).T


def pvc_components(lat: SubjectLatent, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A unifocal PVC: centres, widths (fractions of its QRS), vectors (mV) and its QRS duration (s).

    Activation spreads from one ventricular focus through the myocardium, not the conduction system:
    a wide (140-190 ms), large complex whose direction is set by the focus.
    """
    direction = _unit(rng.standard_normal(3) * np.array([1.0, 1.0, 0.8]))
    size = lat.qrs_gain * rng.uniform(1.1, 1.6)
    vectors = np.stack([0.6 * size * direction, size * _unit(direction + 0.3 * rng.standard_normal(3))])
    return np.array([0.3, 0.62]), np.array([0.16, 0.16]), vectors, float(rng.uniform(0.14, 0.19))


def _t_vector(lat: SubjectLatent, main: np.ndarray) -> np.ndarray:
    """T-wave dipole: concordant normally, discordant in bundle branch block, inverted by LVH strain."""
    size = (0.28 + 0.08 * lat.qrs_gain) * lat.t_gain
    if lat.conduction == "LBBB":
        return -0.45 * size * _unit(main)
    if lat.conduction == "RBBB":
        return size * _unit(orientation(lat) @ _frontal(lat.axis_deg - 10.0, -0.3))
    return size * (1.0 - 1.6 * lat.lvh_strain) * _unit(orientation(lat) @ _frontal(lat.axis_deg - 15.0, 0.35))


def r_lag_seconds(centres: np.ndarray, widths: np.ndarray, vectors: np.ndarray, qrs_s: float,
                  projection: np.ndarray | None = None) -> float:
    """Time of the QRS magnitude maximum after QRS onset, on a fine grid.

    ``projection`` [L, 3] maps the dipole to leads first (the R maximum as the recorded leads show it);
    without it the dipole's own magnitude is used.
    """
    t = np.linspace(0.0, 1.2, 1201)[:, None]
    g = np.exp(-0.5 * ((t - centres) / widths) ** 2) @ vectors
    if projection is not None:
        g = g @ projection.T
    return float(t[np.argmax(np.linalg.norm(g, axis=1)), 0] * qrs_s)


def beat_times(lat: SubjectLatent, rng: np.random.Generator, duration_s: float, r_lag: float,
               pvc_lag: float = 0.0, pvc_qrs_s: float = 0.0) -> BeatTimes:
    """R times from one beat before the recording to one after, with their beat classes.

    Sinus rhythm carries respiratory sinus arrhythmia and jitter. A PVC falls at 55-75 % of the sinus
    interval and is followed by a full compensatory pause (the next sinus beat comes two sinus
    intervals after the last one, the sinus node being undisturbed). In atrial fibrillation the
    intervals are irregularly irregular (coefficient of variation about 0.2) and there are no P waves.
    """
    rr = 60.0 / lat.heart_rate
    resp_hz = rng.uniform(0.18, 0.3)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    n_max = int(np.ceil((duration_s + 2.0 * rr) / (rr * 0.5))) + 4
    jitter = rng.normal(0.0, 0.012, n_max)
    draws = rng.random(n_max)
    coupling = rng.uniform(0.55, 0.75)
    first = "A" if lat.af else "N"
    times, labels = [rng.uniform(0.05, 0.05 + rr) - rr], [first]
    last_sinus = times[0]
    while times[-1] < duration_s + 0.3:
        k = len(times)
        if lat.af:
            times.append(times[-1] + max(0.3, rr * rng.gamma(25.0, 1.0 / 25.0)))
            labels.append("A")
            continue
        step = rr * (1.0 + lat.rsa * np.sin(2.0 * np.pi * resp_hz * last_sinus + phase) + jitter[k])
        if k >= 2 and labels[-1] == "N" and draws[k] < lat.pvc_rate:
            times.append(last_sinus + coupling * step)
            labels.append("V")
            continue
        after_pvc = labels[-1] == "V"
        last_sinus = last_sinus + (2.0 * step if after_pvc else step)
        times.append(last_sinus)
        labels.append("N")
    r = np.asarray(times)
    codes = np.array([BEAT_LABELS.index(x) for x in labels], dtype=np.int8)
    is_pvc = codes == BEAT_LABELS.index("V")
    qrs_on = r - np.where(is_pvc, pvc_lag, r_lag)
    qrs_s = np.where(is_pvc, pvc_qrs_s, lat.qrs_ms / 1000.0)
    qt_s = lat.qt_ms / 1000.0 + np.where(is_pvc, _PVC_QT_EXTRA_S, 0.0)
    return BeatTimes(r=r, qrs_on=qrs_on, qrs_off=qrs_on + qrs_s, p_on=qrs_on - lat.pr_ms / 1000.0,
                     t_end=qrs_on + qt_s, r_lag=r_lag, resp_hz=float(resp_hz), labels=codes)


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


def dipole(lat: SubjectLatent, beats: BeatTimes, rng: np.random.Generator, n_samples: int, fs: float,
           pvc: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    """Noise-free cardiac dipole [3, n_samples] in mV; ``pvc`` gives the shape of the PVC beats."""
    centres, widths, vectors = qrs_components(lat)
    qrs_s, qt_s = lat.qrs_ms / 1000.0, lat.qt_ms / 1000.0
    is_pvc = beats.labels == BEAT_LABELS.index("V")
    has_p = beats.labels == BEAT_LABELS.index("N")
    # QRS pieces, with beat-to-beat amplitude variation: respiration moves the heart and the filling
    # of each beat changes the intracavitary blood volume (Brody effect) a little.
    resp = (1.0 + 0.04 * np.sin(2.0 * np.pi * beats.resp_hz * beats.r)) * np.exp(rng.normal(0.0, 0.015, beats.r.size))
    c_list, w_list, v_list = [], [], []
    for b in range(beats.r.size):
        if is_pvc[b] and pvc is not None:
            pc, pw, pv, p_qrs = pvc
            c_list.append(beats.qrs_on[b] + pc * p_qrs)
            w_list.append(pw * p_qrs)
            v_list.append(resp[b] * pv)
        else:
            c_list.append(beats.qrs_on[b] + centres * qrs_s)
            w_list.append(widths * qrs_s)
            v_list.append(resp[b] * vectors)
    q_c, q_w, q_v = np.concatenate(c_list), np.concatenate(w_list), np.concatenate(v_list)
    # P wave: atrial depolarisation, 100 ms starting at P onset, in sinus beats only.
    p_vec = rng.uniform(0.1, 0.17) * _unit(_frontal(rng.normal(55.0, 12.0), 0.15))
    p_c = beats.p_on[has_p] + 0.05
    # ST segment: a small anterior plateau between QRS end and T (J-point elevation, larger in men).
    st_vec = lat.st_mv * _unit(orientation(lat) @ np.array([0.1, 0.2, 1.0]))
    st_c = beats.qrs_off + 0.04
    # T wave: skewed, ending (apex + 2.4 right-widths) at QRS onset + QT; discordant after a PVC.
    t_right, t_left = 0.1 * qt_s, 0.16 * qt_s
    t_c = beats.t_end - 2.4 * t_right + rng.normal(0.0, 0.003, beats.r.size)
    t_vec = np.tile(_t_vector(lat, vectors[1]), (beats.r.size, 1))
    st = np.tile(st_vec, (beats.r.size, 1))
    if pvc is not None and is_pvc.any():
        t_vec[is_pvc] = -0.35 * _unit(pvc[2][1]) * np.linalg.norm(pvc[2][1]) ** 0.5
        st[is_pvc] = 0.0
    n = beats.r.size
    centres_all = np.concatenate([q_c, p_c, st_c, t_c])
    left = np.concatenate([q_w, np.full(p_c.size, 0.017), np.full(n, 0.03), np.full(n, t_left)])
    right = np.concatenate([q_w, np.full(p_c.size, 0.017), np.full(n, 0.03), np.full(n, t_right)])
    vecs = np.concatenate([q_v, np.tile(p_vec, (p_c.size, 1)), st, t_vec])
    out = _sum_waves(n_samples, fs, centres_all, left, right, vecs)
    if lat.af:  # fibrillatory waves: 4-8 Hz, 0.02-0.06 mV, wandering in frequency
        t = np.arange(n_samples) / fs
        freq = rng.uniform(4.0, 8.0) + 0.5 * np.sin(2.0 * np.pi * rng.uniform(0.1, 0.3) * t)
        wave = rng.uniform(0.02, 0.06) * np.sin(2.0 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi))
        out += np.outer(_unit(_frontal(rng.normal(70.0, 20.0), 0.4)), wave)
    return out


def electrode_vectors(rng: np.random.Generator, lat: SubjectLatent | None = None) -> np.ndarray:
    """Lead-field vectors [9, 3] of RA, LA, LL, V1..V6, with per-subject placement and torso variation.

    With ``lat``, the subject's body habitus attenuates the limb and the precordial lead fields.
    """
    limb_gain, chest_gain = (lat.limb_gain, lat.chest_gain) if lat is not None else (1.0, 1.0)
    limb = np.array([[-np.sqrt(3) / 2, -0.5, 0.0], [np.sqrt(3) / 2, -0.5, 0.0], [0.0, 1.0, 0.0]]) / np.sqrt(3)
    limb = limb_gain * limb
    angle = np.deg2rad(_PRECORDIAL_ANGLE + rng.normal(0.0, 8.0, 6))
    gain = chest_gain * _PRECORDIAL_GAIN * np.exp(rng.normal(0.0, 0.15, 6))
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
    """The subject's 12-lead ECG (mV), its true beat fiducials and beat classes."""
    n_samples = int(round(duration_s * fs))
    lead_field = electrode_vectors(rng, lat)
    # The R maximum is where the noise-free leads I, II and V1-V6 (the eight independent leads) are
    # largest together: in a notched QRS the torso decides which notch the recording shows as R.
    independent = (_LEAD_FROM_ELECTRODES @ lead_field)[[0, 1, 6, 7, 8, 9, 10, 11]]
    centres, widths, vectors = qrs_components(lat)
    r_lag = r_lag_seconds(centres, widths, vectors, lat.qrs_ms / 1000.0, independent)
    pvc = pvc_components(lat, rng) if lat.pvc_rate > 0.0 else None
    pvc_lag = r_lag_seconds(pvc[0], pvc[1], pvc[2], pvc[3], independent) if pvc is not None else 0.0
    beats = beat_times(lat, rng, duration_s, r_lag, pvc_lag, pvc[3] if pvc is not None else 0.0)
    clean = dipole(lat, beats, rng, n_samples, fs, pvc)
    potentials = lead_field @ clean
    potentials += electrode_noise(lat, rng, n_samples, fs, beats.resp_hz, noise_scale)
    signal = (_LEAD_FROM_ELECTRODES @ potentials).astype(np.float32)
    # The R maximum on the sample grid: the largest noise-free lead magnitude near each R time.
    near = np.rint(beats.r * fs).astype(np.int64)[:, None] + np.arange(-3, 4)
    inside = (near[:, 3] >= 0) & (near[:, 3] < n_samples)
    near = np.clip(near[inside], 0, n_samples - 1)
    magnitude = np.linalg.norm(independent @ clean[:, near].reshape(3, -1), axis=0).reshape(near.shape)
    rpeaks = near[np.arange(near.shape[0]), np.argmax(magnitude, axis=1)]
    return EcgRecord(signal=signal, beats=beats, recorded=inside, rpeaks=rpeaks, labels=beats.labels[inside])
