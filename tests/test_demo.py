"""``make demo DEMO_FAST=1`` runs the whole story end to end and writes a report with real numbers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from ptacl_lib.arms import CMR_PROBE_ARM, OBJECTIVES


@pytest.mark.slow
def test_make_demo_fast(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(["make", "demo", "DEMO_FAST=1", f"DEMO_OUT={out}"], cwd=REPO,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (out / "report.md").read_text()
    for heading in ("## Data", "Regression from the frozen ECG embedding", "Retrieval of patients", "Paired contrasts",
                    "What the local loss visibly learns"):
        assert heading in report
    assert "PTACL − global-only (CLIP), mean test R²" in report
    table = pd.read_csv(out / "comparison.csv")
    assert set(table["arm"]) == {*OBJECTIVES, CMR_PROBE_ARM}  # five trained/initialised arms plus the CMR reference
    assert set(table["seed"]) == {0, 1}
    r2 = table[(table["task"] == "regression") & (table["metric"] == "r2") & (table["target"] != "mean")]
    assert r2.groupby(["arm", "seed"]).size().eq(9).all()
    paired = pd.read_csv(out / "paired.csv")
    assert {("ptacl", "global"), ("ptacl", "none")} <= set(zip(paired["arm"], paired["reference"]))
    assert (paired["ci_low"] <= paired["mean_difference"] + 1e-12).all() and (paired["mdd"] > 0).all()
    summary = pd.read_csv(out / "summary.csv").dropna(subset=["ci_low", "ci_high"])
    assert len(summary) > 100
    assert (summary["ci_low"] <= summary["mean"] + 1e-12).all()
    assert (summary["mean"] <= summary["ci_high"] + 1e-12).all()
    for name in ("01_data_exploration", "02_pretraining", "03_embeddings_umap", "04_retrieval_case_studies",
                 "05_regression", "06_alignment_inspector"):
        assert (out / "notebooks" / f"{name}.ipynb").exists()
    assert (out / "figures" / "03_umap_by_arm.png").exists()
    assert "![05_information_window.png](figures/05_information_window.png)" in report
    # the held-out test cohort is the test set of every number, and the report plans power from it
    assert "**Test set:** the held-out test cohort" in report
    assert "## Power: what would resolve a smaller difference" in report and "From its two parts" in report
    assert {"se_seed", "se_subject"} <= set(paired.columns) and (paired["se_subject"] > 0).all()
    held = pd.read_csv(out / "test_cohort" / "manifest.csv")
    assert len(held) == 40 and held["subject_id"].str.startswith("HOT").all()
    assert (paired["n_subjects"] > 30).all() and (paired["n_subjects"] <= 40).all()
    # calibrated intervals in the report, and the PTACL bundle applied to held-out ECG files
    assert "## Calibrated prediction intervals" in report and (out / "calibration.csv").exists()
    assert (out / "bundle" / "bundle.json").exists() and (out / "bundle" / "README.md").exists()
    predictions = pd.read_csv(out / "heldout_predictions.csv")
    assert len(predictions) == len(list((out / "heldout_ecgs").glob("*.xml"))) == 20
    assert (predictions["status"] == "ok").all() and predictions["lvef"].between(0, 100).all()
    assert "## The PTACL bundle applied to held-out ECG files" in report and "ECGs/s end to end" in report
    assert (out / "notebooks" / "08_apply_to_new_ecgs.ipynb").exists()
    # each preprocessing notice at most once, in plain words, and no repeated warning under the progress bar
    printed = result.stdout + result.stderr
    assert "PreprocessingNotice" not in printed and "were skipped in preprocessing" not in printed
    assert printed.count("preprocessing skipped") <= 2  # once per cohort (study and held-out)

    # the planner's check: more seeds of the contrast's two arms, predicted from this pilot, then measured
    check = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "benchmarks" / "power_check.py"),
                            "--pilot", str(out), "--out", str(tmp_path / "check"), "--seeds", "3", "--jobs", "1"],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "3 seeds" in check.stdout and "predicted from the pilot" in check.stdout and "measured" in check.stdout
    assert (tmp_path / "check" / "arms" / "ptacl" / "seed2" / "metrics.json").exists()
