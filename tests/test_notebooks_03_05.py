"""Notebooks 03-05 execute under papermill on tiny trained runs (2 arms x 2 seeds, 1 epoch each)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from conftest import run_notebook

pytestmark = pytest.mark.slow

ARMS = ("global", "ptacl")
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def evaluated_runs(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/arms/<arm>/seed<k>/``: tiny runs, trained one epoch and evaluated (metrics.json, embeddings.npz)."""
    from ptacl_lib.evaluate import evaluate_run
    from ptacl_lib.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("eval_runs")
    for arm in ARMS:
        for seed in SEEDS:
            run = fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(root / "arms" / arm / f"seed{seed}"),
                                  objective=arm, epochs=1, batch_size=16, seed=seed, progress=False))
            evaluate_run(run, tiny_cohort, device="cpu")
    return root


def _outputs(path: Path) -> str:
    book = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_evaluated_runs_hold_metrics_and_embeddings(evaluated_runs: Path) -> None:
    payload = json.loads((evaluated_runs / "arms" / "ptacl" / "seed0" / "metrics.json").read_text())
    assert payload["arm"] == "ptacl" and payload["seed"] == 0
    assert {r["embedding"] for r in payload["records"]} == {"ecg", "cmr"}  # PTACL runs carry the CMR reference
    glob = json.loads((evaluated_runs / "arms" / "global" / "seed1" / "metrics.json").read_text())
    assert {r["embedding"] for r in glob["records"]} == {"ecg"}
    assert (evaluated_runs / "arms" / "global" / "seed1" / "embeddings.npz").exists()


def test_notebook_03_umap(evaluated_runs: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    out = run_notebook("03_embeddings_umap.ipynb", tmp_path, run_root=str(evaluated_runs),
                       manifest=str(tiny_cohort), n_neighbors=5)
    assert "4 runs" in _outputs(out)
    assert (evaluated_runs / "figures" / "03_umap_by_arm.png").stat().st_size > 10_000


def test_notebook_04_retrieval(evaluated_runs: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    out = run_notebook("04_retrieval_case_studies.ipynb", tmp_path, run_root=str(evaluated_runs),
                       manifest=str(tiny_cohort), k=3, n_cards=1, n_disagreements=1)
    text = _outputs(out)
    assert "precision@5" in text and "recall@1" in text
    figures = evaluated_runs / "figures"
    assert (figures / "04_card_ptacl_0.png").exists()
    assert any(figures.glob("04_disagreement_0_*.png"))


def test_notebook_05_regression(evaluated_runs: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    out = run_notebook("05_regression.ipynb", tmp_path, run_root=str(evaluated_runs), manifest=str(tiny_cohort))
    text = _outputs(out)
    assert "CMR probe (upper ref.)" in text and "mean_difference" in text
    for name in ("05_information_window.png", "05_r2_by_target.png", "05_predicted_vs_true.png",
                 "05_bland_altman_lvef.png"):
        assert (evaluated_runs / "figures" / name).exists(), name


def test_notebook_runs_from_its_own_folder_with_the_default_kernel(evaluated_runs: Path, tiny_cohort: Path,
                                                                   tmp_path: Path) -> None:
    """JupyterLab starts the notebooks' default ``python3`` kernel in ``notebooks/``; paths relative to the
    repository root (as every default is) must still resolve there."""
    import os

    import papermill as pm

    from ptacl_lib.notebook_runner import NOTEBOOKS_DIR
    from ptacl_lib.paths import REPO_ROOT

    run_root = os.path.relpath(evaluated_runs, REPO_ROOT)  # from notebooks/ this path leads elsewhere
    assert not (NOTEBOOKS_DIR / run_root).exists()
    pm.execute_notebook(str(NOTEBOOKS_DIR / "05_regression.ipynb"), str(tmp_path / "05.ipynb"), kernel_name="python3",
                        cwd=str(NOTEBOOKS_DIR), progress_bar=False,
                        parameters={"run_root": run_root, "manifest": os.path.relpath(tiny_cohort, REPO_ROOT)})
    assert "CMR probe (upper ref.)" in _outputs(tmp_path / "05.ipynb")
