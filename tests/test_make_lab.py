"""``make lab``'s kernel: it runs this project's environment and starts in the repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_make_kernel_registers_the_venv_python_starting_in_the_repo(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.manager import start_new_kernel

    venv = Path(sys.prefix)  # the environment running the tests: .venv under make test
    data_dir = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data_dir)}
    # -o: take the install stamp as up to date, so the test never reinstalls the environment it runs in.
    command = ["make", "-o", str(venv / ".installed"), "kernel", f"VENV={venv}", "KERNEL_NAME=ptacl-test"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    spec = json.loads((data_dir / "kernels" / "ptacl-test" / "kernel.json").read_text())
    assert spec["language"] == "python" and spec["display_name"] == f"PTACL ({venv})"
    assert Path(spec["argv"][0]).resolve() == (venv / "bin" / "python").resolve()

    # Started the way JupyterLab starts it (in the notebook's folder), the kernel works in the repo root
    # and imports the project.
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data_dir))
    manager, client = start_new_kernel(kernel_name="ptacl-test", cwd=str(REPO / "notebooks"),
                                       env={**os.environ, "PYTHONPATH": str(REPO)})
    printed: list[str] = []
    try:
        reply = client.execute_interactive(
            "import os, sys, ptacl_lib; print(os.getcwd()); print(sys.prefix)", timeout=60,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    cwd, prefix = "".join(printed).split()
    assert Path(cwd).resolve() == REPO.resolve() and Path(prefix).resolve() == venv.resolve()
