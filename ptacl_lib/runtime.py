"""Device, precision, threads, seeding and checkpoint conventions shared by every training loop."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from .atomic import replacing


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present (respecting ``LOCAL_RANK`` under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


#: Ceiling of the default intra-op thread count (a choice: more than 2 cores was not measured here).
DEFAULT_MAX_THREADS = 4
_interop_configured = False


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_share(processes: int) -> int:
    """The cores each of ``processes`` side-by-side processes may use: available CPUs // processes, at least 1."""
    return max(1, available_cpus() // max(1, processes))


def default_threads() -> int:
    """``min(cpu_share(processes on this node), DEFAULT_MAX_THREADS)``.

    The processes on this node are ``LOCAL_WORLD_SIZE`` (set by ``torchrun``), so data-parallel
    ranks on one machine share its cores instead of each claiming all of them.
    """
    return min(cpu_share(int(os.environ.get("LOCAL_WORLD_SIZE") or 1)), DEFAULT_MAX_THREADS)


def _threads_from_environment() -> int | None:
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    first = raw.split(",")[0].strip()  # OpenMP allows a per-nesting-level list: "4,2"
    if not first.isdigit() or int(first) < 1:
        raise ValueError(f"OMP_NUM_THREADS={raw!r} is not a positive number of threads")
    return int(first)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads for this process and return the intra-op count.

    The count is, in order: ``OMP_NUM_THREADS`` when set (a warning says so if ``threads`` differs);
    else ``threads``; else (``None`` or 0) ``default_threads()``. Inter-op threads are set to the same count once per
    process (torch accepts that only before its first parallel work; later calls leave it).

    Why it matters: torch's threads spin while they wait, so more threads than free cores is costly.
    On the project's 2-core CPU, busy with other jobs, a small-model step on a batch of 64 ran about
    twice as fast with 1 thread as with 2, for a third of the CPU time; on an idle machine 2 threads
    beat 1 (``benchmarks/RESULTS.md``, "CPU threads"). On a shared machine pass ``threads=1``
    (``--threads 1``) or set ``OMP_NUM_THREADS=1``.
    """
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0 (0: the default policy), got {threads}")
    from_environment = _threads_from_environment()
    if from_environment is not None and threads and threads != from_environment:
        warnings.warn(f"OMP_NUM_THREADS={from_environment} overrides threads={threads}", stacklevel=2)
    count = from_environment or threads or default_threads()
    torch.set_num_threads(count)
    global _interop_configured
    if not _interop_configured:
        _interop_configured = True
        try:
            torch.set_num_interop_threads(count)
        except RuntimeError:  # parallel work already started (or set elsewhere): torch keeps its pool
            pass
    return count


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op on CPU so CPU numbers stay exact and reproducible."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch; non-blocking when the source is pinned."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary:
        torch.save(state, temporary)
    return path


class UnsafeCheckpointError(ValueError):
    """A checkpoint or weights file holds objects other than weights, so it was not loaded."""


_RECONSTRUCT_NDARRAY = np.empty(0).__reduce__()[0]
#: The only globals allowed beyond torch's weights-only set: the uint32 ndarray of NumPy's RNG state in checkpoints
#: written before ``capture_rng_state`` stored it as a list (NumPy 2 and NumPy 1 name ``_reconstruct`` differently).
_OLD_RNG_STATE_GLOBALS: list[Any] = [
    (_RECONSTRUCT_NDARRAY, "numpy._core.multiarray._reconstruct"),
    (_RECONSTRUCT_NDARRAY, "numpy.core.multiarray._reconstruct"),
    np.ndarray, np.dtype, type(np.dtype(np.uint32)),
]


def _old_rng_state_allowed() -> contextlib.AbstractContextManager[Any]:
    """``_OLD_RNG_STATE_GLOBALS`` allowed for one load (torch >= 2.6; with an older torch, a checkpoint with the
    old RNG layout is refused like any other file that holds more than weights)."""
    if tuple(int(p) for p in torch.__version__.split(".")[:2] if p.isdigit()) < (2, 6):
        return contextlib.nullcontext()
    return torch.serialization.safe_globals(_OLD_RNG_STATE_GLOBALS)


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that unpickles only tensors, numbers, strings and containers of them (and old RNG states).

    Every checkpoint and weights file goes through here: unpickling arbitrary objects can run code, so a file
    that holds any is refused with ``UnsafeCheckpointError`` before anything in it runs.
    """
    try:
        with _old_rng_state_allowed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL (\S+)", str(err))
        what = f" (such as {refused.group(1)})" if refused else ""
        raise UnsafeCheckpointError(f"{path} holds objects other than weights{what}; it was not loaded, because "
                                    "unpickling them could run code") from err


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint``, weights only (``load_weights_only``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return load_weights_only(path, map_location)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG stream (Python, NumPy, torch CPU and CUDA), for a checkpoint.

    NumPy's state is its dict form with the key as a list of ints, so a checkpoint needs no pickled ndarray.
    """
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}
    state: dict[str, Any] = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng_state`` returned (older checkpoints hold NumPy's raw tuple; both restore)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def rng_state_preserved() -> Iterator[None]:
    """Run a block without disturbing the global RNG streams (e.g. an evaluation pass mid-training)."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (``env://``).

    gloo on CPU, nccl on CUDA. A group that is already initialised is reused; without
    ``WORLD_SIZE > 1`` in the environment this is a single-process run.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return DistInfo()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def cleanup_distributed() -> None:
    """Leave the process group, if one is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of a tensor across ranks (itself when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values
