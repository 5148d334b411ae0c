"""The COVID-19 chest X-ray collection's layout: reader, caption rule, labels, and train/evaluate/caption end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.cxr.covid import (
    SentenceReason,
    caption_rule_counts,
    finding_labels,
    judge_notes,
    radiograph_sentences,
    read_covid_cxr,
    read_lung_boxes,
    sentence_reason,
)
from ptacl_lib.cxr.data import ImageStore, report_target, split_studies
from ptacl_lib.cxr.decode import DecodedCaption
from ptacl_lib.cxr.evaluation import box_mask, lung_localisation
from ptacl_lib.cxr.fixtures import write_covid_fixture
from ptacl_lib.cxr.heatmaps import upsample

REAL_NOTES = ("On January 22, 2020, a 65-year-old man with a history of hypertension was admitted for low-grade "
              "fever. He reported that he had not been exposed to a wet market. Chest radiographs obtained on "
              "admission showed an infiltrate in the upper lobe of the left lung. The partial pressure of oxygen "
              "was 57.2 mm Hg. CT showed bilateral ground-glass opacities. There is patchy consolidation in the "
              "right lower zone. Viral pneumonia was suspected.")


def test_caption_rule_keeps_radiograph_sentences_only() -> None:
    assert radiograph_sentences(REAL_NOTES) == (
        "Chest radiographs obtained on admission showed an infiltrate in the upper lobe of the left lung. "
        "There is patchy consolidation in the right lower zone.")
    assert sentence_reason("A 54-year-old woman presented with fever and bilateral lung crackles.") \
        is SentenceReason.CLINICAL
    assert sentence_reason("HRCT showed ground glass opacities.") is SentenceReason.OTHER_MODALITY
    assert sentence_reason("No pleural effusion.") is SentenceReason.PATTERN and SentenceReason.PATTERN.kept
    assert [j.reason.value for j in judge_notes(REAL_NOTES)] == [
        "dropped_clinical", "dropped_no_radiograph_content", "kept_radiograph", "dropped_clinical",
        "dropped_other_modality", "kept_pattern", "dropped_no_radiograph_content"]


def test_caption_targets_carry_no_headings(tmp_path: Path) -> None:
    notes = ("Presentation: A 50-year-old man with fever. Imaging Notes: Patchy opacities in both lower zones.. "
             "CT findings: Widespread GGO in all lobes. CXR: Normal. Discussion: The chest x-ray features are "
             "non-specific. At 10:30 the film was repeated.")
    judged = judge_notes(notes)
    assert [j.reason for j in judged][:3] == [SentenceReason.CLINICAL, SentenceReason.RADIOGRAPH,
                                              SentenceReason.OTHER_MODALITY]  # the rule reads the heading
    assert radiograph_sentences(notes) == ("Patchy opacities in both lower zones.. Normal. The chest x-ray features "
                                           "are non-specific. At 10:30 the film was repeated.")
    write_covid_fixture(tmp_path, n_patients=4)  # notes say "Chest x-ray showed: <findings>."
    for sample in read_covid_cxr(tmp_path, errors=[]):
        target = report_target(sample)
        assert target and not target.startswith("chest x ray showed") and ":" not in target, target


def test_finding_labels_join_the_column_and_the_notes() -> None:
    assert finding_labels("COVID-19, ARDS", "bilateral opacities") == ("edema", "lung_opacity", "pneumonia")
    assert finding_labels("No Finding", "the lungs are clear") == ("no_finding",)
    assert finding_labels("todo", "") == ()


def test_reader_skips_ct_lists_missing_and_splits_by_patient(tmp_path: Path) -> None:
    paths = write_covid_fixture(tmp_path, n_patients=10)
    errors: list[dict[str, str]] = []
    samples = read_covid_cxr(tmp_path, errors=errors)
    assert [Path(e["file"]).name for e in errors] == ["not-downloaded.jpg"]
    assert "ct-slice.png" not in {s.sample_id for s in samples} and len(samples) == 10 + 5 + 1
    first = samples[0]
    assert first.findings and "CT" not in first.findings and "showed" not in first.findings  # heading cut
    assert "pneumonia" in first.labels and first.subject_id == "1" and first.image_path == paths["png16"]
    splits = split_studies(samples, seed=0).merge(
        pd.DataFrame({"study_id": [s.study_id for s in samples]}), on="study_id")
    assert splits.groupby("subject_id")["split"].nunique().max() == 1  # no patient in two splits
    counts = caption_rule_counts(tmp_path)
    assert counts["xray_rows"] == 17 and counts["sentences"] == 4 * 17 and counts["rows_with_caption"] == 17
    assert counts["sentences_kept"] == counts["sentences_kept_radiograph"] == counts["kept_headings_cut"] == 17
    assert counts["sentences_dropped_other_modality"] == 2 * 17 and counts["sentences_dropped_clinical"] == 17
    assert sum(counts[f"sentences_{reason.value}"] for reason in SentenceReason) == counts["sentences"]
    boxes = read_lung_boxes(tmp_path / "annotations" / "annotations.json")
    assert len(boxes[first.sample_id][2]) == 2


def test_real_shaped_images_decode_to_sensible_grey_levels(tmp_path: Path) -> None:
    paths = write_covid_fixture(tmp_path, n_patients=4, image_size=64)
    boxes = read_lung_boxes(tmp_path / "annotations" / "annotations.json")
    for key in ("png16", "dicom"):
        image = ImageStore(64).load_file(paths[key])
        width, height, lung_boxes = boxes[paths[key].name]
        lungs = box_mask(lung_boxes, width, height, 64)
        centre = np.zeros_like(lungs)
        centre[16:48, 29:35] = True  # the mediastinum, between the lung boxes
        assert not (lungs & centre).any()
        assert image[lungs].mean() + 0.2 < image[centre].mean(), key  # dark lungs, bright mediastinum
        assert np.percentile(image, 95) - np.percentile(image, 5) > 0.6 and (image > 0.98).mean() < 0.3, key


def test_lung_localisation_scores_attention_against_boxes() -> None:
    mask = np.zeros((16, 16), bool)
    mask[2:14, 0:7] = True
    inside = np.zeros((3, 4, 4), np.float32)
    inside[:, 1, 0] = 1.0  # every word looks inside the right-lung box
    decoded = DecodedCaption(("left", "pleural", "effusion"), -1.0, inside, np.ones(3, np.float32))
    out = lung_localisation([decoded], [mask])
    assert out["n_heatmaps"] == 1 and out["pointing_game"] == 1.0
    assert out["lung_area_share"] == pytest.approx(mask.mean())
    heat = upsample(inside.mean(0), (16, 16))
    assert out["attention_in_lungs"] == pytest.approx(float((heat * mask).sum() / heat.sum()), rel=1e-5)
    assert out["attention_in_lungs"] > out["lung_area_share"]
    assert set(out["per_finding"]) == {"Pleural Effusion"}
    assert math.isnan(lung_localisation([decoded], [np.zeros((16, 16), bool)])["pointing_game"])


@pytest.mark.slow
def test_cli_trains_evaluates_and_captions_the_collection_layout(tmp_path: Path) -> None:
    root, run = tmp_path / "covid", tmp_path / "run"
    paths = write_covid_fixture(root, n_patients=14, image_size=64)

    def ptacl(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ptacl_lib.cli", "cxr", *args], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ptacl("train", "--dataset", "covid-cxr", "--root", str(root), "--run-dir", str(run), "--epochs", "4",
          "--image-size", "64", "--batch-size", "8", "--fractions", "0.6", "0.2", "0.2")
    errors = pd.read_csv(run / "errors.csv")
    assert {Path(f).name for f in errors["file"]} == {paths["truncated"].name, paths["missing"].name}
    assert errors["reason"].str.len().min() > 10
    ptacl("evaluate", "--run-dir", str(run), "--no-meteor", "--beam", "2")
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"BLEU-4", "ROUGE-L", "CIDEr-D", "chexpert_micro_f1", "label_micro_f1"} <= metrics.keys()
    lungs = metrics["lung_localisation"]
    assert lungs["n_images"] == metrics["n_studies"] > 0
    assert 0 < lungs["all_words_lung_area_share"] < 1 and 0 <= lungs["all_words_attention_in_lungs"] <= 1
    lines = ptacl("caption", str(paths["dicom"]), str(paths["png16"]), "--run-dir", str(run), "--beam", "2",
                  "--heatmaps", str(tmp_path / "heat")).splitlines()
    records = [json.loads(line) for line in lines]
    assert [Path(r["image"]).name for r in records] == [paths["dicom"].name, paths["png16"].name]
    assert all(r["caption"] for r in records)
    report = ptacl("report", "--image", str(paths["dicom"]), "--run-dir", str(run))
    assert report.strip()
