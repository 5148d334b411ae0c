"""ECG quality: a missing (flat) lead, a clipped lead, noise, arm-lead reversal, wide QRS; flags value by value."""

from __future__ import annotations

import numpy as np
from ecg_shapes import FS, make_ecg, regular_times

from ptacl_lib.data.ecg_quality import assess_ecg_quality
from ptacl_lib.data.preprocess import detect_rpeaks
from ptacl_lib.data.schema import LEADS


def _sinus(kind: str = "normal", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    times = regular_times(0.85)
    return make_ecg(times, [kind] * len(times), seed=seed)


def test_clean_recording_has_no_flags_and_a_high_score() -> None:
    ecg, true = _sinus()
    quality = assess_ecg_quality(ecg, FS)
    assert quality.flags == () and quality.usable_leads.all() and not quality.lead_reversal
    assert quality.score > 0.95 and quality.noise_level < 0.1
    assert len(quality.rpeaks) == len(true) and np.abs(quality.rpeaks - true).max() <= 5


def test_missing_lead_is_flat_and_left_out_of_detection() -> None:
    ecg, true = _sinus()
    ecg[LEADS.index("V1")] = 0.0  # electrode off: the device writes zeros
    ecg[LEADS.index("aVL")] = 0.01  # or a constant
    quality = assess_ecg_quality(ecg, FS)
    assert quality.flat_leads == ("aVL", "V1") and quality.flags == ("flat:aVL", "flat:V1")
    assert quality.usable_leads.tolist() == [lead not in ("aVL", "V1") for lead in LEADS]
    assert len(quality.rpeaks) == len(true) and np.abs(quality.rpeaks - true).max() <= 5
    assert 0.8 < quality.score <= 10 / 12  # 10 of 12 leads usable


def test_clipped_and_noisy_leads() -> None:
    ecg, _ = _sinus()
    ecg[LEADS.index("II")] = np.clip(ecg[LEADS.index("II")], -0.15, 0.15)  # amplifier saturation
    rng = np.random.default_rng(1)
    ecg[LEADS.index("V5")] += 0.6 * rng.standard_normal(ecg.shape[1])  # muscle noise on one lead
    quality = assess_ecg_quality(ecg, FS)
    assert quality.saturated_leads == ("II",) and quality.noisy_leads == ("V5",) and quality.flat_leads == ()
    assert quality.columns()["ecg_flags"] == "saturated:II;noisy:V5"


def test_all_noise_scores_zero() -> None:
    rng = np.random.default_rng(2)
    quality = assess_ecg_quality(rng.standard_normal((12, int(10 * FS))).astype(np.float32), FS)
    assert quality.score == 0.0 and len(quality.noisy_leads) == 12


def test_arm_lead_reversal_is_flagged() -> None:
    ecg, _ = _sinus()
    assert not assess_ecg_quality(ecg, FS).lead_reversal
    swapped = ecg.copy()  # LA <-> RA: I inverts, II <-> III, aVR <-> aVL, aVF and V leads unchanged
    swapped[0] = -ecg[0]
    swapped[[1, 2]] = ecg[[2, 1]]
    swapped[[3, 4]] = ecg[[4, 3]]
    quality = assess_ecg_quality(swapped, FS)
    assert quality.lead_reversal and quality.flags == ("lead_reversal",)


def test_wide_qrs_is_not_a_quality_problem_and_is_detected() -> None:
    ecg, true = _sinus("wide")
    quality = assess_ecg_quality(ecg, FS)
    assert quality.flags == () and quality.score > 0.95
    found = detect_rpeaks(ecg, FS)
    assert len(found) == len(true) and np.abs(found - true).max() <= int(0.02 * FS)
