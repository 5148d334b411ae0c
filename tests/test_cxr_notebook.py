"""Notebook 07 end to end on tiny parameters: it trains, scores and writes its tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import run_notebook
from ptacl_lib.cxr.fixtures import write_covid_fixture, write_kaggle_fixture


@pytest.mark.slow
def test_notebook_07_runs_and_writes_metrics(tmp_path: Path) -> None:
    run_dir = tmp_path / "cxr"
    executed = run_notebook("07_cxr_report_generation.ipynb", tmp_path / "executed", n_phantoms=48, n_test=12,
                            epochs=1, image_size=32, beam_size=2, device="cpu", use_llm=False, meteor=False,
                            run_dir=str(run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "METEOR", "pointing_game", "pointing_chance_chest",
                "finding_f1"):
        assert key in metrics
    assert 0.0 <= metrics["BLEU-1"] <= 1.0 and metrics["findings_total"] > 0
    for name in ("config.json", "captioner.pt", "metrics.csv", "localisation.csv", "reports.json", "phantoms.png",
                 "training.png"):
        assert (run_dir / name).exists(), name
    reports = json.loads((run_dir / "reports.json").read_text())
    assert reports and all("IMPRESSION:" in r["text"] for r in reports)
    nb = nbformat.read(executed, as_version=4)
    table = next(c for c in nb.cells if "metrics = evaluation.metrics" in c.source)
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # the phantom metrics table
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "real-data section is skipped" in text  # root = "" by default


def _run_real_section(tmp_path: Path, root: Path, dataset: str, real_run: Path) -> Path:
    """Notebook 07 at its smallest settings, with section 6 on the data set folder ``root``."""
    return run_notebook("07_cxr_report_generation.ipynb", tmp_path / "executed", n_phantoms=16, n_test=4,
                        epochs=1, image_size=32, beam_size=2, device="cpu", use_llm=False, meteor=False,
                        run_dir=str(tmp_path / "cxr"), root=str(root), dataset=dataset,
                        real_run_dir=str(real_run), real_epochs=1, real_image_size=32, real_batch_size=4,
                        real_min_word_count=1)


@pytest.mark.slow
def test_notebook_07_real_data_section_on_kaggle_fixture(tmp_path: Path) -> None:
    """Section 6 on a Kaggle-layout Open-I fixture (synthetic images and text, one missing, one truncated image)."""
    root = tmp_path / "openi"
    damaged = write_kaggle_fixture(root, n_studies=12, image_size=32)
    real_run = tmp_path / "real"
    executed = _run_real_section(tmp_path, root, "openi-kaggle", real_run)
    metrics = json.loads((real_run / "metrics.json").read_text())
    assert metrics["n_studies"] >= 1 and "views merged" in metrics["protocol"]
    errors = pd.read_csv(real_run / "errors.csv")
    assert {Path(f) for f in errors["file"]} >= {damaged["missing"], damaged["truncated"]}
    assert (real_run / "word_attention.png").exists()
    nb = nbformat.read(executed, as_version=4)
    table = next(c for c in nb.cells if 'real_metrics["protocol"]' in c.source)
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # the real-data metrics table
    assert not nb.cells[-1].outputs  # no lung boxes in Open-I: the lung-case cell shows nothing


@pytest.mark.slow
def test_notebook_07_shows_real_cases_with_lung_boxes(tmp_path: Path) -> None:
    """Section 6 on a fixture in the COVID-19 collection's layout (16-bit PNG, DICOM, broken image, lung boxes)."""
    root = tmp_path / "covid"
    write_covid_fixture(root, n_patients=10, image_size=32)
    real_run = tmp_path / "real"
    executed = _run_real_section(tmp_path, root, "covid-cxr", real_run)
    metrics = json.loads((real_run / "metrics.json").read_text())
    assert "lung_localisation" in metrics and (real_run / "lung_heatmaps.png").exists()
    nb = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "all_words_lung_area_share" in text
