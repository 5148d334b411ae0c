"""Register this environment as a Jupyter kernel that starts in the repository root (``make lab``).

JupyterLab starts a kernel in the notebook's own folder, but the notebooks' default paths
(``runs/demo/...``) are relative to the repository root, where ``notebook_runner`` runs them headless.
The kernel registered here changes into ``workdir`` at start-up, so a notebook opened in JupyterLab
finds the same files as its papermill run. Torch-free.

    python -m ptacl_lib.jupyter_kernel --name ptacl --display-name "PTACL (.venv)" --workdir .
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register_kernel(name: str, display_name: str, workdir: str | Path, prefix: str | None = None) -> Path:
    """Install a kernel spec for this interpreter (for the current user, or under ``prefix``); returns its folder.

    The spec runs ``sys.executable`` and, at start-up, ``os.chdir(workdir)`` (``workdir`` made absolute).
    ``JUPYTER_DATA_DIR`` moves the per-user location, as for ``jupyter kernelspec``.
    """
    from ipykernel.kernelspec import install

    root = Path(workdir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"kernel working directory not found: {root}")
    folder = Path(install(user=prefix is None, prefix=prefix, kernel_name=name, display_name=display_name))
    spec_path = folder / "kernel.json"
    spec = json.loads(spec_path.read_text())
    spec["argv"].append(f"--IPKernelApp.exec_lines=import os; os.chdir({str(root)!r})")
    spec_path.write_text(json.dumps(spec, indent=1))
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="ptacl", help="kernel name (one per user: the last registration wins)")
    parser.add_argument("--display-name", default="PTACL", help="the name JupyterLab shows")
    parser.add_argument("--workdir", default=".", help="the folder the kernel starts in (the repository root)")
    parser.add_argument("--prefix", default=None, help="install under PREFIX/share/jupyter instead of the user's")
    args = parser.parse_args(argv)
    folder = register_kernel(args.name, args.display_name, args.workdir, args.prefix)
    print(f"registered kernel {args.name!r} in {folder}")


if __name__ == "__main__":
    main()
