"""Where the notebooks' relative paths resolve: the repository root, wherever their kernel started.

The notebooks' defaults (``runs/demo``, ...) are relative to the repository root, where ``ptacl`` and
papermill run them. JupyterLab starts a kernel in the notebook's own folder (``notebooks/``), where those
paths do not exist. ``project_path`` maps such a path back onto the repository root. Torch-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

#: The repository this package was loaded from (a source checkout or an editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]


def project_path(path: str | Path | None, cwd: str | Path | None = None) -> str | None:
    """``path`` resolved for a notebook, as a string (``None`` and ``""`` pass through).

    An absolute path, or a relative one that exists from the current folder, is returned as given. A
    relative path that does not exist there, asked from a folder inside this repository other than its
    root (a kernel started in ``notebooks/``), is taken relative to the repository root instead, whether
    or not it exists yet (a notebook may be about to create it). Anywhere else it is left as it is.
    """
    if path is None or str(path) == "":
        return path if path is None else ""
    given = Path(path)
    here = Path(cwd or Path.cwd()).resolve()
    if given.is_absolute() or (here / given).exists() or here == REPO_ROOT or REPO_ROOT not in here.parents:
        return str(path)
    return str(REPO_ROOT / given)


#: A notebook parameter holds a path when its name is one of these words or ends in ``_`` and one of them
#: (``manifest``, ``run_root``, ``figures_dir``, ``compare_run_dir``, ``bundle``, ...).
PATH_PARAMETER = re.compile(r"(^|_)(manifest|root|dir|path|bundle|file)$")


def caller_paths(parameters: Mapping[str, Any], cwd: str | Path | None = None) -> dict[str, Any]:
    """``parameters`` for a notebook run from another folder (papermill runs kernels in the repository root):
    every relative path among them (``PATH_PARAMETER``) that exists from the caller's folder ``cwd``, or whose
    parent folder does (an output about to be made), becomes absolute there. Anything else passes as given,
    for the notebook's ``project_path`` to take from the repository root."""
    here = Path(cwd or Path.cwd()).resolve()
    resolved = dict(parameters)
    for name, value in parameters.items():
        if not (PATH_PARAMETER.search(name) and isinstance(value, str) and value) or Path(value).is_absolute():
            continue
        candidate = here / value
        if candidate.exists() or candidate.parent.exists():
            resolved[name] = str(candidate)
    return resolved
