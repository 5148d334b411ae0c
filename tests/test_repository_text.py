"""The repository speaks of itself only: dates, commits and its own documents, never of the work sessions
or issue numbers that made it, which a reader cannot look up."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

#: Words about the making of the repository (the pattern this test keeps out of every tracked text file).
MAKING = r"\bsessions? [0-9]|session-[0-9]|(this|next|that) session|\bissues? [0-9]|the issue('s| table)"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_no_tracked_text_talks_about_sessions_or_issue_numbers() -> None:
    found = subprocess.run(["git", "grep", "-nIiE", MAKING, "--", ".", ":!tests/test_repository_text.py"],
                           cwd=REPO, capture_output=True, text=True)
    assert found.returncode == 1, f"tracked files talk about their own making:\n{found.stdout}{found.stderr}"


def test_readme_command_blocks_can_be_copied_as_they_stand() -> None:
    """Every ```bash block parses, and no line continuation carries a comment (``\\ # …`` ends the command)."""
    import re

    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 4
    for block in blocks:
        assert not re.search(r"\\[ \t]+\S", block), f"text after a line-continuation backslash:\n{block}"
        parsed = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert parsed.returncode == 0, f"{parsed.stderr}\n{block}"
