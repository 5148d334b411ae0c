"""Training-step throughput, memory, MFU, the local loss's cost and the checkpoint sizes, per model preset.

Each preset's model, optimiser and arms are set up as ``ptacl_lib.train`` sets them up on the device
(bf16 autocast, channels_last frame CNN and fused AdamW on CUDA). It prints markdown tables, ready for
``benchmarks/RESULTS.md``:

* **checkpoints**: the bytes of ``last.pt`` (with the AdamW state) and ``best.pt`` (weights only), from a
  real save by the training loop's checkpoint policy of a freshly built preset after one step;
* **local-loss cost**: one PTACL step against one global-only step (same model, batch and optimiser;
  the steps alternate so that machine load hits both alike; the target is at most +10 %);
* **memory per batch size**: peak memory and samples/s of the PTACL step at each ``--sweep`` batch size;
* **throughput**: samples/s, peak memory, TFLOP/s and MFU of the PTACL step, eager and (``--compile``)
  ``torch.compile``d, and the GPU-hours one arm of a ``--subjects`` x ``--epochs`` study would take.

FLOPs of one step are counted by ``torch.utils.flop_counter`` (forward + backward); MFU divides the achieved
FLOP/s by ``--peak-tflops`` (989 for an H100 SXM's or an H200's dense bf16). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's maximum RSS on CPU.

    python benchmarks/bench_train_step.py [--models small] [--batch-size 64] [--repeats 20] [--threads N]
    python benchmarks/bench_train_step.py --device cuda --models small base --batch-size 256 --compile \\
        --sweep 64 128 256 512 --peak-tflops 989 --json results.json
    python benchmarks/bench_train_step.py --device cpu --dry-run   # the same code path in seconds

``--geometry`` sets the inputs (``ptacl_lib.geometry``): ``demo`` (default; 100 Hz, 25 frames of 32 px, 1 slice)
or ``ukb`` (500 Hz, 50 frames of 96 px, 3 slices), the models built for it as training builds them.

``--dry-run`` shrinks everything but the checkpoints (batch 2, 2 repeats, transformers of depth 1, frames of
at most 32 px and 10 frames, and on CPU ``torch.compile`` with the ``eager`` backend, which traces without
generating code): its numbers test the script, they measure nothing. ``benchmarks/gpu_check.sh`` runs the
full plan on one card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ptacl_lib.data.splits import DEFAULT_FRACTIONS
from ptacl_lib.geometry import GEOMETRY_NAMES, Geometry, resolve_geometry
from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runs import BEST_CHECKPOINT, LAST_CHECKPOINT, checkpoint_path
from ptacl_lib.runtime import autocast, capture_rng_state, resolve_device, seed_everything, to_device
from ptacl_lib.train import ContrastiveObjective, TrainConfig, param_groups, save_epoch_checkpoints
from ptacl_lib.train_config import MODEL_PRESET_NAMES

#: Transformer depths of every preset under ``--dry-run`` (the checkpoints keep the real presets).
DRY_RUN_OVERRIDES: dict[str, Any] = {"ecg_depth": 1, "cmr_depth": 1}
ARMS: tuple[str, ...] = ("global", "ptacl")


#: The inputs of ``--dry-run``: the geometry's ECG rate and slices, at most 10 frames of 32 px.
DRY_RUN_FRAMES, DRY_RUN_IMAGE = 10, 32


def synthetic_batch(batch_size: int, seed: int = 0, geometry: Geometry | None = None) -> dict[str, torch.Tensor]:
    """A batch of the collated shapes at ``geometry`` (default ``demo``: 10 s ECG at 100 Hz, 25 cine frames of
    32x32, one slice), with 60-100 bpm R peaks."""
    geometry = geometry or resolve_geometry("demo")
    g = torch.Generator().manual_seed(seed)
    scale, length = geometry.ecg_hz / 100, 10 * geometry.ecg_hz
    rr = torch.randint(60, 100, (batch_size, 1), generator=g)
    first = torch.randint(0, 60, (batch_size, 1), generator=g)
    rpeaks = ((first + rr * torch.arange(17)) * scale).long()
    return {"ecg": torch.randn(batch_size, 12, length, generator=g),
            "cmr": torch.rand(batch_size, geometry.slices, geometry.frames, geometry.image_size, geometry.image_size,
                              generator=g),
            "rpeaks": torch.where(rpeaks < length, rpeaks, -1)}


class StepBench:
    """One preset's model at ``geometry`` (default ``demo``), AdamW and the two contrastive arms, set up on
    ``device`` as ``train._fit`` does."""

    def __init__(self, preset: str, device: torch.device, geometry: Geometry | None = None,
                 **overrides: Any) -> None:
        seed_everything(0)
        self.device = device
        geometry = geometry or resolve_geometry("demo")
        config = dataclasses.replace(ModelConfig.preset(preset).at_geometry(geometry), **overrides)  # overrides last
        self.model = PTACLModel(config).to(device)
        if device.type == "cuda":
            self.model.cmr_encoder.frame_encoder.use_channels_last()
        self.optimizer = torch.optim.AdamW(param_groups(self.model, 0.05), lr=1e-4, betas=(0.9, 0.95),
                                           fused=device.type == "cuda")
        self.arms: dict[str, nn.Module] = {name: ContrastiveObjective(self.model, with_local=name == "ptacl")
                                           for name in ARMS}

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, arm: nn.Module, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step of ``arm`` on ``batch``; its wall time in seconds."""
        self.sync()
        start = time.perf_counter()
        with autocast(self.device):
            loss = arm(batch)["loss"]
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sync()
        return time.perf_counter() - start

    def step_flops(self, batch: dict[str, torch.Tensor]) -> int:
        """FLOPs of one PTACL forward + backward (no optimiser step)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            with autocast(self.device):
                loss = self.arms["ptacl"](batch)["loss"]
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def median_step_seconds(bench: StepBench, arms: dict[str, nn.Module], batch: dict[str, torch.Tensor],
                        warmup: int, repeats: int) -> dict[str, float]:
    """Median wall seconds per step of each arm, the arms alternating; the peak-memory counter is reset
    after the warm-up, so ``peak_memory_gib`` afterwards covers the timed steps."""
    for _ in range(warmup):
        for arm in arms.values():
            bench.step(arm, batch)
    reset_peak_memory(bench.device)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, arm in arms.items():
            times[name].append(bench.step(arm, batch))
    return {name: statistics.median(samples) for name, samples in times.items()}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset, or (CPU) the process's maximum RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def checkpoint_sizes(preset: str, device: torch.device, directory: Path,
                     geometry: Geometry | None = None) -> dict[str, Any]:
    """Bytes of ``last.pt`` and ``best.pt`` written by the training loop's checkpoint policy
    (``train.save_epoch_checkpoints``) for a freshly built ``preset`` after one AdamW step on a batch of 2."""
    bench = StepBench(preset, device, geometry)
    bench.step(bench.arms["ptacl"], to_device(synthetic_batch(2, geometry=geometry), device))
    state = {"model": bench.model.state_dict(), "objective_extra": {}, "optimizer": bench.optimizer.state_dict(),
             "scheduler": {}, "epoch": 1, "step": 1, "rng": [capture_rng_state()], "best_val": 0.0}
    config = TrainConfig(manifest="unused", run_dir=str(directory), model=preset)
    save_epoch_checkpoints(directory, state, 1, config, improved=True)
    return {"preset": preset, "params_m": bench.n_params / 1e6,
            "last_mib": checkpoint_path(directory, LAST_CHECKPOINT).stat().st_size / 2**20,
            "best_mib": checkpoint_path(directory, BEST_CHECKPOINT).stat().st_size / 2**20}


def throughput_row(preset: str, compiled: bool, batch_size: int, seconds: float, flops: int, memory: float,
                   args: argparse.Namespace) -> dict[str, Any]:
    """One throughput record, with the GPU-hours of one arm of ``args.subjects`` x ``args.epochs``."""
    achieved = flops / seconds
    samples = args.subjects * DEFAULT_FRACTIONS[0] * args.epochs
    return {"preset": preset, "compile": compiled, "batch": batch_size, "step_ms": 1000 * seconds,
            "samples_per_s": batch_size / seconds, "peak_memory_gib": memory, "tflops": achieved / 1e12,
            "mfu_pct": 100 * achieved / (args.peak_tflops * 1e12) if args.peak_tflops else math.nan,
            "gpu_hours_per_arm": samples / (batch_size / seconds) / 3600}


def significant_cell(value: Any) -> str:
    """A table cell: a float with three significant digits (one decimal from 100 up), anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]], cell: Callable[[Any], str] = significant_cell) -> str:
    """A GitHub markdown table, each value written by ``cell`` (by default ``significant_cell``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def emit(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small"], choices=MODEL_PRESET_NAMES,
                        help="presets, in order")
    parser.add_argument("--geometry", default="demo", choices=GEOMETRY_NAMES, help="input geometry of every preset")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="batch sizes for the memory table")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd PTACL step")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak TFLOP/s, for MFU")
    parser.add_argument("--subjects", type=int, default=28_000, help="study size for the GPU-hours column")
    parser.add_argument("--epochs", type=int, default=50, help="epochs for the GPU-hours column")
    parser.add_argument("--json", type=Path, default=None, help="also write every record to this JSON file")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny settings (batch 2, 2 repeats, depth-1 transformers): tests the script only")
    args = parser.parse_args(argv)
    args.inputs = resolve_geometry(args.geometry)
    if args.dry_run:
        args.batch_size, args.sweep, args.repeats, args.warmup = 2, [1, 2], 2, 1
        args.inputs = resolve_geometry(args.geometry, frames=min(DRY_RUN_FRAMES, args.inputs.frames),
                                       image_size=min(DRY_RUN_IMAGE, args.inputs.image_size))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = DRY_RUN_OVERRIDES if args.dry_run else {}
    compile_backend = "eager" if args.dry_run and device.type == "cpu" else "inductor"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    memory_kind = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process max RSS"
    records: dict[str, Any] = {"device": card, "torch": torch.__version__, "precision": precision,
                               "dry_run": args.dry_run, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "checkpoints": [], "local_loss": [], "memory": [], "throughput": []}

    geometry = args.inputs
    records["geometry"] = geometry.to_dict()
    emit(f"### Training step on {card}: {precision}, torch {torch.__version__}, {records['date']}\n")
    emit(f"Input geometry `{geometry.name}`: ECG {geometry.ecg_hz} Hz, {geometry.frames} frames of "
         f"{geometry.image_size} px, {geometry.slices} slice(s).\n")
    if args.dry_run:
        emit(f"**Dry run**: batch 2, 2 repeats, depth-1 transformers, at most {DRY_RUN_FRAMES} frames of "
             f"{DRY_RUN_IMAGE} px"
             + (", compile backend `eager`" if compile_backend == "eager" else "")
             + ". These numbers test the script; they measure nothing (checkpoint sizes excepted).\n")
    emit(f"`bench_train_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")

    with tempfile.TemporaryDirectory(prefix="ptacl_ckpt_") as tmp:
        rows = [checkpoint_sizes(preset, device, Path(tmp) / preset, geometry) for preset in args.models]
    records["checkpoints"] = rows
    emit("Checkpoint sizes (real saves; full presets even in a dry run):\n")
    emit(markdown_table(["preset", "params (M)", "last.pt with AdamW state (MiB)", "best.pt weights only (MiB)",
                         "run, last + best (MiB)"],
                        [[r["preset"], r["params_m"], r["last_mib"], r["best_mib"], r["last_mib"] + r["best_mib"]]
                         for r in rows]) + "\n")

    benches: dict[str, StepBench] = {}
    flops: dict[str, int] = {}
    batch = to_device(synthetic_batch(args.batch_size, geometry=geometry), device)
    for preset in args.models:
        bench = benches[preset] = StepBench(preset, device, geometry, **overrides)
        flops[preset] = bench.step_flops(batch)
        seconds = median_step_seconds(bench, bench.arms, batch, args.warmup, args.repeats)
        records["local_loss"].append({"preset": preset, "batch": args.batch_size, "global_ms": 1000 * seconds["global"],
                                      "ptacl_ms": 1000 * seconds["ptacl"],
                                      "ratio": seconds["ptacl"] / seconds["global"]})
        records["throughput"].append(throughput_row(preset, False, args.batch_size, seconds["ptacl"], flops[preset],
                                                    peak_memory_gib(device), args))
    emit("Cost of the local loss (PTACL step / global-only step; target <= 1.10):\n")
    emit(markdown_table(["preset", "batch", "global-only step (ms)", "PTACL step (ms)", "PTACL / global"],
                        [[r["preset"], r["batch"], r["global_ms"], r["ptacl_ms"], r["ratio"]]
                         for r in records["local_loss"]]) + "\n")

    if args.sweep:
        for preset, bench in benches.items():
            for size in args.sweep:
                records["memory"].append(memory_row(bench, preset, size, args))
        emit(f"PTACL step per batch size (eager; peak memory: {memory_kind}, model and AdamW state included):\n")
        emit(markdown_table(["preset", "batch", "peak memory (GiB)", "samples/s"],
                            [[r["preset"], r["batch"], r["peak_memory_gib"], r["samples_per_s"]]
                             for r in records["memory"]]) + "\n")

    train_share = DEFAULT_FRACTIONS[0]
    mfu_basis = f"MFU against {args.peak_tflops:g} TFLOP/s" if args.peak_tflops else "MFU: pass --peak-tflops"
    emit(f"PTACL step throughput (peak memory: {memory_kind}; {mfu_basis}; GPU-hours: "
         f"one arm of {args.subjects:,} subjects x {args.epochs} epochs, {train_share:.0%} of them in the train "
         "split, training steps only: no validation, data loading or compile time):\n")
    header = ["preset", "compile", "batch", "step (ms)", "samples/s", "peak memory (GiB)", "TFLOP/s", "MFU (%)",
              "GPU-hours per arm"]
    emit(markdown_table(header, [throughput_cells(r) for r in records["throughput"]]))
    if args.compile:
        for preset, bench in benches.items():
            records["throughput"].append(compiled_row(bench, preset, batch, flops[preset], compile_backend, args))
            emit(markdown_table(header, [throughput_cells(records["throughput"][-1])]).split("\n")[-1])
        emit("\ntorch.compile (" + compile_backend + ") took " + ", ".join(
            f"{r['compile_seconds']:.1f} s ({r['preset']})" for r in records["throughput"] if r["compile"])
             + ": the first step of every run pays it once.")
    emit("")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


def throughput_cells(row: dict[str, Any]) -> list[Any]:
    return [row["preset"], "on" if row["compile"] else "off", row["batch"], row["step_ms"], row["samples_per_s"],
            row["peak_memory_gib"], row["tflops"], row["mfu_pct"], row["gpu_hours_per_arm"]]


def memory_row(bench: StepBench, preset: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Peak memory and samples/s of the eager PTACL step at batch ``size`` (NaN when it does not fit)."""
    batch = to_device(synthetic_batch(size, seed=size, geometry=args.inputs), bench.device)
    oom = torch.cuda.OutOfMemoryError if bench.device.type == "cuda" else ()
    try:
        seconds = median_step_seconds(bench, {"ptacl": bench.arms["ptacl"]}, batch, 1, min(args.repeats, 5))["ptacl"]
        return {"preset": preset, "batch": size, "peak_memory_gib": peak_memory_gib(bench.device),
                "samples_per_s": size / seconds}
    except oom:  # type: ignore[misc]
        bench.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return {"preset": preset, "batch": size, "peak_memory_gib": math.nan, "samples_per_s": math.nan}


def compiled_row(bench: StepBench, preset: str, batch: dict[str, torch.Tensor], flops: int, backend: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of the ``torch.compile``d PTACL step (the compile happens in the first warm-up step)."""
    compiled = torch.compile(bench.arms["ptacl"], backend=backend)
    start = time.perf_counter()
    bench.step(compiled, batch)
    compile_seconds = time.perf_counter() - start
    seconds = median_step_seconds(bench, {"ptacl": compiled}, batch, args.warmup, args.repeats)["ptacl"]
    row = throughput_row(preset, True, args.batch_size, seconds, flops, peak_memory_gib(bench.device), args)
    return {**row, "compile_seconds": compile_seconds, "compile_backend": backend}


if __name__ == "__main__":
    main()
