"""Check the power planner against a measured study: predict, from a pilot study's variance parts, the
detectable difference of a larger design, then run that design and measure it.

    python benchmarks/power_check.py --pilot runs/demo --out runs/power_check --seeds 10

The larger design keeps the pilot's cohort, held-out test cohort, recipes and settings, and trains only the
two arms of the contrast (default PTACL and global-only) for ``--seeds`` seeds; the pilot's finished runs are
copied in, so only the new seeds train. Prints the prediction (``evaluate.power``) beside the measurement
(the paired subject-and-seed bootstrap of the larger study), as markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import pandas as pd

from ptacl_lib.evaluate.power import VarianceParts
from ptacl_lib.report import read_paired
from ptacl_lib.runs import arm_run_dir
from ptacl_lib.study import StudyConfig, read_study_config, run_study


def contrast_row(paired: pd.DataFrame, arm: str, reference: str) -> pd.Series:
    """The mean-R² row of ``arm − reference`` in a paired table."""
    rows = paired[(paired["arm"] == arm) & (paired["reference"] == reference) & (paired["target"] == "mean")]
    if rows.empty:
        raise SystemExit(f"no {arm} − {reference} contrast in the paired table")
    return rows.iloc[0]


def larger_study(pilot: StudyConfig, out: Path, seeds: int, arms: tuple[str, str], jobs: int) -> StudyConfig:
    """The pilot's study with more seeds of the contrast's two arms, its finished runs copied into ``out``."""
    config = dataclasses.replace(pilot, out=str(out), seeds=seeds, arms=arms, notebooks=False, ceiling=False,
                                 jobs=jobs)
    for arm in arms:
        for seed in pilot.seed_list:
            source, target = arm_run_dir(pilot.out, arm, seed), arm_run_dir(out, arm, seed)
            if source.exists() and not target.exists():
                shutil.copytree(source, target)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot", type=Path, required=True, help="a finished study (ptacl study / make demo)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the larger study")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the larger study")
    parser.add_argument("--arms", nargs=2, default=("ptacl", "global"), help="the contrast: arm, reference")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained side by side")
    args = parser.parse_args()

    pilot = read_study_config(args.pilot)
    if pilot is None:
        raise SystemExit(f"{args.pilot} holds no study_config.json")
    pilot_paired = read_paired(args.pilot)
    pilot_row = contrast_row(pilot_paired, *args.arms)
    parts = VarianceParts.from_row(pilot_row)
    config = larger_study(pilot, args.out, args.seeds, tuple(args.arms), args.jobs)
    start = time.perf_counter()
    run_study(config)
    minutes = (time.perf_counter() - start) / 60
    measured = contrast_row(read_paired(args.out), *args.arms)
    n = int(measured["n_subjects"])
    rows = [
        {"design": f"pilot: {parts.n_seeds} seeds, {parts.n_subjects} test subjects (measured)",
         "se_seed": parts.se_seed, "se_subject": parts.se_subject, "se": pilot_row["se"], "mdd": pilot_row["mdd"]},
        {"design": f"{args.seeds} seeds, {n} test subjects: predicted from the pilot",
         "se_seed": parts.se_seed * (parts.n_seeds / args.seeds) ** 0.5,
         "se_subject": parts.se_subject * (parts.n_subjects / n) ** 0.5,
         "se": parts.se(args.seeds, n), "mdd": parts.mdd(args.seeds, n)},
        {"design": f"{args.seeds} seeds, {n} test subjects: measured",
         "se_seed": measured["se_seed"], "se_subject": measured["se_subject"], "se": measured["se"],
         "mdd": measured["mdd"]},
    ]
    print(f"{args.arms[0]} − {args.arms[1]}, mean test R²; the larger study ({args.out}) took {minutes:.1f} min; "
          f"its measured difference {measured['mean_difference']:+.4f} "
          f"[{measured['ci_low']:+.4f}, {measured['ci_high']:+.4f}]")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
