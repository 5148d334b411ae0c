"""Notebook 01 executes headlessly on a tiny cohort and saves its figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import run_notebook

FIGURES = ("01_phenotypes_by_sex.png", "01_phenotype_correlations.png", "01_ecg_12lead.png",
           "01_cine_montage.png", "01_volume_timing.png")


@pytest.mark.slow
def test_notebook_01_executes(tiny_cohort: Path, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    executed = run_notebook("01_data_exploration.ipynb", tmp_path / "nb", manifest=str(tiny_cohort),
                            subject=3, figures_dir=str(figures))
    for name in FIGURES:
        assert (figures / name).stat().st_size > 10_000, name
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures are shown, not only saved
