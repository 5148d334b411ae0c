"""``ptacl predict`` throughput from files: ECGs per second, and where the time goes.

For each model preset at its geometry (``small`` at ``demo``, ``base`` at ``ukb``) it writes a model bundle,
writes ``--n`` CardioSoft XML files of a synthetic cohort generated at 500 Hz (``write_cohort_ecgs``: integer
samples of 5 µV, as the device writes them), loads the bundle with ``Predictor.from_bundle`` and times
``Predictor.predict(paths, workers=W)`` for each ``--workers`` W, after a warm-up on a few files. It prints
two markdown tables for ``benchmarks/RESULTS.md``:

* **throughput**: wall seconds and ECGs/s of ``predict`` per preset and worker count (best of ``--repeats``);
* **split**: CPU milliseconds per ECG of each stage, in one process on one torch thread (CPU time, so that
  other work on the machine inflates it less than wall time): reading the XML (``read_signal``), preparing it
  (``prepare_signal``: units, quality check, band-pass and resampling), of which the quality check
  (``assess_ecg_quality``), the encoders' forward pass (every seed, batches of ``predictor.BATCH``), and the
  probes, intervals and similar patients (``phenotype_table``, ``neighbour_table``). The cores divided by their
  sum bound the ECGs/s an otherwise idle machine can reach.

The bundle's weights are random (``random_bundle``): throughput does not depend on them, a bundle of the
right architecture does not need a trained study (which ``base`` at ``ukb`` cannot have on a CPU), and the
bundle is written and read by the library's own bundle code (``inference.bundle``: safetensors files and a
``bundle.json`` with checksums, which ``load_bundle`` checks). Its probes, calibration scores and reference set
are random arrays of the shapes an export writes (``--reference`` subjects).

    python benchmarks/bench_predict.py [--presets small base] [--n 200] [--n-base 16] [--workers 1 2]
    python benchmarks/bench_predict.py --dry-run   # the same code path in seconds; its numbers measure nothing

``--dry-run`` predicts 4 files (2 for ``base``) once each, with transformers of depth 1.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from bench_train_step import markdown_table  # the sibling script: a script's folder is on sys.path

from ptacl_lib.data.schema import LEADS, PHENOTYPES
from ptacl_lib.geometry import GEOMETRIES, MODEL_GEOMETRY
from ptacl_lib.inference import bundle as bundle_files

THROUGHPUT_HEADER = ["preset", "geometry", "workers", "ECGs", "of which refused", "wall (s)", "ECGs/s"]
SPLIT_HEADER = ["preset", "geometry", "read (CPU ms/ECG)", "prepare (CPU ms/ECG)", "of which quality (CPU ms/ECG)",
                "forward (CPU ms/ECG)", "probes and neighbours (CPU ms/ECG)"]


def random_bundle(out: Path, preset: str, seeds: int = 2, n_reference: int = 1000, seed: int = 0,
                  **overrides: Any) -> Path:
    """A model bundle of ``preset`` (``overrides`` changing some of its fields) at its geometry (``MODEL_GEOMETRY``)
    with random weights, probes, calibration scores and reference set, written with ``inference.bundle``'s
    writers and file names."""
    import pandas as pd
    import torch

    from ptacl_lib.data.preprocess import PreprocessConfig
    from ptacl_lib.evaluate.regression import LinearProbe
    from ptacl_lib.models import ECGEmbedder, ModelConfig

    geometry = GEOMETRIES[MODEL_GEOMETRY[preset]]
    config = ModelConfig.preset(preset, **overrides).at_geometry(geometry)
    rng = np.random.default_rng(seed)
    dim, n_targets = config.embed_dim, len(PHENOTYPES)
    arrays: dict[str, dict[str, np.ndarray]] = {bundle_files.PROBES_FILE: {}}
    for k in range(seeds):
        torch.manual_seed(seed + k)
        arrays[bundle_files.encoder_file(k)] = {n: v.numpy() for n, v in ECGEmbedder(config).state_dict().items()}
        probe = LinearProbe(tuple(PHENOTYPES), x_mean=np.zeros(dim), x_scale=np.ones(dim),
                            coef=rng.normal(0, dim ** -0.5, (n_targets, dim)),
                            intercept=rng.uniform(50, 150, n_targets), alphas=np.ones(n_targets))
        arrays[bundle_files.PROBES_FILE].update({f"seed{k}.{name}": v for name, v in probe.arrays().items()})
    arrays[bundle_files.CALIBRATION_FILE] = {"scores": np.abs(rng.normal(size=(200, n_targets))),
                                             "spread_floor": np.zeros(n_targets)}
    embeddings = rng.normal(size=(seeds, n_reference, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=-1, keepdims=True)
    arrays[bundle_files.REFERENCE_FILE] = {"embeddings": embeddings}
    out.mkdir(parents=True, exist_ok=True)
    for name, tensors in arrays.items():
        bundle_files._save_tensors(out / name, tensors)
    pd.DataFrame(rng.uniform(40, 160, (n_reference, n_targets)), columns=list(PHENOTYPES)).assign(
        subject_id=[f"REF{i:05d}" for i in range(n_reference)])[["subject_id", *PHENOTYPES]].to_csv(
        out / bundle_files.REFERENCE_TABLE, index=False)
    files = [*arrays, bundle_files.REFERENCE_TABLE]
    meta = {"format": bundle_files.FORMAT, "format_version": bundle_files.FORMAT_VERSION,
            "note": "benchmark bundle: random weights (benchmarks/bench_predict.py)",
            "seeds": list(range(seeds)), "model": {"preset": preset, "architecture": config.architecture()},
            "preprocessing": {"geometry": geometry.to_dict(), "leads": list(LEADS), "units": "mV",
                              "stored_ecg_hz": 500, "n_samples": 5000,
                              "filters": PreprocessConfig(geometry).filters(),
                              "normalisation": {"lead_scale": [0.5] * len(LEADS)}},
            "calibration": {"coverage": 0.9, "method": "absolute"},
            "reference": {"n": n_reference, "ood_threshold": 0.5},
            "files": {name: bundle_files.sha256_of(out / name) for name in files}}
    (out / bundle_files.BUNDLE_JSON).write_text(json.dumps(meta, indent=1))
    return out


def write_xml_files(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` CardioSoft XML files of a synthetic cohort generated at 500 Hz (10 s, the generator's variety)."""
    from ptacl_lib.data import open_cohort
    from ptacl_lib.data.readers.writers import write_cohort_ecgs
    from ptacl_lib.data.synthetic import generate_cohort

    manifest = generate_cohort(folder / "cohort", n, seed=seed, progress=False)  # the default store: 500 Hz
    cohort = open_cohort(manifest)
    return write_cohort_ecgs(cohort, range(len(cohort)), folder / "xml")


def best_seconds(job: Callable[[], Any], repeats: int) -> float:
    """The least wall time of ``repeats`` calls of ``job``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        best = min(best, time.perf_counter() - start)
    return best


def refused(predictor: Any, files: Sequence[Path], workers: int) -> int:
    """How many of ``files`` ``predictor.predict`` refused (the synthetic cohort draws the odd unusable ECG)."""
    return int((predictor.predict(files, workers=workers, progress=False)["status"] != "ok").sum())


def per_ecg_split(predictor: Any, paths: Sequence[Path]) -> dict[str, float]:
    """CPU milliseconds per ECG of each stage of ``predict`` in this process, on one torch thread (module
    docstring, **split**): what each ECG costs a core, whatever else the machine runs. The forward pass and
    the tables count the ECGs that were not refused."""
    import torch

    from ptacl_lib.data.ecg_quality import assess_ecg_quality
    from ptacl_lib.inference import PreparedEcg, read_signal
    from ptacl_lib.inference.predictor import BATCH, prepare_file

    spec, threads, laps = predictor.bundle.spec, torch.get_num_threads(), {}

    def lap(name: str, job: Callable[[], Any]) -> Any:
        start = time.process_time()
        out = job()
        laps[name] = time.process_time() - start
        return out

    torch.set_num_threads(1)
    try:
        signals = lap("read", lambda: [read_signal(p) for p in paths])
        results = lap("read and prepare", lambda: [prepare_file(p, spec) for p in paths])
        lap("quality", lambda: [assess_ecg_quality(s[:, :spec.n_samples], spec.stored_ecg_hz) for s, _ in signals])
        prepared = [r for r in results if isinstance(r, PreparedEcg)]
        parts = lap("forward", lambda: [predictor.embed_prepared(prepared[k:k + BATCH])
                                        for k in range(0, len(prepared), BATCH)])
        lap("rest", lambda: [(predictor.phenotype_table(e), predictor.neighbour_table(e)) for e in parts])
    finally:
        torch.set_num_threads(threads)
    laps["prepare"] = laps.pop("read and prepare") - laps["read"]
    counts = {"forward": len(prepared), "rest": len(prepared)}
    return {name: 1000.0 * seconds / counts.get(name, len(paths)) for name, seconds in laps.items()}


def bench_preset(preset: str, files: Sequence[Path], args: argparse.Namespace,
                 work: Path) -> tuple[list[list[Any]], list[Any]]:
    """The throughput rows and the split row of one preset."""
    from ptacl_lib.inference import Predictor

    overrides = {"ecg_depth": 1} if args.dry_run else {}
    folder = random_bundle(work / f"bundle_{preset}", preset, seeds=args.seeds, n_reference=args.reference,
                           **overrides)
    start = time.perf_counter()
    predictor = Predictor.from_bundle(folder)
    print(f"[{preset}] bundle loaded in {time.perf_counter() - start:.2f} s "
          f"({sum(p.stat().st_size for p in folder.iterdir()) / 2**20:.1f} MiB, {args.seeds} seeds)", flush=True)
    predictor.predict(files[:2], progress=False)  # warm-up: first forward pass, lazy imports
    geometry = MODEL_GEOMETRY[preset]
    rows = []
    for w in args.workers:
        counts: list[int] = []
        seconds = best_seconds(lambda w=w, counts=counts: counts.append(refused(predictor, files, w)), args.repeats)
        rows.append([preset, geometry, w, len(files), counts[-1], seconds, len(files) / seconds])
        print(f"[{preset}] workers={w}: {len(files) / seconds:.1f} ECGs/s", flush=True)
    split = per_ecg_split(predictor, files)
    return rows, [preset, geometry, *(split[k] for k in ("read", "prepare", "quality", "forward", "rest"))]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"], choices=sorted(MODEL_GEOMETRY))
    parser.add_argument("--n", type=int, default=200, help="XML files predicted per pass (small)")
    parser.add_argument("--n-base", type=int, default=16, help="XML files predicted per pass (base: slow on a CPU)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="reader processes to compare")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per setting (the best is kept)")
    parser.add_argument("--seeds", type=int, default=2, help="encoders in the bundle (the demo exports 2)")
    parser.add_argument("--reference", type=int, default=1000, help="reference subjects in the bundle")
    parser.add_argument("--dry-run", action="store_true",
                        help="4 files (2 for base), 1 repeat, encoders of depth 1: tests the script in seconds")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.n, args.n_base, args.repeats, args.reference = 4, 2, 1, 50
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) in the main process, "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at the start", flush=True)
    if args.dry_run:
        print("Dry run: tiny settings; the numbers test the script, they measure nothing.")
    throughput, split = [], []
    with tempfile.TemporaryDirectory(prefix="ptacl_bench_predict_") as tmp:
        work = Path(tmp)
        files = write_xml_files(work, max(args.n, args.n_base))
        for preset in args.presets:
            n = args.n_base if preset == "base" else args.n
            rows, row = bench_preset(preset, files[:n], args, work)
            throughput += rows
            split.append(row)
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {end_load:.2f} at the end\n")
    print(markdown_table(THROUGHPUT_HEADER, throughput))
    print()
    print(markdown_table(SPLIT_HEADER, split))


if __name__ == "__main__":
    main()
