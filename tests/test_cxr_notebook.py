"""Notebook 07 end to end on tiny parameters: it trains, scores and writes its tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from conftest import run_notebook


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
    last = nb.cells[-1]
    assert last.cell_type == "code" and any("text/html" in o.get("data", {}) for o in last.outputs)  # the table
