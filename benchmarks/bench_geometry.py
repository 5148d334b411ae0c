"""The cost of an input geometry (``ptacl_lib.geometry``): compute, memory, storage and data loading, per sample.

Prints markdown for ``benchmarks/RESULTS.md``; every figure is measured here except those marked as derived:

* ``cost``: FLOPs of one PTACL forward + backward per sample (``torch.utils.flop_counter``, via
  ``bench_train_step.StepBench``) and CPU milliseconds per sample of a whole PTACL training step (median of
  ``--repeats``), for ``small`` and ``base`` at the ``demo`` and ``ukb`` geometries;
* ``memory``: the process's peak RSS of PTACL training steps of ``base`` at ``ukb`` for batches 1, 2 and 4
  (each batch in a fresh process), a straight-line fit, and the largest batch that line puts in 80 GB (derived);
* ``storage``: bytes per subject of a ``ukb``-geometry synthetic cohort's array store and of its
  preprocessing cache, and the disk for 28,000 and 100,000 subjects (derived: bytes x subjects);
* ``loader``: DataLoader samples/s over that cache with 0 and 2 workers, set against the samples/s a GPU
  would consume running ``base`` at ``--tflops`` achieved TFLOP/s (derived from the FLOPs), and the GPU-hours of
  one arm of 28,000 subjects x 50 epochs at that rate (derived; an estimate until a card measures it).

    python benchmarks/bench_geometry.py [--parts cost memory storage loader] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_train_step import StepBench, markdown_table, synthetic_batch  # a script's folder is on sys.path

HERE = Path(__file__).resolve().parent
GIB = 2**30


def step_cost(preset: str, geometry_name: str, batch_size: int, repeats: int) -> dict[str, Any]:
    """FLOPs per sample (forward + backward) and CPU ms per sample of a PTACL step."""
    from ptacl_lib.geometry import resolve_geometry

    geometry = resolve_geometry(geometry_name)
    bench = StepBench(preset, torch.device("cpu"), geometry)
    batch = synthetic_batch(batch_size, geometry=geometry)
    flops = bench.step_flops(batch) / batch_size
    arm = bench.arms["ptacl"]
    bench.step(arm, batch)  # warm-up
    seconds = statistics.median(bench.step(arm, batch) for _ in range(repeats))
    return {"preset": preset, "geometry": geometry_name, "params_m": bench.n_params / 1e6, "batch": batch_size,
            "gflop_per_sample": flops / 1e9, "cpu_ms_per_sample": 1000 * seconds / batch_size}


def peak_rss_gib(batch_size: int, steps: int = 2) -> float:
    """Peak RSS (GiB) of ``steps`` PTACL steps of ``base`` at ``ukb``, in this process (call it in a fresh one)."""
    import resource

    from ptacl_lib.geometry import resolve_geometry

    geometry = resolve_geometry("ukb")
    bench = StepBench("base", torch.device("cpu"), geometry)
    batch = synthetic_batch(batch_size, geometry=geometry)
    for _ in range(steps):
        bench.step(bench.arms["ptacl"], batch)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def memory_table(batches: list[int], threads: int) -> dict[str, Any]:
    """Peak RSS per batch (fresh processes) and the straight line through them, extrapolated to 80 GB."""
    rows = []
    for size in batches:
        code = (f"import sys, torch; torch.set_num_threads({threads}); sys.path.insert(0, {str(HERE)!r}); "
                f"import bench_geometry as b; print(b.peak_rss_gib({size}))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rows.append({"batch": size, "peak_rss_gib": float(done.stdout.strip().splitlines()[-1])})
    slope, intercept = np.polyfit([r["batch"] for r in rows], [r["peak_rss_gib"] for r in rows], 1)
    largest = int((80e9 / GIB - intercept) // slope)
    return {"rows": rows, "gib_per_sample": float(slope), "fixed_gib": float(intercept), "batch_in_80gb": largest}


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def storage_and_loader(n_subjects: int, batch_size: int, threads: int, loader_epochs: int) -> dict[str, Any]:
    """Store and cache bytes per subject of a ``ukb``-geometry synthetic cohort; loader samples/s over it."""
    from bench_dataloader import loader_rate  # the sibling script, loaded for this part only

    from ptacl_lib.data import PreprocessConfig, PTACLDataset, open_cohort
    from ptacl_lib.data.synthetic import generate_cohort
    from ptacl_lib.geometry import resolve_geometry
    from ptacl_lib.train import TrainConfig

    geometry = resolve_geometry("ukb")
    with tempfile.TemporaryDirectory(prefix="ptacl_geometry_") as tmp:
        root = Path(tmp) / "cohort"
        start = time.perf_counter()
        manifest = generate_cohort(root, n_subjects, seed=0, geometry=geometry, progress=False)
        generate_s = time.perf_counter() - start
        cohort = open_cohort(manifest)
        start = time.perf_counter()
        dataset = PTACLDataset(cohort, "train", config=PreprocessConfig(geometry=geometry), progress=False)
        cache_s = time.perf_counter() - start
        store_b = directory_bytes(root / "arrays") / n_subjects
        cache_b = directory_bytes(dataset.cache.root) / n_subjects
        rates = {}
        for workers in (0, 2):
            config = TrainConfig(manifest=str(manifest), run_dir="unused", batch_size=batch_size, num_workers=workers,
                                 geometry="ukb")
            rates[workers] = loader_rate(dataset, config, epochs=loader_epochs)
    return {"n_subjects": n_subjects, "train_subjects": len(dataset), "store_bytes": store_b, "cache_bytes": cache_b,
            "generate_s_per_subject": generate_s / n_subjects, "cache_s_per_subject": cache_s / n_subjects,
            "loader_samples_per_s": rates, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["cost", "memory", "storage", "loader"],
                        choices=("cost", "memory", "storage", "loader"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-subjects", type=int, default=64, help="size of the ukb-geometry cohort")
    parser.add_argument("--batch-size", type=int, default=16, help="DataLoader batch")
    parser.add_argument("--loader-epochs", type=int, default=8, help="passes over the train split per loader rate "
                                                                   "(the workers' start-up is paid once)")
    parser.add_argument("--tflops", type=float, nargs="+", default=[100.0, 200.0, 400.0],
                        help="achieved TFLOP/s a GPU is assumed to sustain (H100 dense bf16 peak: 989)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
                               "threads": args.threads}
    print(f"### Input geometry cost, CPU ({args.threads} thread(s)), torch {torch.__version__}, {records['date']}\n")

    if "cost" in args.parts or "loader" in args.parts:
        cases = [("small", "demo", 8), ("base", "demo", 2), ("small", "ukb", 4), ("base", "ukb", 1)]
        records["cost"] = [step_cost(p, g, b, args.repeats) for p, g, b in cases]
        print("PTACL training step per sample (FLOPs: forward + backward, torch.utils.flop_counter; CPU: fp32, "
              "whole step with AdamW, median of the timed steps):\n")
        print(markdown_table(
            ["preset", "geometry", "params (M)", "batch", "GFLOP per sample", "CPU ms per sample"],
            [[r["preset"], r["geometry"], r["params_m"], r["batch"], r["gflop_per_sample"], r["cpu_ms_per_sample"]]
             for r in records["cost"]]) + "\n")

    if "memory" in args.parts:
        memory = records["memory"] = memory_table([1, 2, 4], args.threads)
        print("`base` at `ukb`, peak RSS of PTACL steps (fp32, CPU, model and AdamW state included; each batch in "
              "a fresh process):\n")
        print(markdown_table(["batch", "peak RSS (GiB)"],
                             [[r["batch"], r["peak_rss_gib"]] for r in memory["rows"]]) + "\n")
        print(f"Straight line: {memory['fixed_gib']:.2f} GiB + {memory['gib_per_sample']:.3f} GiB per sample; "
              f"80 GB holds a batch of about **{memory['batch_in_80gb']}** (derived, fp32 activations; bf16 autocast "
              "on a GPU stores some of them at half the size).\n")

    if "storage" in args.parts or "loader" in args.parts:
        data = records["data"] = storage_and_loader(args.n_subjects, args.batch_size, args.threads, args.loader_epochs)
        print(f"A `ukb`-geometry synthetic cohort of {data['n_subjects']} subjects ({data['train_subjects']} in "
              f"train): generated at {data['generate_s_per_subject']:.3f} s per subject, preprocessed (cache build, "
              f"R peaks included) at {data['cache_s_per_subject']:.3f} s per subject.\n")
        print(markdown_table(
            ["what", "bytes per subject", "28,000 subjects (GB)", "100,000 subjects (GB)"],
            [[name, f"{b:,.0f}", b * 28_000 / 1e9, b * 100_000 / 1e9]
             for name, b in (("array store", data["store_bytes"]), ("preprocessing cache", data["cache_bytes"]),
                             ("both", data["store_bytes"] + data["cache_bytes"]))]) + "\n")

    if "loader" in args.parts:
        base = next(r for r in records["cost"] if r["preset"] == "base" and r["geometry"] == "ukb")
        from ptacl_lib.data.splits import DEFAULT_FRACTIONS

        samples = 28_000 * DEFAULT_FRACTIONS[0] * 50
        rates = records["data"]["loader_samples_per_s"]
        best = max(rates.values())
        print(f"DataLoader at `ukb` (batch {args.batch_size}, {args.loader_epochs} passes over the train split, the "
              f"cache in the page cache): {rates[0]:.1f} samples/s with 0 workers, {rates[2]:.1f} with 2 workers "
              f"(measured, this CPU). A GPU running `base` at `ukb` ({base['gflop_per_sample']:.1f} GFLOP per sample) "
              f"consumes, and one arm of 28,000 subjects x 50 epochs ({DEFAULT_FRACTIONS[0]:.0%} in train) takes "
              "(derived estimates):\n")
        rows = []
        for tflops in args.tflops:
            rate = tflops * 1e12 / (base["gflop_per_sample"] * 1e9)
            rows.append([tflops, rate, rate / best, rate * data["cache_bytes"] / 1e9, samples / rate / 3600])
        records["gpu_estimate"] = rows
        print(markdown_table(
            ["achieved TFLOP/s", "samples/s consumed", "x the best loader rate measured here",
             "cache read (GB/s) if not in RAM", "GPU-hours per arm"], rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))


if __name__ == "__main__":
    main()
