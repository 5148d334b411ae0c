"""Execute the ordered notebooks headlessly with papermill (used by the CLI, the demo and the tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def list_notebooks() -> list[str]:
    """The ordered notebooks, ``01_…`` first."""
    return sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def find_notebook(key: str) -> str:
    """Resolve ``"01"``, ``"01_data_exploration"`` or a full file name to a notebook file name."""
    hits = [n for n in list_notebooks() if n == key or n.startswith(key)]
    if len(hits) != 1:
        raise ValueError(f"notebook {key!r} matches {hits or 'nothing'} in {NOTEBOOKS_DIR}")
    return hits[0]


def execute_notebook(name: str, out_dir: str | Path, progress: bool = False, **parameters: Any) -> Path:
    """Run ``notebooks/<name>`` with ``parameters`` injected; the executed copy goes to ``out_dir``.

    The kernel runs in the repository root, so relative paths among the parameters are first taken from
    the caller's folder (``paths.caller_paths``): a study or ``run-notebooks`` started anywhere hands its
    notebooks paths that lead where the caller meant."""
    import papermill as pm

    from .paths import caller_paths

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / name
    pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(output), parameters=caller_paths(parameters),
                        kernel_name="python3", cwd=str(NOTEBOOKS_DIR.parent), progress_bar=progress)
    return output


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one notebook: where its executed copy is, and the error if it failed."""

    name: str
    output: Path
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _run_one(name: str, out_dir: Path, parameters: dict[str, Any], progress: bool) -> NotebookRun:
    """One notebook, its failure caught and returned (see ``execute_notebooks``)."""
    print(f"[notebooks] {name}", flush=True)
    try:
        return NotebookRun(name, execute_notebook(name, out_dir, progress=progress, **parameters))
    except Exception as err:  # papermill's PapermillExecutionError, a kernel death, a bad parameter
        reason = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
        print(f"[notebooks] {name} FAILED: {reason}", flush=True)
        return NotebookRun(name, out_dir / name, reason)


def execute_notebooks(names: Sequence[str], out_dir: str | Path, common: Mapping[str, Any] | None = None,
                      jobs: int = 1) -> list[NotebookRun]:
    """Run every notebook with the parameters ``common``, even when one fails; results in ``names``' order.

    A failed notebook's executed copy (with the failing cell's traceback) is still written, and its
    error is returned, not raised: the caller decides what a failure means. The notebooks read a study
    and write their own figures, never each other's, so ``jobs > 1`` runs that many kernels side by side,
    each started with ``OMP_NUM_THREADS`` = its share of the cores (unless the caller set it), because
    torch's spinning threads slow down badly on oversubscribed cores (``runtime.configure_threads``).
    The exception is notebook 02 with ``train=True``, which writes runs the others read: run it alone.
    """
    out = Path(out_dir)
    params = dict(common or {})
    if jobs <= 1 or len(names) <= 1:
        return [_run_one(name, out, params, progress=True) for name in names]
    from concurrent.futures import ThreadPoolExecutor

    from .runtime import cpu_share

    share = str(cpu_share(jobs))
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = saved or share  # kernels inherit the environment they start in
    try:
        with ThreadPoolExecutor(jobs) as pool:  # the threads only wait on their kernels
            return list(pool.map(lambda name: _run_one(name, out, params, progress=False), names))
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
