"""Several arms × several seeds into one tidy table, and summaries with bootstrap confidence intervals.

Every evaluated run directory holds a ``metrics.json`` (written by ``evaluate_run``) with its arm,
its seed and a list of records ``{embedding, task, target, metric, value}``. ``compare`` stacks them
into one DataFrame with the columns ``arm, seed, task, target, metric, value``. Records computed on
the CMR embedding of a PTACL run become the arm ``cmr_probe``: what an ECG embedding could reach if
it held everything the aligned CMR embedding holds (the upper reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..arms import CMR_PROBE_ARM, CMR_PROBE_SOURCE, arm_label, arm_rank, order_arms
from ..runs import read_evaluation

COLUMNS: tuple[str, ...] = ("arm", "seed", "task", "target", "metric", "value")
SUMMARY_COLUMNS: tuple[str, ...] = ("arm", "task", "target", "metric", "n", "mean", "ci_low", "ci_high")


def compare(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Read ``metrics.json`` of every run into one tidy DataFrame (``COLUMNS``)."""
    rows: list[dict[str, object]] = []
    for run_dir in runs:
        payload = read_evaluation(run_dir)
        for rec in payload["records"]:
            if rec["embedding"] == "cmr":
                if payload["arm"] != CMR_PROBE_SOURCE:
                    continue
                arm = CMR_PROBE_ARM
            else:
                arm = payload["arm"]
            rows.append({"arm": arm, "seed": int(payload["seed"]), **{k: rec[k] for k in COLUMNS[2:]}})
    if not rows:
        raise ValueError("no runs to compare")
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    duplicated = df.duplicated(subset=list(COLUMNS[:5]))
    if duplicated.any():
        first = df[duplicated].iloc[0]
        raise ValueError(f"two runs share arm={first.arm!r} seed={first.seed}: each (arm, seed) must be one run")
    return _order_arms(df).reset_index(drop=True)


def with_mean_r2(table: pd.DataFrame) -> pd.DataFrame:
    """Add, per arm and seed, the mean test R² over the nine targets (target ``mean``)."""
    r2 = table[(table["task"] == "regression") & (table["metric"] == "r2")]
    mean = r2.groupby(["arm", "seed"], as_index=False)["value"].mean()
    mean = mean.assign(task="regression", target="mean", metric="r2")[list(table.columns)]
    return pd.concat([table, mean], ignore_index=True)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (NaNs dropped).

    Fewer than two values have no interval (NaN, NaN): one seed says nothing about seed noise.
    Identical values give a zero-width interval.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if len(data) < 2:
        return float("nan"), float("nan")
    if np.ptp(data) == 0:
        return float(data[0]), float(data[0])
    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarise(df: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean over seeds with a bootstrap CI per arm / task / target / metric (``SUMMARY_COLUMNS``)."""
    rows = []
    for (arm, task, target, metric), group in df.groupby(["arm", "task", "target", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(values, confidence, n_resamples, seed)
        rows.append({"arm": arm, "task": task, "target": target, "metric": metric,
                     "n": int(np.isfinite(values).sum()), "mean": float(np.nanmean(values)) if np.isfinite(values).any()
                     else float("nan"), "ci_low": low, "ci_high": high})
    return _order_arms(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))).reset_index(drop=True)


def format_table(summary: pd.DataFrame, task: str, metric: str | Sequence[str], digits: int = 3) -> pd.DataFrame:
    """A wide table for reading: rows = arms, columns = targets (or metrics), cells ``mean [low, high]``
    (just ``mean`` for a row without an interval, such as a seedless reference row)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    sub = summary[(summary["task"] == task) & summary["metric"].isin(metrics)].copy()
    if sub.empty:
        raise ValueError(f"no summary rows for task={task!r} metric={metrics}")
    sub["cell"] = [f"{m:.{digits}f}" + ("" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.{digits}f}, {hi:.{digits}f}]")
                   for m, lo, hi in zip(sub["mean"], sub["ci_low"], sub["ci_high"])]
    column = "target" if len(metrics) == 1 else "metric"
    if len(metrics) > 1 and sub["target"].nunique() > 1:
        raise ValueError("several metrics need a single target per task; filter the summary first")
    table = sub.pivot(index="arm", columns=column, values="cell")
    columns = [c for c in (metrics if column == "metric" else sub[column].drop_duplicates())]
    table = table.loc[order_arms(table.index), columns]
    table.index = [arm_label(a) for a in table.index]
    table.index.name = "arm"
    return table


def _order_arms(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("arm", key=lambda s: s.map(arm_rank), kind="stable")
