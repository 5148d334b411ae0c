"""The repository speaks of itself only: dates, commits and its own documents, never of the work sessions
or issue numbers that made it, which a reader cannot look up."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

#: Words about the making of the repository (the pattern this test keeps out of every tracked text file).
MAKING = r"\bsessions? [0-9]|session-[0-9]|(this|next|that) session|\bissues? [0-9]"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_no_tracked_text_talks_about_sessions_or_issue_numbers() -> None:
    found = subprocess.run(["git", "grep", "-nIiE", MAKING, "--", ".", ":!tests/test_repository_text.py"],
                           cwd=REPO, capture_output=True, text=True)
    assert found.returncode == 1, f"tracked files talk about their own making:\n{found.stdout}{found.stderr}"
