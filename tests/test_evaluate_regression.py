"""The linear probe and its metrics: hand-computed values, and signal versus noise."""

from __future__ import annotations

import numpy as np
import pytest

from ptacl_lib.data.schema import PHENOTYPES
from ptacl_lib.evaluate.regression import fit_linear_probe, mean_predictor, regression_metrics


def _values(records: list[dict]) -> dict[tuple[str, str], float]:
    return {(r["target"], r["metric"]): r["value"] for r in records}


def test_metrics_equal_hand_computed_values() -> None:
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    pred = np.array([[1.0], [2.0], [3.0], [5.0]])
    v = _values(regression_metrics(pred, truth, targets=("lvef",)))
    assert v[("lvef", "mae")] == pytest.approx(0.25)
    assert v[("lvef", "r2")] == pytest.approx(1 - 1 / 5)  # SS_res = 1, SS_tot = 5
    assert v[("lvef", "pearson_r")] == pytest.approx(6.5 / np.sqrt(5 * 8.75))


def test_constant_prediction_has_no_pearson_r_and_zero_r2_at_the_mean() -> None:
    truth = np.array([[1.0], [2.0], [3.0]])
    v = _values(regression_metrics(np.full((3, 1), 2.0), truth, targets=("lvm",)))
    assert np.isnan(v[("lvm", "pearson_r")])
    assert v[("lvm", "r2")] == pytest.approx(0.0)


def test_probe_recovers_an_exact_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = x @ rng.normal(size=(5, 2)) + np.array([60.0, 150.0])
    result = fit_linear_probe(x[:80], y[:80], x[80:], y[80:], targets=("lvef", "lvm"), alphas=(1e-6,))
    np.testing.assert_allclose(result.predictions, y[80:], atol=1e-3)
    assert result.alphas.tolist() == [1e-6, 1e-6]


def test_probe_beats_mean_predictor_with_signal_but_not_with_noise() -> None:
    rng = np.random.default_rng(0)
    n, dim = 300, 32
    y = rng.normal(100, 20, size=(n, len(PHENOTYPES)))
    signal = np.concatenate([(y - 100) / 20 @ rng.normal(size=(len(PHENOTYPES), dim)), rng.normal(size=(n, 8))], 1)
    signal += 0.5 * rng.normal(size=signal.shape)
    noise = rng.normal(size=(n, dim))
    baseline = _values(regression_metrics(mean_predictor(y[:200], 100), y[200:]))
    for x, carries_signal in ((signal, True), (noise, False)):
        probe = _values(fit_linear_probe(x[:200], y[:200], x[200:], y[200:]).metrics())
        for name in PHENOTYPES:
            beats = probe[(name, "r2")] > 0.5 and probe[(name, "mae")] < 0.8 * baseline[(name, "mae")]
            assert beats == carries_signal, name
            if not carries_signal:
                assert probe[(name, "r2")] < 0.05 and probe[(name, "mae")] > 0.95 * baseline[(name, "mae")]


def test_probe_rejects_missing_targets_by_name() -> None:
    y = np.ones((10, 2))
    y[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"train targets contain NaN or inf in \['lvm'\]"):
        fit_linear_probe(np.ones((10, 3)), y, np.ones((2, 3)), np.ones((2, 2)), targets=("lvef", "lvm"))
