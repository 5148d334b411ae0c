"""The thread policy: OMP_NUM_THREADS wins, then an explicit count, then the per-node default."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest
import torch

from conftest import REPO
from ptacl_lib import runtime
from ptacl_lib.runtime import configure_threads, default_threads


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
