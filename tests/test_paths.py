"""Notebook paths resolve against the repository root wherever the kernel starts."""

from __future__ import annotations

from pathlib import Path

from ptacl_lib.paths import REPO_ROOT, project_path


def test_a_relative_default_resolves_from_the_notebooks_folder() -> None:
    assert project_path("runs/demo", cwd=REPO_ROOT / "notebooks") == str(REPO_ROOT / "runs" / "demo")


def test_paths_that_already_resolve_are_kept(tmp_path: Path) -> None:
    assert project_path("runs/demo", cwd=REPO_ROOT) == "runs/demo"  # the root: the headless runs' folder
    assert project_path("runs/demo", cwd=tmp_path) == "runs/demo"  # outside the repository: the user's cwd
    assert project_path(str(tmp_path)) == str(tmp_path)  # absolute
    assert project_path("05_regression.ipynb", cwd=REPO_ROOT / "notebooks") == "05_regression.ipynb"  # exists here
    assert project_path(None) is None and project_path("") == ""


def test_paths_saved_by_a_study_resolve_from_the_folder_it_ran_in(tmp_path: Path) -> None:
    from ptacl_lib.study import StudyConfig, saved_path

    saved = StudyConfig(manifest="runs/demo/cohort/manifest.csv", out="runs/demo")
    root = tmp_path / "elsewhere" / "runs" / "demo"
    assert saved_path(root, saved, saved.manifest) == tmp_path / "elsewhere" / "runs/demo/cohort/manifest.csv"
    assert saved_path(root, saved, str(tmp_path / "m.csv")) == tmp_path / "m.csv"
    moved = StudyConfig(manifest="cohort/manifest.csv", out="/old/place")
    assert saved_path(tmp_path, moved, "cohort/manifest.csv") == Path("cohort/manifest.csv")  # not ours to guess


def test_notebook_paths_are_taken_from_the_callers_folder_first(tmp_path: Path) -> None:
    """A study or run-notebooks started anywhere hands its notebooks paths that lead where the caller meant."""
    from ptacl_lib.paths import caller_paths

    (tmp_path / "study").mkdir()
    given = {"run_root": "study", "manifest": "ukb/manifest.csv", "figures_dir": "figs", "compare_run_dir": "",
             "seed": 3, "lead": "II", "subjects": ["a", "b"], "root": str(tmp_path)}
    resolved = caller_paths(given, cwd=tmp_path)
    assert resolved["run_root"] == str(tmp_path / "study")  # exists from the caller's folder
    assert resolved["figures_dir"] == str(tmp_path / "figs")  # an output about to be made there
    assert resolved["manifest"] == "ukb/manifest.csv"  # neither it nor its folder is there: left to project_path
    assert {k: resolved[k] for k in ("compare_run_dir", "seed", "lead", "subjects", "root")} == \
        {k: given[k] for k in ("compare_run_dir", "seed", "lead", "subjects", "root")}  # not paths, empty, absolute
