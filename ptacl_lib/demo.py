"""``make demo``: the whole story on the synthetic cohort, end to end, headless and resumable.

1. generate the cohort (reused when it exists);
2. pretrain every arm for every seed (each run resumes from its last checkpoint; finished runs
   are skipped);
3. evaluate every run (retrieval and regression, ``metrics.json`` per run) and compare the arms
   with bootstrap confidence intervals;
4. execute notebooks 01–05 into ``<out>/notebooks``;
5. write ``<out>/report.md``: the comparison table, the verdict PTACL vs global-only, the figures.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .notebook_runner import execute_notebook

REPORT_NOTEBOOKS = ("01_data_exploration.ipynb", "02_pretraining.ipynb", "03_embeddings_umap.ipynb",
                    "04_retrieval_case_studies.ipynb", "05_regression.ipynb")

#: Figures the report embeds (paths under ``<out>/figures``), written by the notebooks.
KEY_FIGURES = ("02_pretraining/loss_curves.png", "03_umap_by_arm.png", "05_r2_bars.png",
               "05_predicted_vs_true.png", "05_bland_altman_lvef.png", "04_card_ptacl_0.png")


@dataclass
class DemoConfig:
    """Every knob of the demo. Defaults fit about 30 minutes on a 2-core CPU."""

    out: str = "runs/demo"
    n_subjects: int = 1000
    cohort_seed: int = 0
    arms: tuple[str, ...] = ("none", "ecg_ssl", "global", "ptacl", "supervised")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 64
    model: str = "small"
    device: str = "auto"
    notebooks: bool = True

    @classmethod
    def fast_variant(cls, out: str = "runs/demo-fast") -> "DemoConfig":
        """Seconds-scale settings for tests (``DEMO_FAST=1``): every arm, two seeds, one epoch."""
        return cls(out=out, n_subjects=64, seeds=(0, 1), epochs=1, batch_size=16)


def run_demo(config: DemoConfig) -> Path:
    """Run every stage (each one resumable) and return the path of ``report.md``."""
    from .data.synthetic import generate_cohort
    from .evaluate import evaluate_runs
    from .train import TrainConfig, arm_run_dir, fit

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    timings: dict[str, float] = {}

    t = time.perf_counter()
    manifest = out / "cohort" / "manifest.csv"
    if not manifest.exists():
        generate_cohort(manifest.parent, n_subjects=config.n_subjects, seed=config.cohort_seed)
    timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = []
    for seed in config.seeds:
        for arm in config.arms:
            run_dir = arm_run_dir(out, arm, seed)
            print(f"[demo] train {arm} seed {seed} -> {run_dir}", flush=True)
            fit(TrainConfig(manifest=str(manifest), run_dir=str(run_dir), objective=arm, model=config.model,
                            epochs=config.epochs, batch_size=config.batch_size, seed=seed, device=config.device,
                            resume=True))
            runs.append(run_dir)
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    table, summary = evaluate_runs(runs, manifest, out, device=config.device)
    timings["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    if config.notebooks:
        for name in REPORT_NOTEBOOKS:
            print(f"[demo] notebook {name}", flush=True)
            execute_notebook(name, out / "notebooks", progress=True, **_notebook_parameters(name, manifest, config))
    timings["notebooks"] = time.perf_counter() - t

    report = out / "report.md"
    report.write_text(render_report(config, summary, table, timings))
    return report


def _notebook_parameters(name: str, manifest: Path, config: DemoConfig) -> dict[str, object]:
    """Each notebook's parameters; 02 gets the same arms and budget, so it only plots finished runs."""
    out = Path(config.out)
    if name.startswith("01"):
        return {"manifest": str(manifest), "figures_dir": str(out / "figures")}
    if name.startswith("02"):
        return {"manifest": str(manifest), "run_root": str(out), "objectives": list(config.arms),
                "epochs": config.epochs, "batch_size": config.batch_size, "model": config.model,
                "device": config.device, "seed": list(config.seeds)}
    return {"manifest": str(manifest), "run_root": str(out)}


def render_report(config: DemoConfig, summary: pd.DataFrame, table: pd.DataFrame,
                  timings: dict[str, float]) -> str:
    """The Markdown report: the comparison tables, PTACL vs global-only, and the key figures."""
    from .evaluate import format_table, paired_difference

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()} CPU, {_cpu_count()} cores, torch {_torch_version()}"
    regression = format_table(summary, task="regression", metric="r2")
    retrieval = format_table(summary[summary["target"] == "all"], task="retrieval",
                             metric=["precision@1", "precision@5", "precision@10", "precision_random"])
    cross_modal = format_table(summary, task="cross_modal", metric=["recall@1", "recall@10", "recall_random@10"])
    verdict = _verdict(paired_difference(table, "ptacl", "global"))
    lines = [
        "# PTACL demo report", "",
        f"Measured {when} on {machine}. Cohort: {config.n_subjects} synthetic subjects "
        f"(seed {config.cohort_seed}); model preset `{config.model}`, {config.epochs} epochs, "
        f"seeds {list(config.seeds)}. Cells: mean over seeds [percentile-bootstrap 95 % CI over seeds; with "
        f"{len(config.seeds)} seeds these intervals are coarse and on the optimistic side].", "",
        "## Regression from the frozen ECG embedding (test R², ridge probe)", "",
        regression.to_markdown(), "",
        "## Retrieval of patients with similar phenotypes (ECG → ECG, precision@k)", "",
        retrieval.to_markdown(), "",
        "## Cross-modal retrieval (test ECG → its own CMR among all test CMRs, recall@k)", "",
        cross_modal.to_markdown(), "",
        "## PTACL against global-only (paired by seed)", "", verdict, "",
        "## Figures", "",
        *[f"![{name}](figures/{name})" for name in KEY_FIGURES if (Path(config.out) / "figures" / name).exists()],
        "", "## Wall time", "",
        *[f"- {stage}: {seconds:.0f} s" for stage, seconds in timings.items()],
        f"- total: {sum(timings.values()):.0f} s", "",
        "Executed notebooks are in `notebooks/`; per-run metrics in `arms/<arm>/seed<k>/metrics.json`; "
        "every number in tidy form in `comparison.csv`.", "",
    ]
    return "\n".join(lines)


def _verdict(diff: pd.DataFrame) -> str:
    """Plain sentences from the paired PTACL − global differences, with their table beneath."""
    keyed = diff.set_index(["task", "target", "metric"])
    lines = []
    for key, label in ((("regression", "mean", "r2"), "mean test R² over the nine phenotypes"),
                       (("regression", "lvef", "r2"), "LVEF test R²"),
                       (("retrieval", "all", "precision@10"), "retrieval precision@10"),
                       (("cross_modal", "cmr", "recall@10"), "ECG → own CMR recall@10")):
        if key in keyed.index:
            row = keyed.loc[key]
            word = ("PTACL is higher" if row["ci_low"] > 0 else "PTACL is lower" if row["ci_high"] < 0
                    else "no difference beyond seed noise")
            lines.append(f"- {label}: PTACL − global = {row['mean_difference']:+.3f} "
                         f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]: {word}.")
    shown = diff[diff["metric"].isin(["r2", "precision@1", "precision@10", "recall@1", "recall@10"])]
    return "\n".join(lines) + "\n\n" + shown.round(4).to_markdown(index=False)


def _torch_version() -> str:
    import torch

    return torch.__version__


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
