"""R-peak detection: F1 against the generator's true peaks, and on an independent ECG model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptacl_lib.data import detect_rpeaks, open_cohort
from ptacl_lib.data.synthetic import generate_cohort

TOLERANCE_S = 0.050
AAMI_TOLERANCE_S = 0.150  # ANSI/AAMI EC57 beat-matching window


def match_peaks(true: np.ndarray, found: np.ndarray, tolerance: int) -> tuple[int, int, int]:
    """Greedy one-to-one matching within ``tolerance`` samples: (true positives, false positives, misses)."""
    used = np.zeros(len(found), dtype=bool)
    tp = 0
    for t in true:
        d = np.abs(found - t).astype(float)
        d[used] = np.inf
        if len(d) and d.min() <= tolerance:
            used[int(d.argmin())] = True
            tp += 1
    return tp, int((~used).sum()), len(true) - tp


def test_match_peaks_counts() -> None:
    assert match_peaks(np.array([100, 600, 1100]), np.array([110, 640, 1100, 1500]), 25) == (2, 2, 1)


@pytest.fixture(scope="module")
def cohort_200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("rpeaks"), n_subjects=200, seed=7, progress=False)


@pytest.mark.slow
def test_rpeak_f1_on_synthetic_cohort(cohort_200: Path) -> None:
    """Detection at the ANSI/AAMI EC57 window (150 ms) over every beat, timing at 50 ms on normal conduction.

    Generator 2.0 puts the true R of a notched QRS on the notch the combined leads show largest; in
    LBBB the detector often settles on the other notch (measured 2026-11-29, seed 7: 50-ms sensitivity
    0.76 on LBBB sinus beats, 0.99 at 150 ms). That offset is the same in every beat of a subject, so it
    shifts the subject's phases rather than scrambling them; it is a known limitation, not hidden here.
    """
    from ptacl_lib.data.synthetic import true_beats

    cohort = open_cohort(cohort_200)
    fs = float(cohort.geometry.ecg_hz)
    detection, timing = np.zeros(3), np.zeros(3)
    per_subject_misses = []
    for i in range(len(cohort)):
        beats = true_beats(cohort, i)
        found = detect_rpeaks(cohort.ecg(i), fs)
        counts = np.array(match_peaks(beats["sample"].to_numpy(), found, int(AAMI_TOLERANCE_S * fs)))
        detection += counts
        per_subject_misses.append(counts[1] + counts[2])
        if cohort.table["conduction"].iloc[i] == "normal":
            sinus = beats.loc[beats["label"] == "N", "sample"].to_numpy()
            timing += match_peaks(sinus, found, int(TOLERANCE_S * fs))
    tp, fp, fn = detection
    f1 = 2 * tp / (2 * tp + fp + fn)
    print(f"R-peak F1 over {len(cohort)} subjects at 150 ms: {f1:.4f} (tp={tp}, fp={fp}, fn={fn})")
    assert tp > 200 * 5
    assert f1 >= 0.99
    assert timing[0] / (timing[0] + timing[2]) >= 0.99  # within 50 ms on normal-conduction sinus beats
    # and the conduction blocks are not where the detection errors hide
    blocks = cohort.table["conduction"].to_numpy() != "normal"
    assert np.sum(np.asarray(per_subject_misses)[blocks]) <= max(2, 0.02 * blocks.sum() * 10)


@pytest.mark.parametrize("heart_rate", [55, 80, 110])
def test_rpeaks_on_independent_ecgsyn_recordings(heart_rate: int) -> None:
    """ECGSYN (McSharry et al. 2003, via neurokit2) with noise: the detector is not tuned to our generator."""
    import neurokit2 as nk

    fs, seconds = 500, 10
    clean = nk.ecg_simulate(duration=seconds, sampling_rate=fs, heart_rate=heart_rate, heart_rate_std=1,
                            method="ecgsyn", random_state=heart_rate)
    leads = []
    for k, gain in enumerate([1.0, 1.3, 0.4, -1.1, 0.6, 0.9, -0.8, -0.3, 0.5, 1.2, 1.4, 1.1]):
        rng = np.random.default_rng(heart_rate * 100 + k)
        t = np.arange(len(clean)) / fs
        wander = 0.15 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6))
        leads.append(gain * clean + wander + 0.03 * rng.standard_normal(len(clean)))
    peaks = detect_rpeaks(np.stack(leads).astype(np.float32), fs)
    expected = seconds * heart_rate / 60
    assert abs(len(peaks) - expected) <= 1.5
    rr = np.diff(peaks) / fs
    np.testing.assert_allclose(np.median(rr), 60 / heart_rate, rtol=0.05)
    assert rr.min() > 0.7 * 60 / heart_rate  # no double detections on T waves
