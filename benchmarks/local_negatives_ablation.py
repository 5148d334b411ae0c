"""Ablation of the local loss's negatives: retrain the ``ptacl`` arm of a finished study under the other readings.

    python benchmarks/local_negatives_ablation.py --baseline runs/demo --readings cross both

Every setting (cohort, seeds, epochs, batch, lr, model) comes from the baseline study's
``study_config.json``; only ``local_negatives`` changes. Each reading is a study of its own under
``--out/<reading>`` (resumable), evaluated like any study. Printed per reading: the paired
subject-and-seed bootstrap of its mean test R² against the baseline's ``ptacl`` runs (the same seeds,
so the same initial weights), the smallest difference the comparison could detect, and the mean
alignment scores on the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from ptacl_lib.evaluate.bootstrap import paired_r2_difference
from ptacl_lib.report import probe_results, read_comparison
from ptacl_lib.study import read_study_config, run_study
from ptacl_lib.train_config import LOCAL_NEGATIVES


def alignment_means(run_root: Path) -> dict[str, float]:
    """Mean over the ``ptacl`` runs' seeds of each alignment metric."""
    table = read_comparison(run_root)
    rows = table[(table["arm"] == "ptacl") & (table["task"] == "alignment")]
    return rows.groupby("metric")["value"].mean().to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("runs/demo"), help="a finished study with ptacl runs")
    parser.add_argument("--readings", nargs="+", default=["cross", "both"], choices=LOCAL_NEGATIVES)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation_local_negatives"))
    parser.add_argument("--jobs", type=int, default=0, help="runs side by side; 0: the baseline's")
    args = parser.parse_args()

    baseline = read_study_config(args.baseline)
    if baseline is None or "ptacl" not in baseline.arms:
        raise SystemExit(f"{args.baseline} is not a finished study with a ptacl arm (no study_config.json)")
    reference = probe_results(args.baseline)["ptacl"]
    rows = [{"reading": f"{baseline.local_negatives} (baseline)", **alignment_means(args.baseline),
             "mean R² − baseline": "", "detectable (80 % power)": "", "seeds": baseline.seeds}]
    for reading in args.readings:
        if reading == baseline.local_negatives:
            continue
        config = dataclasses.replace(baseline, out=str(args.out / reading), arms=("ptacl",), local_negatives=reading,
                                     notebooks=False, ceiling=False, jobs=args.jobs or baseline.jobs)
        run_study(config)
        contrast = paired_r2_difference(probe_results(config.out)["ptacl"], reference).set_index("target")
        mean = contrast.loc["mean"]
        rows.append({"reading": reading, **alignment_means(Path(config.out)),
                     "mean R² − baseline": f"{mean.mean_difference:+.3f} [{mean.ci_low:+.3f}, {mean.ci_high:+.3f}]",
                     "detectable (80 % power)": f"{mean.mdd:.3f}", "seeds": int(mean.n_seeds)})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
