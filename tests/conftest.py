"""Shared fixtures: a tiny synthetic cohort and a tiny finished study with its model bundle (each built once per
session), and a papermill runner."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest path of a 48-subject synthetic cohort shared by the whole test session."""
    from ptacl_lib.data.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("tiny_cohort")
    return generate_cohort(out, n_subjects=48, seed=123, progress=False)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-seed PTACL study of one epoch on 120 synthetic subjects (enough validation subjects for 90 %
    intervals); its cohort is ``<study>/../cohort``."""
    from ptacl_lib.data.synthetic import generate_cohort
    from ptacl_lib.study import StudyConfig, run_study

    root = tmp_path_factory.mktemp("bundle_study")
    manifest = generate_cohort(root / "cohort", 120, seed=11, progress=False)
    run_study(StudyConfig(manifest=str(manifest), out=str(root / "study"), arms=("ptacl",), seeds=2, epochs=1,
                          batch_size=16, device="cpu", notebooks=False, ceiling=False))
    return root / "study"


@pytest.fixture(scope="session")
def bundle(study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``study``'s model bundle (``ptacl export``, with ONNX encoders)."""
    from ptacl_lib.cli import main

    out = tmp_path_factory.mktemp("bundle") / "ptacl"
    assert main(["export", "--study", str(study), "--out", str(out), "--onnx", "--device", "cpu"]) == 0
    return out


def run_notebook(name: str, out_dir: Path, **parameters: object) -> Path:
    """Execute ``notebooks/<name>`` headlessly with papermill; returns the executed copy's path."""
    from ptacl_lib.notebook_runner import execute_notebook

    return execute_notebook(name, out_dir, **parameters)
