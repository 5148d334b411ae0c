"""The thread policy (OMP_NUM_THREADS wins, then an explicit count, then the per-node default) and checkpoints that
load weights only: old RNG layouts still restore, crafted pickles are refused before they run."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from crafted_pickles import write_payload

from conftest import REPO
from ptacl_lib import runtime
from ptacl_lib.runtime import (
    UnsafeCheckpointError,
    capture_rng_state,
    configure_threads,
    default_threads,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without OMP_NUM_THREADS / LOCAL_WORLD_SIZE and leaves torch's count as it was."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_threads_are_set_when_the_environment_is_silent() -> None:
    assert configure_threads(3) == 3 and torch.get_num_threads() == 3


def test_omp_num_threads_wins_over_an_explicit_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.warns(UserWarning, match="OMP_NUM_THREADS=1 overrides threads=3"):
        assert configure_threads(3) == 1
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # OpenMP's nested list: the outer level counts
    assert configure_threads() == 2 and torch.get_num_threads() == 2


def test_default_shares_the_node_between_local_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "available_cpus", lambda: 16)
    assert default_threads() == runtime.DEFAULT_MAX_THREADS == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_threads() == 2
    assert configure_threads() == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    assert default_threads() == 1  # more processes than cores: still one thread each


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_omp_num_threads_is_a_clear_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        configure_threads()


def test_zero_means_the_default_and_negative_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    assert configure_threads(0) == configure_threads(None) == 3
    with pytest.raises(ValueError, match="threads must be >= 0"):
        configure_threads(-1)


@pytest.mark.slow  # a fresh interpreter that imports torch: 4-6 s on the shared 2-core machine
def test_interop_threads_are_set_once_in_a_fresh_process() -> None:
    """torch takes the inter-op count only before parallel work; a second call must not fail."""
    code = ("import torch; from ptacl_lib.runtime import configure_threads as c; "
            "first = c(3); second = c(2); "
            "print(first, second, torch.get_num_threads(), torch.get_num_interop_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**env, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "2", "2", "3"]


def test_the_payload_runs_when_unpickled_unchecked(tmp_path: Path) -> None:
    """The refusal tests below are meaningful: loaded without weights_only, the payload does run."""
    marker = tmp_path / "ran"
    torch.load(write_payload(tmp_path / "last.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on a plain pickle's protocol
@pytest.mark.parametrize("call", ["os.system", "exec"])
@pytest.mark.parametrize("via", ["torch.save", "pickle-2", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path, via: str, call: str) -> None:
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "last.pt", marker, via, call)
    with pytest.raises(UnsafeCheckpointError, match=f"^{re.escape(str(path))} holds objects other than weights"
                                                    ".*it was not loaded"):
        load_checkpoint(path)
    assert not marker.exists()


def _draws() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.standard_normal(3), torch.rand(3)


def _assert_same_draws(a: tuple[float, np.ndarray, torch.Tensor], b: tuple[float, np.ndarray, torch.Tensor]) -> None:
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_rng_state_round_trips_through_a_checkpoint_without_pickled_arrays(tmp_path: Path) -> None:
    runtime.seed_everything(4)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state: it must come back too
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1, "rng": [capture_rng_state()]})
    expected = _draws()
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    restore_rng_state(load_checkpoint(path)["rng"][0])
    _assert_same_draws(_draws(), expected)


def _old_rng_state() -> dict[str, Any]:
    """``capture_rng_state`` as the earlier version wrote it: NumPy's raw tuple, with a uint32 ndarray."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def test_a_checkpoint_with_an_old_ndarray_rng_state_still_loads_and_restores(tmp_path: Path) -> None:
    runtime.seed_everything(5)
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1, "rng": [_old_rng_state()]})
    expected = _draws()
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path)  # it does hold NumPy globals
    restore_rng_state(load_checkpoint(path)["rng"][0])
    _assert_same_draws(_draws(), expected)


def test_an_old_rng_state_written_under_numpy_1_still_loads(tmp_path: Path) -> None:
    """NumPy 1 pickles arrays through ``numpy.core.multiarray._reconstruct``, NumPy 2 through ``numpy._core``."""
    runtime.seed_everything(6)
    buffer = io.BytesIO()
    torch.save({"rng": [_old_rng_state()]}, buffer, _use_new_zipfile_serialization=False)  # a plain pickle stream
    numpy_1, renamed = re.subn(rb"numpy\._?core\.multiarray\n", b"numpy.core.multiarray\n", buffer.getvalue())
    assert renamed == 1
    (tmp_path / "last.pt").write_bytes(numpy_1)
    expected = _draws()
    restore_rng_state(load_checkpoint(tmp_path / "last.pt")["rng"][0])
    _assert_same_draws(_draws(), expected)
