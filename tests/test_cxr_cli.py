"""``ptacl cxr`` end to end on a Kaggle-layout Open-I fixture with a missing and a truncated image.

The fixture (``cxr.fixtures.write_kaggle_fixture``) uses Kaggle's file names and CSV columns with synthetic
images and text. METEOR's no-Java branch is simulated, so the tests never need Java.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ptacl_lib.cli import main
from ptacl_lib.cxr import metrics as cxr_metrics
from ptacl_lib.cxr.fixtures import write_kaggle_fixture
from ptacl_lib.cxr.metrics import CAPTION_METRICS

TINY = ["--epochs", "2", "--image-size", "32", "--batch-size", "4", "--min-word-count", "1"]


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cxr_metrics.shutil, "which", lambda name: None)


@pytest.mark.slow
def test_train_then_evaluate_on_kaggle_fixture(tmp_path: Path, no_java: None, capsys: pytest.CaptureFixture) -> None:
    damaged = write_kaggle_fixture(tmp_path / "openi", n_studies=14, image_size=32)
    run = tmp_path / "run"
    assert main(["cxr", "train", "--dataset", "openi-kaggle", "--root", str(tmp_path / "openi"), "--run-dir", str(run),
                 "--fractions", "0.6", "0.2", "0.2", *TINY]) == 0
    assert "2 images skipped" in capsys.readouterr().out
    for name in ("config.json", "splits.csv", "vocab.json", "last.pt", "best.pt", "history.csv", "errors.csv"):
        assert (run / name).exists(), name
    errors = pd.read_csv(run / "errors.csv")
    assert {Path(f) for f in errors["file"]} == {damaged["missing"], damaged["truncated"]}
    assert "truncated" in errors.loc[errors["file"] == str(damaged["truncated"]), "reason"].item()
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    assert splits["study_id"].is_unique and set(splits["split"]) == {"train", "val", "test"}
    assert len(pd.read_csv(run / "history.csv")) == 2

    assert main(["cxr", "evaluate", "--run-dir", str(run), "--split", "test", "--beam", "2"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (*CAPTION_METRICS, "finding_f1", "chexpert_micro_f1", "chexpert_macro_f1", "protocol"):
        assert key in metrics, key
    assert math.isnan(metrics["METEOR"]) and "Java" in metrics["METEOR_note"]
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "chexpert_micro_f1"))
    per_study = pd.read_csv(run / "per_study.csv", dtype={"study_id": str})
    test_studies = set(splits.loc[splits["split"] == "test", "study_id"])
    assert set(per_study["study_id"]) <= test_studies and metrics["n_studies"] == len(per_study)
    assert per_study["study_id"].is_unique  # views merged: one row per study
    assert metrics["n_images"] >= metrics["n_studies"]
    stages = set(pd.read_csv(run / "errors.csv")["stage"])
    assert "train" in stages

    # resume: two more epochs on the stored splits and vocabulary
    before = (run / "splits.csv").read_text()
    assert main(["cxr", "train", "--dataset", "openi-kaggle", "--root", str(tmp_path / "openi"), "--run-dir", str(run),
                 "--epochs", "3", "--resume"]) == 0
    assert (run / "splits.csv").read_text() == before
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2, 3]

    image = next((tmp_path / "openi" / "images" / "images_normalized").glob("5_*-1001.dcm.png"))
    capsys.readouterr()
    assert main(["cxr", "caption", str(image), "--run-dir", str(run), "--heatmaps", str(tmp_path / "hm")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["image"] == str(image) and isinstance(record["caption"], str)
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({"age": 61, "sex": "female", "view": "PA"}))
    assert main(["cxr", "report", "--image", str(image), "--run-dir", str(run), "--patient", str(patient),
                 "--out", str(tmp_path / "report.txt")]) == 0
    text = (tmp_path / "report.txt").read_text()
    assert "PATIENT: 61-year-old female." in text and "FINDINGS:" in text and "IMPRESSION:" in text


def test_cxr_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cxr", "train", "--dataset", "openi-kaggle", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["cxr", "train", "--dataset", "openi-kaggle", "--root", str(tmp_path / "none"),
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "root folder not found" in capsys.readouterr().err
    assert main(["cxr", "evaluate", "--run-dir", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["cxr", "report", "--caption", "small left pleural effusion ."]) == 0
    assert "1. Left pleural effusion." in capsys.readouterr().out
    assert main(["cxr", "report"]) == 2


def test_caption_metrics_without_java(no_java: None) -> None:
    scores = cxr_metrics.caption_metrics(["small left effusion ."], ["small left pleural effusion ."])
    assert math.isnan(scores["METEOR"]) and scores["BLEU-1"] > 0.5
    with pytest.raises(RuntimeError, match="Java"):
        cxr_metrics.caption_metrics(["a ."], ["a ."], meteor=True)


def test_backbone_encoder_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no weights on disk
    args = ["cxr", "train", "--dataset", "phantoms", "--n-phantoms", "6", "--encoder", "resnet18", "--epochs", "1",
            "--image-size", "32", "--batch-size", "3", "--min-word-count", "1", "--fractions", "0.5", "0.0", "0.5"]
    assert main([*args, "--run-dir", str(tmp_path / "a")]) == 2
    assert "resnet18-f37072fd.pth" in capsys.readouterr().err
    assert main([*args, "--run-dir", str(tmp_path / "b"), "--encoder-weights", "none"]) == 0
    from ptacl_lib.cxr.train import load_captioner

    assert load_captioner(tmp_path / "b" / "best.pt").model.config.encoder == "resnet18"
