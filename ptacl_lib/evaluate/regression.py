"""Regression of CMR-derived function from a frozen embedding: a cross-validated linear probe.

The probe standardises the embedding (training statistics) and fits one ridge regression per
phenotype, each with its own alpha chosen by efficient leave-one-out cross-validation on the
training set (``sklearn.linear_model.RidgeCV``). It is then scored once on the test set:
R², MAE in physical units and Pearson r. The same probe is applied to every arm, so the
comparison measures the embedding and nothing else.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.schema import PHENOTYPES
from .retrieval import MetricRecord

#: Ridge penalties searched by leave-one-out cross-validation (on standardised features).
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 5, 15))
#: The metrics of every regression target.
REGRESSION_METRICS: tuple[str, ...] = ("r2", "mae", "pearson_r")


@dataclass(frozen=True)
class ProbeResult:
    """Test-set predictions of a fitted probe (or a fine-tuned model), next to the truth."""

    targets: tuple[str, ...]
    predictions: np.ndarray  #: [N_test, T] physical units
    truth: np.ndarray  #: [N_test, T]
    alphas: np.ndarray | None = None  #: [T] the ridge penalty chosen per target (None: not a ridge probe)

    def metrics(self, task: str = "regression") -> list[MetricRecord]:
        """R², MAE and Pearson r per target as tidy records."""
        return regression_metrics(self.predictions, self.truth, self.targets, task=task)

    def metric_array(self, metric: str = "r2") -> np.ndarray:
        """One metric per target, in ``targets`` order."""
        records = {r["target"]: r["value"] for r in self.metrics() if r["metric"] == metric}
        return np.array([records[t] for t in self.targets], dtype=np.float64)


def _fitted_pipeline(train_x: np.ndarray, train_y: np.ndarray, alphas: Sequence[float]) -> Pipeline:
    """The standardise + ridge probe fitted on train (alpha by LOO-CV per target): the one fitting rule."""
    probe: Pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=np.asarray(alphas), alpha_per_target=True))
    return probe.fit(train_x, train_y)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     targets: Sequence[str] = PHENOTYPES,
                     alphas: Sequence[float] = DEFAULT_ALPHAS) -> ProbeResult:
    """Fit a standardise + ridge probe on train (alpha by LOO-CV per target) and predict test.

    ``train_y`` and ``test_y`` are ``[N, T]`` with columns ``targets``; they must be finite.
    """
    train_x, test_x = _check_features(train_x, "train"), _check_features(test_x, "test")
    train_y, test_y = _check_targets(train_y, targets, "train"), _check_targets(test_y, targets, "test")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and targets differ in number of rows")
    probe = _fitted_pipeline(train_x, train_y, alphas)
    chosen = np.atleast_1d(probe[-1].alpha_).astype(np.float64)
    return ProbeResult(targets=tuple(targets), predictions=probe.predict(test_x).reshape(test_y.shape),
                       truth=test_y, alphas=np.broadcast_to(chosen, (len(targets),)).copy())


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe as plain arrays, so a model bundle can store it and apply it without sklearn or pickle:
    ``predict(x) = ((x - x_mean) / x_scale) @ coef.T + intercept``."""

    targets: tuple[str, ...]
    x_mean: np.ndarray  #: [E] the embedding's training mean
    x_scale: np.ndarray  #: [E] its training standard deviation (1 where constant)
    coef: np.ndarray  #: [T, E] ridge coefficients on the standardised embedding
    intercept: np.ndarray  #: [T]
    alphas: np.ndarray  #: [T] the ridge penalty chosen per target

    @classmethod
    def fit(cls, train_x: np.ndarray, train_y: np.ndarray, targets: Sequence[str] = PHENOTYPES,
            alphas: Sequence[float] = DEFAULT_ALPHAS) -> "LinearProbe":
        """Fit as ``fit_linear_probe`` does (finite train rows only) and keep the numbers."""
        train_x, train_y = _check_features(train_x, "train"), _check_targets(train_y, targets, "train")
        pipeline = _fitted_pipeline(train_x, train_y, alphas)
        scaler, ridge = pipeline[0], pipeline[-1]
        n_targets = len(targets)
        return cls(targets=tuple(targets), x_mean=scaler.mean_.astype(np.float64),
                   x_scale=scaler.scale_.astype(np.float64), coef=np.asarray(ridge.coef_).reshape(n_targets, -1),
                   intercept=np.broadcast_to(np.asarray(ridge.intercept_, dtype=np.float64), (n_targets,)).copy(),
                   alphas=np.broadcast_to(np.atleast_1d(ridge.alpha_).astype(np.float64), (n_targets,)).copy())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``[N, T]`` predictions in physical units for ``[N, E]`` embeddings."""
        x = _check_features(x, "probe input")
        return ((x - self.x_mean) / self.x_scale) @ self.coef.T + self.intercept

    def arrays(self) -> dict[str, np.ndarray]:
        """The numbers, by name (``from_arrays`` reads them back)."""
        return {"x_mean": self.x_mean, "x_scale": self.x_scale, "coef": self.coef, "intercept": self.intercept,
                "alphas": self.alphas}

    @classmethod
    def from_arrays(cls, targets: Sequence[str], arrays: dict[str, np.ndarray]) -> "LinearProbe":
        """A probe from ``arrays``' output."""
        return cls(targets=tuple(targets), **{k: np.asarray(arrays[k], dtype=np.float64) for k in
                                              ("x_mean", "x_scale", "coef", "intercept", "alphas")})


def mean_predictor(train_y: np.ndarray, n_test: int) -> np.ndarray:
    """The no-information baseline: the training mean of every target, ``[n_test, T]``."""
    return np.repeat(np.asarray(train_y, dtype=np.float64).mean(axis=0, keepdims=True), n_test, axis=0)


def pearson_r(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (a constant prediction has no r)."""
    if np.ptp(prediction) == 0 or np.ptp(truth) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.pearsonr(prediction, truth).statistic)


def regression_metrics(predictions: np.ndarray, truth: np.ndarray, targets: Sequence[str] = PHENOTYPES,
                       task: str = "regression") -> list[MetricRecord]:
    """``r2``, ``mae`` (physical units) and ``pearson_r`` per target column."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(truth), -1)
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    if predictions.shape != truth.shape or truth.shape[1] != len(targets):
        raise ValueError(f"predictions {predictions.shape}, truth {truth.shape} and {len(targets)} targets disagree")
    records: list[MetricRecord] = []
    for j, name in enumerate(targets):
        values = {"r2": r2_score(truth[:, j], predictions[:, j]),
                  "mae": mean_absolute_error(truth[:, j], predictions[:, j]),
                  "pearson_r": pearson_r(predictions[:, j], truth[:, j])}
        records += [{"task": task, "target": name, "metric": m, "value": float(v)} for m, v in values.items()]
    return records


def _check_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} embeddings must be [N, E], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} embeddings contain NaN or inf")
    return x


def _check_targets(y: np.ndarray, targets: Sequence[str], name: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if y.shape[1] != len(targets):
        raise ValueError(f"{name} targets have {y.shape[1]} columns for {len(targets)} names {tuple(targets)}")
    bad = ~np.isfinite(y)
    if bad.any():
        cols = sorted({targets[j] for j in np.nonzero(bad)[1]})
        raise ValueError(f"{name} targets contain NaN or inf in {cols} ({int(bad.any(axis=1).sum())} rows)")
    return y
