"""Split-conformal intervals of the seed ensemble: the threshold rule, coverage where it is promised, and its
edges (missing truth, too few calibration subjects, the seed-scaled score)."""

from __future__ import annotations

import numpy as np
import pytest

from ptacl_lib.evaluate.calibration import (
    Calibration,
    EnsemblePrediction,
    calibrate,
    calibration_from_scores,
    conformal_quantile,
    conformal_scores,
    coverage_table,
)
from ptacl_lib.evaluate.regression import LinearProbe, fit_linear_probe


def test_the_threshold_is_the_finite_sample_quantile() -> None:
    scores = np.arange(1.0, 20.0)  # n = 19: ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores[:8], 0.9) == np.inf  # ceil(9 * 0.9) = 9 > 8: unbounded
    assert conformal_quantile(np.r_[scores, np.nan], 0.9) == 18.0  # unknown truth takes no part
    with pytest.raises(ValueError, match="coverage"):
        conformal_quantile(scores, 1.0)


@pytest.mark.parametrize("method", ["absolute", "seed_scaled"])
def test_intervals_cover_exchangeable_subjects_at_the_promised_rate(method: str) -> None:
    rng = np.random.default_rng(0)
    n_cal, n_test, targets = 400, 20000, ("a", "b")
    spread = rng.uniform(0.2, 2.0, size=(n_cal + n_test, 2))  # heteroscedastic: the seeds' spread tracks the noise
    truth = rng.normal(0.0, spread)
    prediction = EnsemblePrediction(mean=np.zeros_like(truth), seed_sd=spread * 0.3)
    cal = EnsemblePrediction(prediction.mean[:n_cal], prediction.seed_sd[:n_cal])
    test = EnsemblePrediction(prediction.mean[n_cal:], prediction.seed_sd[n_cal:])
    calibration = calibrate(cal, truth[:n_cal], 0.9, method, targets)
    table = coverage_table(calibration, test, truth[n_cal:])
    # coverage is at least 0.9 in expectation; one calibration draw of 400 spreads it by about 0.015
    assert table["coverage"].between(0.9 - 3 * 0.015, 0.9 + 3 * 0.015).all()
    assert (table["mean_width"] > 0).all() and (table["n"] == n_test).all()


def test_the_seed_scaled_score_narrows_where_the_seeds_agree() -> None:
    rng = np.random.default_rng(1)
    spread = rng.uniform(0.1, 3.0, size=(3000, 1))
    truth = rng.normal(0.0, spread)
    prediction = EnsemblePrediction(np.zeros_like(truth), spread)
    absolute = calibrate(prediction, truth, method="absolute", targets=("a",))
    scaled = calibrate(prediction, truth, method="seed_scaled", targets=("a",))
    half_absolute, half_scaled = absolute.half_widths(prediction), scaled.half_widths(prediction)
    assert np.ptp(half_absolute) == 0 and np.ptp(half_scaled) > 0  # one width against a width per subject
    assert half_scaled.mean() < half_absolute.mean()  # where the noise is heteroscedastic, narrower on average


def test_any_coverage_from_one_set_of_scores_and_the_record_round_trips() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(200, 2))
    truth[:10, 1] = np.nan  # a validation subject may lack a phenotype
    prediction = EnsemblePrediction(np.zeros_like(truth), np.ones_like(truth))
    scores, floor = conformal_scores(prediction, truth)
    narrow, wide = (calibration_from_scores(scores, floor, c, targets=("a", "b")) for c in (0.5, 0.95))
    assert (narrow.quantiles < wide.quantiles).all() and narrow.n.tolist() == [200, 190]
    assert calibration_from_scores(scores, floor, 0.9, targets=("a", "b")).quantiles == \
        pytest.approx(calibrate(prediction, truth, 0.9, targets=("a", "b")).quantiles)
    back = Calibration.from_dict(narrow.to_dict())
    assert back.quantiles.tolist() == narrow.quantiles.tolist() and back.method == narrow.method
    few = calibrate(EnsemblePrediction(np.zeros((5, 1)), np.ones((5, 1))), np.ones((5, 1)), targets=("a",))
    assert few.to_dict()["quantiles"] == [None] and Calibration.from_dict(few.to_dict()).quantiles[0] == np.inf
    with pytest.raises(ValueError, match=r"no calibration subject has a value for \['b'\]"):
        calibrate(prediction, np.c_[truth[:, 0], np.full(200, np.nan)], targets=("a", "b"))


def test_the_exported_probe_predicts_as_the_evaluated_one() -> None:
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(300, 16)), rng.normal(size=(16, 9))
    y, test = x @ w + rng.normal(size=(300, 9)), rng.normal(size=(40, 16))
    probe = LinearProbe.fit(x, y)
    np.testing.assert_allclose(probe.predict(test), fit_linear_probe(x, y, test, test @ w).predictions, atol=1e-9)
    again = LinearProbe.from_arrays(probe.targets, probe.arrays())
    np.testing.assert_array_equal(again.predict(test), probe.predict(test))
