"""Calibrated prediction intervals for the seed ensemble: split-conformal residuals on the validation split.

An arm's runs (one per seed) each give a ridge probe on their frozen ECG embedding (``regression.LinearProbe``,
fitted on the train split as evaluation fits it). The ensemble prediction of a subject is the mean of the
seeds' predictions, and its spread their standard deviation. Split-conformal calibration (Vovk et al. 2005;
Lei et al., JASA 2018) then sets, per phenotype, the half-width ``q`` of a symmetric interval from the
validation split's residuals, so that a new subject exchangeable with the validation subjects is covered
with probability at least ``coverage``:

* ``absolute``: score ``|y - ŷ|``, interval ``ŷ ± q``;
* ``seed_scaled``: score ``|y - ŷ| / (s + s₀)`` with ``s`` the seed spread and ``s₀`` its median on the
  validation split, interval ``ŷ ± q (s + s₀)``: wider where the seeds disagree.

``q`` is the ``ceil((n + 1) · coverage)``-th smallest of the ``n`` validation scores (infinite when that
exceeds ``n``). Calibration never sees the test subjects; a calibration set of ``n`` subjects leaves the
realised coverage spread by about ``sqrt(coverage (1 - coverage) / n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data.schema import PHENOTYPES
from .regression import LinearProbe

CONFORMAL_METHODS: tuple[str, ...] = ("absolute", "seed_scaled")
DEFAULT_COVERAGE = 0.90
#: The conformal score the library uses unless told otherwise (chosen on the demo's held-out cohort:
#: docs/experiments.md).
DEFAULT_METHOD = "absolute"


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) · coverage)``-th smallest finite score (inf if beyond n)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    k = math.ceil((len(scores) + 1) * coverage)
    return float(scores[k - 1]) if 0 < k <= len(scores) else float("inf")


@dataclass(frozen=True)
class EnsemblePrediction:
    """The seed ensemble's prediction of ``N`` subjects: the mean over seeds and the seeds' spread."""

    mean: np.ndarray  #: [N, T]
    seed_sd: np.ndarray  #: [N, T] standard deviation over seeds (0 with one seed)

    @classmethod
    def of(cls, probes: Sequence[LinearProbe], embeddings: Sequence[np.ndarray]) -> "EnsemblePrediction":
        """Each seed's probe on that seed's embeddings ``[N, E]`` (the same subjects, in the same order)."""
        if len(probes) != len(embeddings) or not probes:
            raise ValueError(f"{len(probes)} probes for {len(embeddings)} embedding sets")
        each = np.stack([p.predict(x) for p, x in zip(probes, embeddings)])  # [S, N, T]
        return cls(mean=each.mean(axis=0), seed_sd=each.std(axis=0))


@dataclass(frozen=True)
class Calibration:
    """Per-target interval half-widths from a calibration set (``calibrate``); ``intervals`` applies them."""

    method: str
    coverage: float
    targets: tuple[str, ...]
    quantiles: np.ndarray  #: [T] the conformal threshold of each target's score
    spread_floor: np.ndarray  #: [T] ``s₀`` of ``seed_scaled`` (0 for ``absolute``)
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: [T] calibration subjects used

    def half_widths(self, prediction: EnsemblePrediction) -> np.ndarray:
        """``[N, T]`` half-widths of the intervals around ``prediction.mean``."""
        if self.method == "absolute":
            return np.broadcast_to(self.quantiles, prediction.mean.shape).copy()
        return self.quantiles * (prediction.seed_sd + self.spread_floor)

    def intervals(self, prediction: EnsemblePrediction) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``, each ``[N, T]``."""
        half = self.half_widths(prediction)
        return prediction.mean - half, prediction.mean + half

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (a model bundle's and ``calibration.json``'s); an unbounded threshold (too few
        calibration subjects for the coverage) is ``null``."""
        return {"method": self.method, "coverage": self.coverage, "targets": list(self.targets),
                "quantiles": [float(q) if np.isfinite(q) else None for q in self.quantiles],
                "spread_floor": self.spread_floor.tolist(), "n": [int(v) for v in self.n]}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Calibration":
        """Read ``to_dict``'s form back."""
        quantiles = [np.inf if q is None else q for q in record["quantiles"]]
        return cls(method=str(record["method"]), coverage=float(record["coverage"]), targets=tuple(record["targets"]),
                   quantiles=np.asarray(quantiles, dtype=np.float64),
                   spread_floor=np.asarray(record["spread_floor"], dtype=np.float64),
                   n=np.asarray(record.get("n", []), dtype=np.int64))


def conformal_scores(prediction: EnsemblePrediction, truth: np.ndarray,
                     method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """Calibration subjects' scores ``[N, T]`` (NaN where ``truth`` is unknown) and the spread floor ``s₀`` ``[T]``
    of ``method`` (module docstring; zeros for ``absolute``)."""
    if method not in CONFORMAL_METHODS:
        raise ValueError(f"unknown conformal method {method!r}; choose from {CONFORMAL_METHODS}")
    truth = np.asarray(truth, dtype=np.float64)
    known = np.isfinite(truth)
    scores = np.abs(truth - prediction.mean)
    floor = np.zeros(truth.shape[1])
    if method == "seed_scaled":
        floor = np.array([np.median(prediction.seed_sd[known[:, j], j]) if known[:, j].any() else 0.0
                          for j in range(truth.shape[1])])
        floor = np.where(floor > 0, floor, 1e-9)
        scores = scores / (prediction.seed_sd + floor)
    return np.where(known, scores, np.nan), floor


def calibration_from_scores(scores: np.ndarray, floor: np.ndarray, coverage: float = DEFAULT_COVERAGE,
                            method: str = DEFAULT_METHOD, targets: Sequence[str] = PHENOTYPES) -> Calibration:
    """The thresholds at ``coverage`` of calibration ``scores`` (``conformal_scores``): any coverage, one set of
    scores, which is what a model bundle keeps."""
    known = np.isfinite(scores)
    if not known.any(axis=0).all():
        missing = [t for t, ok in zip(targets, known.any(axis=0)) if not ok]
        raise ValueError(f"no calibration subject has a value for {missing}")
    quantiles = np.array([conformal_quantile(scores[known[:, j], j], coverage) for j in range(len(targets))])
    return Calibration(method, float(coverage), tuple(targets), quantiles, np.asarray(floor, dtype=np.float64),
                       known.sum(axis=0))


def calibrate(prediction: EnsemblePrediction, truth: np.ndarray, coverage: float = DEFAULT_COVERAGE,
              method: str = DEFAULT_METHOD, targets: Sequence[str] = PHENOTYPES) -> Calibration:
    """Split-conformal thresholds from calibration subjects' ``truth`` ``[N, T]`` (NaN: that target unknown)."""
    scores, floor = conformal_scores(prediction, truth, method)
    return calibration_from_scores(scores, floor, coverage, method, targets)


def interval_rows(targets: Sequence[str], truth: np.ndarray, mean: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray) -> pd.DataFrame:
    """Per target (column of the ``[N, T]`` arrays): subjects with a known ``truth``, the share of them inside
    ``[lower, upper]``, mean interval width (physical units) and MAE of ``mean``."""
    truth = np.asarray(truth, dtype=np.float64)
    rows = []
    for j, target in enumerate(targets):
        known = np.isfinite(truth[:, j])
        y = truth[known, j]
        rows.append({"target": target, "n": int(known.sum()),
                     "coverage": float(np.mean((y >= lower[known, j]) & (y <= upper[known, j]))),
                     "mean_width": float(np.mean(upper[known, j] - lower[known, j])),
                     "mae": float(np.mean(np.abs(y - mean[known, j])))})
    return pd.DataFrame(rows)


def coverage_table(calibration: Calibration, prediction: EnsemblePrediction, truth: np.ndarray) -> pd.DataFrame:
    """Per target: subjects scored, realised coverage, mean interval width (physical units) and MAE."""
    lower, upper = calibration.intervals(prediction)
    return interval_rows(calibration.targets, truth, prediction.mean, lower, upper)


#: What ``ptacl study`` writes beside its comparison tables.
CALIBRATION_JSON = "calibration.json"
CALIBRATION_CSV = "calibration.csv"


@dataclass(frozen=True)
class RunEnsemble:
    """One arm's seed ensemble (``ensemble_runs``): its probes, and its predictions of the validation split
    (the calibration set) and of the test set, with the truth of each."""

    arm: str
    seeds: tuple[int, ...]
    probes: tuple[LinearProbe, ...]  #: one per seed, fitted on the train split's embeddings
    val: EnsemblePrediction
    val_truth: np.ndarray  #: [N_val, T] (NaN where a validation subject lacks a phenotype)
    test: EnsemblePrediction
    test_truth: np.ndarray  #: [N_test, T]
    embedders: tuple[Any, ...] = ()  #: with ``ensemble_runs(embedders=True)``: each seed's ``models.ECGEmbedder``

    def calibrated(self, coverage: float = DEFAULT_COVERAGE, method: str = DEFAULT_METHOD) -> Calibration:
        """Split-conformal thresholds from the validation split (never the test set)."""
        return calibrate(self.val, self.val_truth, coverage, method)

    def scores(self, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
        """The validation split's conformal scores and spread floor (``conformal_scores``)."""
        return conformal_scores(self.val, self.val_truth, method)

    def test_coverage(self, calibration: Calibration) -> pd.DataFrame:
        """``coverage_table`` of ``calibration``'s intervals on the test set."""
        return coverage_table(calibration, self.test, self.test_truth)


def ensemble_runs(run_dirs: Sequence[Any], cohort: Any, device: str = "auto", embedders: bool = False) -> RunEnsemble:
    """The seed ensemble of one arm's evaluated runs (``embeddings.npz`` present); ``embedders`` keeps each
    run's ECG half (on the CPU) from the model it loads, for a model bundle.

    Each run's probe is fitted on its train embeddings, as evaluation fits it; the validation split of
    ``cohort`` (the study cohort) is embedded with each run's model and preprocessing; the test rows of
    ``embeddings.npz`` (every subject of the held-out cohort when the study had one) are the test set.
    """
    from ..data import Cohort, open_cohort
    from ..runs import load_run, run_preprocess_config
    from ..runtime import resolve_device
    from .embeddings import Embeddings, embed

    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    device = str(resolve_device(device))
    probes, seeds, arms = [], [], set()
    vals: list[Embeddings] = []
    tests: list[Embeddings] = []
    kept: list[Any] = []
    for run_dir in run_dirs:
        saved = Embeddings.load(run_dir)
        train = saved.subset("train")
        probes.append(LinearProbe.fit(train.ecg, train.require_phenotypes()))
        model, config = load_run(run_dir, device=device)
        vals.append(embed(model, cohort, "val", preprocess=run_preprocess_config(run_dir), device=device))
        if embedders:
            from ..models import ECGEmbedder

            kept.append(ECGEmbedder.from_model(model))
        tests.append(saved.subset("test"))
        seeds.append(int(config.seed))
        arms.add(config.objective)
    if len(arms) != 1:
        raise ValueError(f"an ensemble is one arm's seeds, got runs of {sorted(arms)}")
    for part in (vals, tests):
        if any(not np.array_equal(e.subject_ids, part[0].subject_ids) for e in part):
            raise ValueError("the runs embed different subjects: their seeds cannot be ensembled")
    return RunEnsemble(arms.pop(), tuple(seeds), tuple(probes),
                       EnsemblePrediction.of(probes, [e.ecg for e in vals]), vals[0].phenotypes,
                       EnsemblePrediction.of(probes, [e.ecg for e in tests]), tests[0].require_phenotypes(),
                       tuple(kept))


def write_calibration(out_dir: Any, run_dirs: Sequence[Any], cohort: Any, coverage: float = DEFAULT_COVERAGE,
                      device: str = "auto") -> pd.DataFrame:
    """Calibrate every arm's ensemble of a study and write ``calibration.csv`` (per arm, conformal method and
    phenotype: test coverage, mean width, MAE) and ``calibration.json`` (per arm: seeds, and the thresholds of
    every method). Returns the table."""
    import json
    from pathlib import Path

    from ..runs import read_config

    configs = {run_dir: read_config(run_dir) for run_dir in run_dirs}
    by_arm: dict[str, list[Any]] = {}
    for run_dir in run_dirs:
        by_arm.setdefault(configs[run_dir].objective, []).append(run_dir)
    tables, record = [], {}
    for arm, runs in by_arm.items():
        ensemble = ensemble_runs(sorted(runs, key=lambda r: configs[r].seed), cohort, device=device)
        record[arm] = {"seeds": list(ensemble.seeds), "n_val": int(len(ensemble.val_truth)), "methods": {}}
        for method in CONFORMAL_METHODS:
            calibration = ensemble.calibrated(coverage, method)
            record[arm]["methods"][method] = calibration.to_dict()
            tables.append(ensemble.test_coverage(calibration).assign(arm=arm, method=method))
    table = pd.concat(tables, ignore_index=True)[["arm", "method", "target", "n", "coverage", "mean_width", "mae"]]
    out = Path(out_dir)
    table.to_csv(out / CALIBRATION_CSV, index=False)
    (out / CALIBRATION_JSON).write_text(json.dumps({"coverage": coverage, "default_method": DEFAULT_METHOD,
                                                    "arms": record}, indent=1))
    return table
