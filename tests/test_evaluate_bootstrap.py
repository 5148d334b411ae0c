"""The paired subject-and-seed bootstrap: point estimates, intervals and the detectable difference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from ptacl_lib.evaluate.bootstrap import paired_r2_difference, paired_score_difference
from ptacl_lib.evaluate.regression import ProbeResult


def _result(truth: np.ndarray, noise: float, seed: int) -> ProbeResult:
    rng = np.random.default_rng(seed)
    return ProbeResult(targets=("a", "b"), predictions=truth + noise * rng.standard_normal(truth.shape),
                       truth=truth, alphas=None)


def test_point_estimate_is_the_seed_mean_of_r2_differences() -> None:
    truth = np.random.default_rng(0).standard_normal((200, 2))
    arm = {s: _result(truth, 0.5, s) for s in range(3)}
    ref = {s: _result(truth, 0.9, 10 + s) for s in range(3)}
    table = paired_r2_difference(arm, ref, n_resamples=500).set_index("target")
    want_a = np.mean([r2_score(truth[:, 0], arm[s].predictions[:, 0]) - r2_score(truth[:, 0], ref[s].predictions[:, 0])
                      for s in range(3)])
    assert table.loc["a", "mean_difference"] == pytest.approx(want_a)
    assert table.loc["mean", "mean_difference"] == pytest.approx(table.loc[["a", "b"], "mean_difference"].mean())
    assert (table["ci_low"] > 0).all()  # a clearly better arm: intervals exclude zero
    assert np.allclose(table["mdd"], (1.959964 + 0.841621) * table["se"])


def test_identical_arms_differ_by_exactly_zero() -> None:
    truth = np.random.default_rng(1).standard_normal((80, 2))
    arm = {s: _result(truth, 0.7, s) for s in range(2)}
    table = paired_r2_difference(arm, arm, n_resamples=200)
    assert np.allclose(table[["mean_difference", "ci_low", "ci_high", "se"]].to_numpy(), 0.0)


def test_more_test_subjects_narrow_the_interval() -> None:
    def width(n: int) -> float:
        truth = np.random.default_rng(2).standard_normal((n, 2))
        arm = {s: _result(truth, 0.8, s) for s in range(5)}
        ref = {s: _result(truth, 0.8, 50 + s) for s in range(5)}
        row = paired_r2_difference(arm, ref, n_resamples=800).set_index("target").loc["mean"]
        return float(row["ci_high"] - row["ci_low"])

    assert width(1600) < 0.6 * width(100)


def test_different_test_subjects_are_refused() -> None:
    truth = np.random.default_rng(3).standard_normal((50, 2))
    with pytest.raises(ValueError, match="different test subjects"):
        paired_r2_difference({0: _result(truth, 0.5, 0)}, {0: _result(truth[::-1].copy(), 0.5, 1)})
    with pytest.raises(ValueError, match="share no seed"):
        paired_r2_difference({0: _result(truth, 0.5, 0)}, {1: _result(truth, 0.5, 1)})


def test_the_standard_error_splits_into_its_seed_and_subject_parts() -> None:
    """Seeds that disagree a lot on a large test set: the seed part dominates, and the parts add up."""
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((3000, 2))
    arm = {s: _result(truth, 0.5 + 0.15 * rng.random(), s) for s in range(6)}  # seed-to-seed spread in quality
    ref = {s: _result(truth, 0.6, 100 + s) for s in range(6)}
    row = paired_r2_difference(arm, ref, n_resamples=1000).set_index("target").loc["mean"]
    diffs = [np.mean(arm[s].metric_array("r2") - ref[s].metric_array("r2")) for s in range(6)]
    assert row["se_seed"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(6))
    assert row["se_seed"] > 2 * row["se_subject"] > 0
    assert row["se"] == pytest.approx(np.hypot(row["se_seed"], row["se_subject"]), rel=0.25)
    one_seed = paired_r2_difference({0: arm[0]}, {0: ref[0]}, n_resamples=200)
    assert one_seed["se_seed"].isna().all() and (one_seed["se_subject"] > 0).all()


def test_per_subject_scores_are_paired_like_r2() -> None:
    """Per-subject scores (alignment): the point estimate is the seed mean of subject-mean differences (NaN
    subjects left out), the interval covers a known shift, and no ``mean`` target is added."""
    rng = np.random.default_rng(3)
    base = {s: rng.normal(50.0, 10.0, size=(300, 2)) for s in range(3)}
    shifted = {s: base[s] + np.array([-5.0, 0.0]) + rng.normal(0.0, 2.0, size=(300, 2)) for s in range(3)}
    shifted[0][7] = np.nan  # a subject with nothing to score
    table = paired_score_difference(shifted, base, ("phase_error_ms", "other"), n_resamples=500).set_index("target")
    assert list(table.index) == ["phase_error_ms", "other"]
    want = np.mean([np.nanmean(shifted[s][:, 0]) - np.mean(base[s][:, 0]) for s in range(3)])
    assert table.loc["phase_error_ms", "mean_difference"] == pytest.approx(want)
    assert table.loc["phase_error_ms", "ci_high"] < 0 < table.loc["other", "ci_high"]
    assert table.loc["other", "ci_low"] < 0
    assert np.allclose(table["mdd"], (1.959964 + 0.841621) * table["se"])
    with pytest.raises(ValueError, match="score array"):
        paired_score_difference({0: np.zeros((5, 2))}, {0: np.zeros((6, 2))}, ("a", "b"))
