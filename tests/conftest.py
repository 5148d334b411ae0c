"""Shared fixtures: a tiny synthetic cohort (built once per session) and a papermill runner."""

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


def run_notebook(name: str, out_dir: Path, **parameters: object) -> Path:
    """Execute ``notebooks/<name>`` headlessly with papermill; returns the executed copy's path."""
    from ptacl_lib.notebook_runner import execute_notebook

    return execute_notebook(name, out_dir, **parameters)
