"""Stacking runs into a tidy table and summarising over seeds with bootstrap CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.evaluate.compare import COLUMNS, bootstrap_ci, compare, format_table, summarise
from ptacl_lib.runs import discover_runs


def _write_run(root: Path, arm: str, seed: int, r2_ecg: float, r2_cmr: float) -> Path:
    run = root / "arms" / arm / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"objective": arm, "seed": seed}))
    records = [{"embedding": "ecg", "task": "regression", "target": "lvef", "metric": "r2", "value": r2_ecg},
               {"embedding": "cmr", "task": "regression", "target": "lvef", "metric": "r2", "value": r2_cmr}]
    (run / "metrics.json").write_text(json.dumps({"arm": arm, "seed": seed, "records": records}))
    return run


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    for seed, (g, p) in enumerate([(0.30, 0.40), (0.35, 0.50), (0.20, 0.45)]):
        _write_run(tmp_path, "global", seed, g, 0.9)
        _write_run(tmp_path, "ptacl", seed, p, 0.8 + seed / 100)
    return discover_runs(tmp_path)


def test_compare_is_tidy_and_maps_the_cmr_probe(runs: list[Path]) -> None:
    df = compare(runs)
    assert tuple(df.columns) == COLUMNS
    assert df["arm"].tolist()[:3] == ["global"] * 3  # reporting order: global before ptacl before cmr_probe
    assert sorted(df["arm"].unique()) == ["cmr_probe", "global", "ptacl"]
    # only PTACL runs provide the CMR reference; the global runs' CMR records are not reported
    np.testing.assert_allclose(df[df["arm"] == "cmr_probe"]["value"], [0.80, 0.81, 0.82])
    assert len(df) == 9


def test_compare_refuses_duplicate_arm_seed(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", "ptacl", 0, 0.1, 0.2)
    b = _write_run(tmp_path / "b", "ptacl", 0, 0.1, 0.2)
    with pytest.raises(ValueError, match="arm='ptacl' seed=0"):
        compare([a, b])


def test_compare_names_the_unevaluated_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.json missing"):
        compare([tmp_path])


def test_summary_mean_and_ci_cover_the_mean(runs: list[Path]) -> None:
    summary = summarise(compare(runs))
    row = summary[summary["arm"] == "ptacl"].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.45)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert 0.40 <= row["ci_low"] < row["ci_high"] <= 0.50  # a bootstrap of the mean stays in the data's range


def test_bootstrap_ci_covers_the_mean_on_random_samples() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 20):
        for _ in range(20):
            data = rng.normal(size=n) * rng.uniform(0.1, 10)
            low, high = bootstrap_ci(data)
            assert low <= data.mean() <= high
    assert np.isnan(bootstrap_ci([0.7])).all()  # one seed: no interval
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_ci_narrows_with_more_seeds() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=4), rng.normal(size=400)
    assert np.diff(bootstrap_ci(large)) < np.diff(bootstrap_ci(small))


def test_format_table_cells(runs: list[Path]) -> None:
    table = format_table(summarise(compare(runs)), task="regression", metric="r2", digits=2)
    assert list(table.index) == ["global-only (CLIP)", "PTACL", "CMR probe (upper ref.)"]
    assert table.loc["PTACL", "lvef"].startswith("0.45 [")
    assert isinstance(table, pd.DataFrame)
    summary = summarise(compare(runs))
    summary.loc[summary["arm"] == "ptacl", ["ci_low", "ci_high"]] = np.nan  # a row with nothing to resample
    assert format_table(summary, task="regression", metric="r2", digits=2).loc["PTACL", "lvef"] == "0.45"
