"""Measure the "this cohort" columns of docs/cohort.md's calibration table.

Per phenotype, test R² of: the latent oracle (ridge, and gradient-boosted trees, on the generator's
ECG-side latents), the median-beat ridge probe, and random-init features (the ``none`` arm's frozen
encoder under the arms' ridge probe). Also the window (best ceiling − random init, in mean R²) and the
classical voltage criteria (Sokolow-Lyon, Cornell) measured on the median beats, correlated with LV mass
(all subjects, and men only as in the published CMR study of young men).

    python benchmarks/calibrate_cohort.py --n 1500 --seed 0 --out /tmp/calib

Reuses ``--out``'s cohort if one is there; ``--skip-none`` leaves out the random-init arm (about a
minute per 1,500 subjects on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ptacl_lib.data import open_cohort
from ptacl_lib.data.schema import LEADS
from ptacl_lib.data.synthetic import GENERATOR_VERSION, generate_cohort
from ptacl_lib.evaluate import evaluate_run
from ptacl_lib.evaluate.ceiling import CEILING_ARMS, MEDIAN_BEAT_MS, ceiling_table, cohort_median_beats
from ptacl_lib.evaluate.compare import COLUMNS
from ptacl_lib.train import TrainConfig, fit


def random_init_rows(manifest: Path, run_dir: Path, seed: int) -> pd.DataFrame:
    """The ``none`` arm: initial weights saved without training, then the arms' evaluation."""
    fit(TrainConfig(manifest=str(manifest), run_dir=str(run_dir), objective="none", seed=seed, progress=False,
                    device="cpu"))
    payload = evaluate_run(run_dir, manifest, device="cpu")
    records = [r for r in payload["records"] if r["embedding"] == "ecg" and r["task"] == "regression"]
    return pd.DataFrame([{"arm": "none", "seed": seed, **{k: r[k] for k in COLUMNS[2:]}} for r in records])


def voltage_criteria(cohort) -> pd.DataFrame:  # noqa: ANN001 - a Cohort
    """Sokolow-Lyon (S V1 + max R V5/V6) and Cornell (R aVL + S V3) voltages (mV) from each median beat."""
    beats = cohort_median_beats(cohort, cohort.indices())[:, :-1].reshape(len(cohort), len(LEADS), -1)
    qrs = (MEDIAN_BEAT_MS >= -60) & (MEDIAN_BEAT_MS <= 80)
    r_wave, s_wave = beats[:, :, qrs].max(axis=2), -beats[:, :, qrs].min(axis=2)
    lead = {name: k for k, name in enumerate(LEADS)}
    return pd.DataFrame({
        "sokolow_lyon": s_wave[:, lead["V1"]] + np.maximum(r_wave[:, lead["V5"]], r_wave[:, lead["V6"]]),
        "cornell": r_wave[:, lead["aVL"]] + s_wave[:, lead["V3"]],
        "lvm": cohort.table["lvm"].to_numpy(), "sex": cohort.table["sex"].to_numpy()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--skip-none", action="store_true")
    args = parser.parse_args()

    manifest = args.out / "cohort" / "manifest.csv"
    started = time.perf_counter()
    if not manifest.exists():
        generate_cohort(args.out / "cohort", args.n, seed=args.seed, progress=False)
    generated = time.perf_counter() - started
    cohort = open_cohort(manifest)
    tables = [ceiling_table(cohort, arms=CEILING_ARMS, seed=args.seed)]
    if not args.skip_none:
        tables.append(random_init_rows(manifest, args.out / "none", args.seed))
    table = pd.concat(tables, ignore_index=True)
    r2 = table[(table["task"] == "regression") & (table["metric"] == "r2")]
    wide = r2.pivot_table(index="arm", columns="target", values="value")
    wide["mean"] = wide.mean(axis=1)
    pearson = table[(table["task"] == "regression") & (table["metric"] == "pearson_r")]
    print(f"generator {GENERATOR_VERSION}, n={len(cohort)} (train {len(cohort.indices('train'))}, "
          f"test {len(cohort.indices('test'))}), seed {args.seed}, {datetime.date.today()}, "
          f"generation {generated:.1f} s")
    print("test R²\n" + wide.round(3).to_string())
    print("test Pearson r\n" + pearson.pivot_table(index="arm", columns="target", values="value").round(3).to_string())
    if "none" in wide.index:
        ceiling = wide.loc[[a for a in ("latent_oracle", "latent_oracle_nonlinear", "median_beat")
                            if a in wide.index], "mean"].max()
        print(f"window (best ceiling - random init, mean R²): {ceiling - wide.loc['none', 'mean']:.3f}")
    criteria = voltage_criteria(cohort).dropna()
    for name in ("sokolow_lyon", "cornell"):
        men = criteria[criteria["sex"] == "M"]
        print(f"{name} vs LV mass: r = {np.corrcoef(criteria[name], criteria['lvm'])[0, 1]:.3f} (all), "
              f"{np.corrcoef(men[name], men['lvm'])[0, 1]:.3f} (men)")
    table.to_csv(args.out / "calibration.csv", index=False)


if __name__ == "__main__":
    main()
