"""The information ceiling of a cohort: how much of each phenotype an ECG carries, measured without any arm.

Two reference probes, scored with the arms' own protocol (``regression.fit_linear_probe``: standardise,
ridge with alpha by leave-one-out CV per target, fit on ``train``, score once on ``test``):

* ``latent_oracle`` (synthetic cohorts only): the probe on the generator's ECG-side latent variables,
  stored per subject as the store extra ``ecg_latents`` (names in the store's ``attrs["ecg_latents"]``).
  It is the most a model could learn if it recovered every parameter the ECG was drawn from.
  ``nonlinear=True`` adds ``latent_oracle_nonlinear``, a gradient-boosted-trees probe on the same latents.
* ``median_beat`` (any cohort): the probe on 12-lead median beats, -250..+600 ms around R in 10 ms
  steps, plus the mean RR, with R peaks from the library's own detector (``preprocess.detect_rpeaks``).

``ceiling_table`` returns tidy rows shaped like the comparison table (``compare.COLUMNS``), so they stack
beside the arms; ``window_share`` says which share of the window (ceiling − random init) each arm closes.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..data import Cohort
from ..data.preprocess import bandpass, detect_rpeaks
from ..data.schema import PHENOTYPES
from .compare import COLUMNS
from .regression import ProbeResult, fit_linear_probe

LOG = logging.getLogger(__name__)

LATENT_ORACLE = "latent_oracle"
LATENT_ORACLE_NONLINEAR = "latent_oracle_nonlinear"
MEDIAN_BEAT = "median_beat"
#: The reference arms, in reporting order.
CEILING_ARMS: tuple[str, ...] = (LATENT_ORACLE, LATENT_ORACLE_NONLINEAR, MEDIAN_BEAT)
#: The store extra that holds the generator's ECG-side latents ``[N, n_latents]``.
LATENT_EXTRA = "ecg_latents"
#: Median-beat sample times relative to R, in milliseconds.
MEDIAN_BEAT_MS: np.ndarray = np.arange(-250, 601, 10)


def median_beat_features(ecg: np.ndarray, fs: float, rpeaks: np.ndarray | None = None) -> np.ndarray:
    """``[12 * 86 + 1]``: the band-passed (0.5-40 Hz) median beat of every lead at ``MEDIAN_BEAT_MS``, then mean RR (s).

    ``rpeaks`` defaults to ``detect_rpeaks(ecg, fs)``. Raises ``ValueError`` when no beat has a full window.
    """
    peaks = detect_rpeaks(ecg, fs) if rpeaks is None else np.asarray(rpeaks, dtype=np.int64)
    peaks = peaks[peaks >= 0]
    filtered = bandpass(np.asarray(ecg, dtype=np.float64), fs, 0.5, min(40.0, 0.45 * fs))
    offsets = np.rint(MEDIAN_BEAT_MS * fs / 1000.0).astype(np.int64)
    n = filtered.shape[1]
    usable = peaks[(peaks + offsets[0] >= 0) & (peaks + offsets[-1] < n)]
    if usable.size == 0:
        raise ValueError(f"no beat with a full {MEDIAN_BEAT_MS[0]}..{MEDIAN_BEAT_MS[-1]} ms window "
                         f"({peaks.size} R peaks in {n} samples)")
    beats = filtered[:, usable[:, None] + offsets]          # [12, beats, 86]
    rr = float(np.mean(np.diff(peaks)) / fs) if peaks.size >= 2 else float("nan")
    if not np.isfinite(rr):
        raise ValueError("fewer than two R peaks: no RR interval")
    return np.concatenate([np.median(beats, axis=1).ravel(), [rr]])


def cohort_median_beats(cohort: Cohort, rows: np.ndarray,
                        features: Callable[[np.ndarray, float], np.ndarray] = median_beat_features) -> np.ndarray:
    """Median-beat features of ``rows`` ``[len(rows), F]``; a subject that fails is logged and left NaN."""
    out: list[np.ndarray | None] = []
    for i in rows:
        try:
            out.append(features(cohort.ecg(int(i)), float(cohort.geometry.ecg_hz)))
        except ValueError as err:  # one unreadable or beat-less ECG must not stop the cohort
            LOG.warning("median beat of subject %s skipped: %s", cohort.table["subject_id"].iloc[int(i)], err)
            out.append(None)
    width = next((len(f) for f in out if f is not None), 12 * len(MEDIAN_BEAT_MS) + 1)
    return np.stack([f if f is not None else np.full(width, np.nan) for f in out])


def latent_features(cohort: Cohort, rows: np.ndarray) -> np.ndarray:
    """The generator's ECG-side latents of ``rows`` ``[len(rows), n_latents]``; ValueError when the cohort has none."""
    first = cohort.extra(LATENT_EXTRA, int(rows[0])) if len(rows) else None
    if first is None:
        raise ValueError(f"{cohort.manifest_path}: no '{LATENT_EXTRA}' extra in the array store; the latent "
                         "oracle needs a synthetic cohort written by generator version >= 2.0")
    return np.stack([np.asarray(cohort.extra(LATENT_EXTRA, int(i)), dtype=np.float64) for i in rows])


def probe_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   nonlinear: bool = False, seed: int = 0) -> ProbeResult:
    """The arms' ridge probe (``fit_linear_probe``) or, with ``nonlinear``, gradient-boosted trees per target.

    Rows with a non-finite feature (a skipped subject) are dropped from both sides and logged.
    """
    keep_train, keep_test = np.isfinite(train_x).all(axis=1), np.isfinite(test_x).all(axis=1)
    dropped = int((~keep_train).sum() + (~keep_test).sum())
    if dropped:
        LOG.warning("%d subject(s) without features left out of the probe", dropped)
    train_x, train_y, test_x, test_y = train_x[keep_train], train_y[keep_train], test_x[keep_test], test_y[keep_test]
    if not nonlinear:
        return fit_linear_probe(train_x, train_y, test_x, test_y)
    from sklearn.ensemble import HistGradientBoostingRegressor

    predictions = np.stack([HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, early_stopping=True,
                                                          random_state=seed).fit(train_x, train_y[:, j])
                            .predict(test_x) for j in range(train_y.shape[1])], axis=1)
    return ProbeResult(targets=tuple(PHENOTYPES), predictions=predictions, truth=np.asarray(test_y, dtype=float))


def _rows(result: ProbeResult, arm: str, seed: int) -> list[dict[str, object]]:
    return [{"arm": arm, "seed": seed, **record} for record in result.metrics()]


def ceiling_table(cohort: Cohort, arms: Sequence[str] | None = None, seed: int = 0,
                  test_cohort: Cohort | None = None) -> pd.DataFrame:
    """Test-set R², MAE and Pearson r of the reference probes, as tidy rows (``compare.COLUMNS``).

    ``arms`` defaults to ``latent_oracle`` (when the cohort has latents) and ``median_beat``; add
    ``latent_oracle_nonlinear`` for the tree probe. ``seed`` labels the rows (the ridge probes are
    deterministic) and seeds the trees. Split and targets are those of the arms' probes: fit on
    ``cohort``'s train split, scored on its test split, or on every subject of ``test_cohort`` when given.
    """
    scored = test_cohort if test_cohort is not None else cohort
    has_latents = cohort.extra(LATENT_EXTRA, 0) is not None and scored.extra(LATENT_EXTRA, 0) is not None
    chosen = list(arms) if arms is not None else ([LATENT_ORACLE] if has_latents else []) + [MEDIAN_BEAT]
    unknown = sorted(set(chosen) - set(CEILING_ARMS))
    if unknown:
        raise ValueError(f"unknown ceiling arm(s) {unknown}; known: {CEILING_ARMS}")
    train = cohort.indices("train")
    test = scored.indices("test") if test_cohort is None else np.arange(len(scored))
    train_y, test_y = cohort.phenotypes(train).astype(np.float64), scored.phenotypes(test).astype(np.float64)
    rows: list[dict[str, object]] = []
    if {LATENT_ORACLE, LATENT_ORACLE_NONLINEAR} & set(chosen):
        train_x, test_x = latent_features(cohort, train), latent_features(scored, test)
        for arm in (LATENT_ORACLE, LATENT_ORACLE_NONLINEAR):
            if arm in chosen:
                result = probe_features(train_x, train_y, test_x, test_y, nonlinear=arm == LATENT_ORACLE_NONLINEAR,
                                        seed=seed)
                rows += _rows(result, arm, seed)
    if MEDIAN_BEAT in chosen:
        result = probe_features(cohort_median_beats(cohort, train), train_y, cohort_median_beats(scored, test), test_y)
        rows += _rows(result, MEDIAN_BEAT, seed)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def window_share(table: pd.DataFrame, ceiling_arms: Sequence[str] = (LATENT_ORACLE, MEDIAN_BEAT),
                 baseline_arm: str = "none", task: str = "regression") -> pd.DataFrame:
    """Per arm, seed and target: the share of the window an arm closes, (arm - random) / (ceiling - random).

    ``table`` holds the arms and the reference rows (``compare.COLUMNS``; target ``mean`` included if
    present, e.g. from ``compare.with_mean_r2``). The ceiling of a target is the best mean test R² over
    ``ceiling_arms`` (seeds averaged); the baseline is the mean over the ``baseline_arm``'s seeds.
    Returns columns ``arm, seed, target, r2, baseline, ceiling, window, share``; ``share`` is NaN
    where the window is not positive.
    """
    r2 = table[(table["task"] == task) & (table["metric"] == "r2")]
    if baseline_arm not in set(r2["arm"]):
        raise ValueError(f"no '{baseline_arm}' (random init) rows in the table")
    present = [a for a in ceiling_arms if a in set(r2["arm"])]
    if not present:
        raise ValueError(f"none of the ceiling arms {tuple(ceiling_arms)} is in the table")
    means = r2.groupby(["arm", "target"])["value"].mean()
    ceiling = means.loc[present].groupby("target").max()
    baseline = means.loc[baseline_arm]
    out = r2[~r2["arm"].isin(present)][["arm", "seed", "target", "value"]].rename(columns={"value": "r2"})
    out = out.assign(baseline=out["target"].map(baseline), ceiling=out["target"].map(ceiling))
    out["window"] = out["ceiling"] - out["baseline"]
    positive = out["window"].where(out["window"] > 0)
    out["share"] = (out["r2"] - out["baseline"]) / positive
    return out.reset_index(drop=True)
