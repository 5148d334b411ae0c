"""``make lab``'s kernel registration: the kernel it installs runs this project's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_make_kernel_registers_the_venv_python(tmp_path: Path) -> None:
    venv = Path(sys.prefix)  # the environment running the tests: .venv under make test
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter")}
    # -o: take the install stamp as up to date, so the test never reinstalls the environment it runs in.
    command = ["make", "-o", str(venv / ".installed"), "kernel", f"VENV={venv}", "KERNEL_NAME=ptacl-test"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    spec = json.loads((tmp_path / "jupyter" / "kernels" / "ptacl-test" / "kernel.json").read_text())
    assert spec["language"] == "python" and spec["display_name"] == f"PTACL ({venv})"
    python = Path(spec["argv"][0])
    assert python.resolve() == (venv / "bin" / "python").resolve()
    assert "ipykernel_launcher" in spec["argv"] and "{connection_file}" in spec["argv"]
    # The registered interpreter really is this environment: it imports the project.
    probe = subprocess.run([str(python), "-c", "import ptacl_lib, sys; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).resolve() == venv.resolve()
