"""Rhythm-aware phase pooling: PVCs with compensatory pauses, AF and too few beats, checked value by value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ecg_shapes import FS, make_ecg

from ptacl_lib.data.preprocess import detect_rpeaks
from ptacl_lib.data.rhythm import MIN_USABLE_BEATS, RR_TOLERANCE, rhythm_summary
from ptacl_lib.models.phase_pooling import PHASE_POOLERS, beat_phase_pool, token_phase_bins

#: R times (s) of a sinus rhythm at 0.9 s with a PVC at 3.65 s (0.55 s after its predecessor, pause of
#: 1.35 s after it) and a PVC couplet at 7.35 s and 7.85 s.
PVC_TIMES = np.array([0.4, 1.3, 2.2, 3.1, 3.65, 5.0, 5.9, 6.8, 7.35, 7.85, 9.2])
PVC_KINDS = ["normal"] * 4 + ["pvc", "normal", "normal", "normal", "pvc", "pvc", "normal"]


def test_pvc_run_detected_and_its_beats_excluded() -> None:
    ecg, true = make_ecg(PVC_TIMES, PVC_KINDS)
    found = detect_rpeaks(ecg, FS)
    assert len(found) == len(true)
    assert np.abs(found - true).max() <= int(0.01 * FS)  # every beat, PVCs included, within 10 ms
    summary = rhythm_summary(found, FS)
    # RR (s): .9 .9 .9 .55 1.35 .9 .9 .55 .5 1.35; median .9, tolerance ±20 % -> [.72, 1.08]
    # beats 3 (short, ends on the PVC), 4 (compensatory pause), 7 and 8 (couplet), 9 (pause) are out
    assert summary.usable.tolist() == [True, True, True, False, False, True, True, False, False, False]
    assert (summary.n_beats, summary.n_excluded, summary.flag) == (10, 5, "ok")
    assert summary.median_rr_ms == pytest.approx(900.0, abs=5.0)


def test_beat_after_a_premature_beat_is_excluded_even_when_its_rr_fits() -> None:
    # RR: 100 100 70 (premature) 100 (fits, but follows the premature beat) 100
    summary = rhythm_summary(np.array([0, 100, 200, 270, 370, 470]), 100.0)
    assert summary.usable.tolist() == [True, True, False, False, True]


def test_af_irregular_rr_leaves_few_beats() -> None:
    rng = np.random.default_rng(3)
    times = 0.3 + np.concatenate([[0.0], np.cumsum(rng.uniform(0.45, 1.1, 20))])
    times = times[times < 9.7]
    ecg, true = make_ecg(times, ["normal"] * len(times), af=True)
    found = detect_rpeaks(ecg, FS)
    assert len(found) == len(true) and np.abs(found - true).max() <= int(0.01 * FS)
    # RR (samples): 253 302 485 414 256 366 380 278 463 262 352 393 365; median 365, window [292, 438];
    # premature (< 292): beats 0, 4, 7, 9, so beats 1, 5, 8, 10 follow a premature beat
    assert np.diff(found).tolist() == pytest.approx([253, 302, 485, 414, 256, 366, 380, 278, 463, 262, 352, 393,
                                                     365], abs=3)
    assert np.flatnonzero(rhythm_summary(found, FS).usable).tolist() == [3, 6, 11, 12]


def test_too_few_usable_beats_is_flagged() -> None:
    summary = rhythm_summary(np.array([0, 40, 130, 170, 260]), 100.0)  # alternating short/long RR
    assert summary.n_usable < MIN_USABLE_BEATS and summary.flag == "too_few_beats"
    assert rhythm_summary(np.array([5, -1, -1]), 100.0).flag == "too_few_beats"  # one peak: no beat at all
    assert rhythm_summary(np.array([0, 100, 200, 300]), 100.0).columns() == {
        "n_beats": 3, "n_excluded_beats": 0, "median_rr_ms": 1000.0, "rhythm_flag": "ok"}


def test_pooled_mask_and_tokens_leave_out_excluded_beats() -> None:
    # peaks (samples): beats [0,100) [100,200) usable, [200,260) premature, [260,400) pause, [400,500) usable
    rpeaks = torch.tensor([[0, 100, 200, 260, 400, 500, -1]])
    times = torch.arange(0, 500, 10)  # one token every 10 samples
    _, pooled = token_phase_bins(times, rpeaks, n_phases=4)
    expected_pooled = ((times < 200) | (times >= 400)).tolist()
    assert pooled[0].tolist() == expected_pooled
    tokens = times.float()[None, :, None]  # token value = its time
    phase_tokens, mask = beat_phase_pool(tokens, times, rpeaks, 4)
    assert mask[0].tolist() == [True, True, True, True]
    # phase 1 (bin of phases 0.125..0.375): times 20..30 of each usable beat -> 20, 30, 120, 130, 420, 430
    assert phase_tokens[0, 1, 0].item() == pytest.approx(np.mean([20, 30, 120, 130, 420, 430]))
    # the rule before rhythm-aware pooling used the excluded beats too
    _, every = token_phase_bins(times, rpeaks, 4, rr_tolerance=None)
    assert every[0].all()
    old, _ = PHASE_POOLERS["beat_nearest_frame_all_beats"](tokens, times, rpeaks, 4)
    assert old[0, 1, 0].item() != pytest.approx(phase_tokens[0, 1, 0].item())


def test_too_few_beats_pool_only_the_usable_one_and_no_beat_gives_an_empty_mask() -> None:
    # RR 40, 90: the (lower) median is 40, so only beat [0, 40) is pooled; its tokens at 0, 10, 20, 30
    # have phases 0, 1/4, 1/2, 3/4 -> bins 0, 2, 4, 6 of 8
    times = torch.arange(0, 200, 10)
    phase_tokens, mask = beat_phase_pool(torch.ones(1, len(times), 3), times, torch.tensor([[0, 40, 130]]), 8)
    assert mask[0].tolist() == [True, False, True, False, True, False, True, False]
    assert rhythm_summary(np.array([0, 40, 130]), 100.0).flag == "too_few_beats"
    # one detected peak: no complete beat, an all-False mask and zero tokens (not garbage)
    phase_tokens, mask = beat_phase_pool(torch.ones(1, len(times), 3), times, torch.tensor([[60, -1, -1]]), 5)
    assert not mask.any() and torch.equal(phase_tokens, torch.zeros(1, 5, 3))


def test_tolerance_is_twenty_percent() -> None:
    assert RR_TOLERANCE == 0.20
    inside = rhythm_summary(np.array([0, 100, 200, 319, 419]), 100.0)  # 119 vs median 100: +19 %
    outside = rhythm_summary(np.array([0, 100, 200, 321, 421]), 100.0)  # +21 %
    assert inside.usable.tolist() == [True, True, True, True]
    assert outside.usable.tolist() == [True, True, False, True]


def test_cache_reports_beats_and_quality_per_subject(tiny_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from ptacl_lib.data import cache as cache_module
    from ptacl_lib.data import open_cohort
    from ptacl_lib.data.preprocess import PreprocessConfig

    cohort = open_cohort(tiny_cohort)
    prepared = cache_module.PreprocessedCohort.build_or_load(cohort, PreprocessConfig(), progress=False)
    beats = pd.read_csv(prepared.root / "beats.csv", dtype={"subject_id": str}, keep_default_na=False)
    assert list(beats.columns) == ["subject_id", "ecg_quality", "ecg_noise", "ecg_flags", "n_beats",
                                   "n_excluded_beats", "median_rr_ms", "rhythm_flag"]
    rows = np.flatnonzero(prepared.ok)
    assert beats["subject_id"].tolist() == cohort.table["subject_id"].astype(str).to_numpy()[rows].tolist()
    for k, i in enumerate(rows[:10]):
        summary = rhythm_summary(prepared.rpeaks_of(i), prepared.config.geometry.ecg_hz)
        assert beats.loc[k, "n_beats"] == summary.n_beats == len(prepared.rpeaks_of(i)) - 1
        assert beats.loc[k, "n_excluded_beats"] == summary.n_excluded
    # a new cache version is a new key, so caches holding the old detector's peaks are rebuilt
    before = cache_module.cache_key(cohort, PreprocessConfig())
    monkeypatch.setattr(cache_module, "CACHE_VERSION", cache_module.CACHE_VERSION + 1)
    assert cache_module.cache_key(cohort, PreprocessConfig()) != before
