"""The ``ptacl`` command: it works, and bad input gets one clear line instead of a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

PTACL = str(REPO / ".venv" / "bin" / "ptacl")


def _ptacl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PTACL, *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_generate_writes_a_cohort_with_a_progress_bar(tmp_path: Path) -> None:
    result = _ptacl("generate", "--n", "6", "--seed", "3", "--out", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert "6/6" in result.stderr  # tqdm's bar, on stderr
    assert len(pd.read_csv(tmp_path / "c" / "manifest.csv")) == 6


@pytest.mark.slow  # two CLI start-ups that import torch: about 10 s
def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    result = _ptacl("evaluate", "--run-dir", str(tmp_path / "nope"), "--manifest", str(tmp_path / "missing.csv"))
    assert result.returncode == 2
    assert "ptacl evaluate: error:" in result.stderr and "missing.csv" in result.stderr
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,split\n1,train\n")
    result = _ptacl("train", "--manifest", str(bad), "--run-dir", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 2 and "missing required column(s)" in result.stderr
    assert "Traceback" not in result.stderr
