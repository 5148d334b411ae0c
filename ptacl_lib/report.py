"""The study's tables and its Markdown report (``<out>/report.md``).

``study_tables`` gathers everything the report states: the per-run comparison (``comparison.csv``),
the information-ceiling reference rows (``ceiling.csv``), summaries with CIs, the paired
subject-and-seed bootstrap of each arm against its references (``paired.csv``), and the share of
the ceiling window each arm closes. ``render_report`` turns them into plain sentences and tables.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .arms import RECIPE_SETTINGS, REFERENCE_ARMS, arm_label, arm_rank

if TYPE_CHECKING:
    from .evaluate.power import VarianceParts
    from .study import StudyConfig

CEILING_FILE = "ceiling.csv"
PAIRED_FILE = "paired.csv"
#: Figures the report embeds (paths under ``<out>/figures``), written by the notebooks.
KEY_FIGURES = ("02_pretraining/loss_curves.png", "03_umap_by_arm.png", "05_information_window.png",
               "05_r2_by_target.png", "05_predicted_vs_true.png", "05_bland_altman_lvef.png", "04_card_ptacl_0.png")
#: The contrasts the report tests: (arm, reference).
CONTRASTS: tuple[tuple[str, str], ...] = (("ptacl", "global"), ("ptacl", "none"), ("global", "none"),
                                          ("supervised", "none"), ("ecg_ssl", "none"))


@dataclass
class StudyTables:
    """Every table the report is written from."""

    table: pd.DataFrame  # tidy: arm, seed, task, target, metric, value (ceiling rows included)
    summary: pd.DataFrame  # mean and percentile-bootstrap CI over seeds
    paired: pd.DataFrame  # subject-and-seed bootstrap of R² differences (CONTRASTS)
    window: pd.DataFrame  # per arm: mean R², ceiling, share of the window closed


def read_comparison(run_root: str | Path) -> pd.DataFrame:
    """Every evaluated run's records under ``run_root`` (with the mean R²), plus its ``ceiling.csv`` rows."""
    from .evaluate import compare, with_mean_r2
    from .runs import discover_runs

    root = Path(run_root)
    tables = [with_mean_r2(compare(discover_runs(root)))]
    if (root / CEILING_FILE).exists():
        tables.append(pd.read_csv(root / CEILING_FILE))
    return pd.concat(tables, ignore_index=True)


def probe_results(run_root: str | Path) -> dict[str, dict[int, Any]]:
    """Per arm and seed, the ridge probe's test predictions (the CMR probe from the ``ptacl`` runs)."""
    from .evaluate.embeddings import Embeddings
    from .evaluate.pipeline import probes_of
    from .runs import discover_runs, read_config

    results: dict[str, dict[int, Any]] = {}
    for run in discover_runs(run_root):
        config = read_config(run)
        for arm, result in probes_of(config.objective, Embeddings.load(run)).items():
            results.setdefault(arm, {})[config.seed] = result
    return results


def paired_table(run_root: str | Path, n_resamples: int = 2000) -> pd.DataFrame:
    """``CONTRASTS`` by the paired subject-and-seed bootstrap (``evaluate.bootstrap``), one row per target."""
    from .evaluate.bootstrap import paired_r2_difference

    results = probe_results(run_root)
    frames = [paired_r2_difference(results[a], results[b], n_resamples=n_resamples).assign(arm=a, reference=b)
              for a, b in CONTRASTS if a in results and b in results]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_paired(run_root: str | Path) -> pd.DataFrame:
    """The study's saved paired contrasts (``paired.csv``), or ``paired_table`` when it has none yet."""
    path = Path(run_root) / PAIRED_FILE
    return pd.read_csv(path) if path.exists() else paired_table(run_root)


def run_seconds(run_root: str | Path) -> dict[str, float]:
    """Per arm, the mean wall seconds of one run's training (the sum of its ``epochs.csv`` seconds)."""
    from .runs import discover_runs, read_config, read_metrics

    seconds: dict[str, list[float]] = {}
    for run in discover_runs(run_root):
        epochs = read_metrics(run)[1]
        if len(epochs) and "seconds" in epochs:
            seconds.setdefault(read_config(run).objective, []).append(float(epochs["seconds"].sum()))
    return {arm: sum(values) / len(values) for arm, values in seconds.items()}


#: The differences the power planner is asked to resolve, and the test subjects it may use at most.
POWER_TARGETS: tuple[float, ...] = (0.02, 0.01)
MAX_TEST_SUBJECTS = 20_000


def lever_sentence(parts: VarianceParts) -> str:
    """One sentence on a contrast's ``evaluate.power.VarianceParts``: its two standard-error parts and which of
    seeds and test subjects shrinks the detectable difference more (``VarianceParts.doubling``)."""
    twice = parts.doubling()
    which = (f"more {twice.stronger} is the stronger lever" if twice.stronger
             else "seeds and test subjects weigh about equally")
    return (f"From its two parts the detectable difference is {twice.now:.3f}: the seeds contribute a standard error "
            f"of {parts.se_seed:.4f} and the test subjects {parts.se_subject:.4f}, so {which}. Twice the seeds would "
            f"give {twice.seeds:.3f}, twice the test subjects {twice.subjects:.3f}, both {twice.both:.3f}.")


def power_lines(paired: pd.DataFrame, seconds: dict[str, float], contrast: tuple[str, str] = ("ptacl", "global"),
                targets: tuple[float, ...] = POWER_TARGETS, max_subjects: int = MAX_TEST_SUBJECTS) -> list[str]:
    """The report's power section: each contrast's SE split by source, which lever shrinks the detectable
    difference, and the cheapest design (``evaluate.power``) that resolves each of ``targets`` for ``contrast``."""
    from .evaluate.power import MAX_SEEDS, VarianceParts, plan_table

    mean = paired[paired["target"] == "mean"] if not paired.empty else paired
    if mean.empty or "se_seed" not in mean or mean["se_seed"].isna().all():
        return ["Power cannot be planned: it needs a paired contrast with at least two seeds.", ""]
    split = mean.assign(contrast=[f"{arm_label(a)} − {arm_label(b)}" for a, b in zip(mean["arm"], mean["reference"])])
    lines = ["Mean test R². The standard error of each contrast, split into the part from the seeds and the part "
             "from the test subjects (`ptacl_lib.evaluate.bootstrap`); seed variance falls as 1/seeds, subject "
             "variance as 1/test subjects (`ptacl_lib.evaluate.power`).", "",
             split[["contrast", "n_seeds", "n_subjects", "se_seed", "se_subject", "se", "mdd"]].round(4)
             .to_markdown(index=False), ""]
    row = mean[(mean["arm"] == contrast[0]) & (mean["reference"] == contrast[1])]
    if row.empty:
        return lines
    parts = VarianceParts.from_row(row.iloc[0])
    per_run = sum(seconds.get(a, float("nan")) for a in contrast) / 2
    plan = plan_table(parts, targets, per_run, max_subjects=max_subjects)
    unreachable = plan["seeds"].isna()
    plan = plan.astype(object).where(~plan.isna(), "—")
    plan.loc[unreachable, "seeds"] = f"over {MAX_SEEDS}"
    name = f"{arm_label(contrast[0])} − {arm_label(contrast[1])}"
    lines += [f"**{name}.** {lever_sentence(parts)}", "",
              f"The cheapest designs that resolve a smaller difference (fewest training runs, then test subjects, "
              f"at most {max_subjects:,}), with this study's {per_run:.0f} s per run (the mean of the two arms' "
              f"training, one run on its share of this machine):", "",
              plan.rename(columns={"target": "detectable difference", "runs": "training runs",
                                   "test_subjects": "test subjects", "training_hours": "run-hours"})
              .to_markdown(index=False, floatfmt=".2f"), ""]
    if unreachable.any():
        lines += [f"No design within {MAX_SEEDS} seeds and the subject cap resolves a difference marked \"over "
                  f"{MAX_SEEDS}\": the seed part alone stays above it.", ""]
    return lines


def coverage_spread(coverage: float, n: int) -> float:
    """About how far the realised coverage of ``n`` subjects spreads around ``coverage``: the binomial standard
    deviation ``sqrt(coverage (1 - coverage) / n)``."""
    return (coverage * (1 - coverage) / n) ** 0.5


def calibration_lines(out: str | Path, arm: str = "ptacl") -> list[str]:
    """The report's interval section from ``calibration.csv``/``.json`` (``evaluate.calibration``): ``arm``'s
    coverage, width and MAE per phenotype on the test set, and every arm's and method's mean coverage."""
    import json

    from .data.schema import PHENOTYPE_UNITS
    from .evaluate.calibration import CALIBRATION_CSV, CALIBRATION_JSON

    path = Path(out) / CALIBRATION_CSV
    if not path.exists():
        return ["No calibrated intervals: the cohort has no validation split to calibrate them on.", ""]
    table = pd.read_csv(path)
    saved = json.loads((Path(out) / CALIBRATION_JSON).read_text())
    default, target = saved["default_method"], saved["coverage"]
    arm = arm if arm in set(table["arm"]) else str(table["arm"].iloc[0])
    n_val = int(saved["arms"][arm]["n_val"])
    lines = [f"Each arm's prediction is the mean of its seeds' ridge probes. A {target:.0%} interval around it is "
             f"set by split-conformal calibration on the study cohort's validation split ({n_val} subjects, so the "
             f"realised coverage spreads by about ±{coverage_spread(target, n_val):.3f}), never on the test "
             f"set; method `{default}` (`ptacl_lib.evaluate.calibration`). Test coverage, mean interval width and "
             f"MAE of {arm_label(arm)}:", ""]
    shown = table[(table["arm"] == arm) & (table["method"] == default)]
    shown = shown.assign(unit=[PHENOTYPE_UNITS.get(t, "") for t in shown["target"]])
    if not np.isfinite(shown["mean_width"]).all():
        lines += [f"With {n_val} calibration subjects a {target:.0%} interval is unbounded: split-conformal needs at "
                  f"least {int(np.ceil(target / (1 - target) - 1e-9))} of them (a larger validation split).", ""]
    lines += [shown[["target", "unit", "n", "coverage", "mean_width", "mae"]].round(3).to_markdown(index=False), ""]
    means = (table.groupby(["arm", "method"], sort=False)["coverage"].agg(["mean", "min", "max"]).round(3)
             .reset_index().assign(arm=lambda t: [arm_label(a) for a in t["arm"]]))
    lines += ["Coverage over the nine phenotypes, every arm and conformal method (mean, lowest, highest):", "",
              means.rename(columns={"mean": "mean coverage", "min": "lowest", "max": "highest"})
              .to_markdown(index=False), ""]
    return lines


def application_lines(predictions: pd.DataFrame, truth: pd.DataFrame, seconds: float, out: str | Path,
                      coverage: float, bundle_dir: str, ecg_dir: str, predictions_file: str) -> list[str]:
    """The report's section on a bundle applied to ECG files: how many were predicted, how fast, and per
    phenotype the interval coverage, width and MAE against the measured values (``truth``: manifest rows in the
    same order). ``coverage`` is the bundle's; ``bundle_dir``, ``ecg_dir`` and ``predictions_file`` name what
    was written under ``out``."""
    from .data.schema import PHENOTYPE_UNITS, PHENOTYPES
    from .evaluate.calibration import interval_rows

    ok = (predictions["status"] == "ok").to_numpy()
    mean, lower, upper = (predictions[[f"{name}{end}" for name in PHENOTYPES]].to_numpy()[ok]
                          for end in ("", "_lo", "_hi"))
    table = interval_rows(PHENOTYPES, truth[list(PHENOTYPES)].to_numpy()[ok], mean, lower, upper).drop(columns="n")
    table.insert(1, "unit", [PHENOTYPE_UNITS[name] for name in table["target"]])
    failed = predictions.loc[~ok, "reason"].str.split(":").str[0].value_counts()
    reasons = "; ".join(f"{n} × {r}" for r, n in failed.items()) or "none"
    return ["", "## The PTACL bundle applied to held-out ECG files", "",
            f"`ptacl export` wrote the PTACL arm's seed ensemble to `{Path(out).name}/{bundle_dir}/` (model card: its "
            f"README.md). {len(predictions)} held-out subjects' ECGs were written as CardioSoft XML "
            f"(`{ecg_dir}/`) and predicted from the files alone, as `ptacl predict` does: {int(ok.sum())} "
            f"predicted, errors {reasons}; {seconds:.1f} s, {len(predictions) / seconds:.1f} ECGs/s end to end "
            f"(reading the files, the checks, preprocessing and the encoders; `{predictions_file}`). Against "
            f"the measured phenotypes "
            f"(mean coverage {table['coverage'].mean():.3f}; with {int(ok.sum())} files each phenotype's coverage "
            f"spreads by about ±{coverage_spread(coverage, max(int(ok.sum()), 1)):.3f}):", "",
            table.round(3).to_markdown(index=False), ""]


def window_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm: mean test R² over the nine phenotypes, the ceiling (the best reference row), and the share
    of the window ``(arm − random init) / (ceiling − random init)`` it closes (``evaluate.window_share``),
    averaged over seeds. Empty when the table has no random-init arm or no reference row."""
    from .evaluate import window_share

    try:
        shares = window_share(table)
    except ValueError:  # no random-init runs, or no ceiling rows: no window to measure
        return pd.DataFrame()
    mean = shares[shares["target"] == "mean"]
    mean = mean.iloc[mean["arm"].map(arm_rank).argsort(kind="stable")]
    return (mean.groupby("arm", sort=False)
            .agg(mean_r2=("r2", "mean"), baseline=("baseline", "first"), ceiling=("ceiling", "first"),
                 window=("window", "first"), share_closed=("share", "mean"))
            .loc[lambda t: ~t.index.isin(REFERENCE_ARMS) | (t.index == "cmr_probe")]
            .reset_index())


def study_tables(out: str | Path, manifest: str | Path, ceiling: bool = True,
                 test_manifest: str | Path | None = None) -> StudyTables:
    """Gather (and write) ``ceiling.csv``, ``summary.csv`` and ``paired.csv`` of an evaluated study; the
    ceiling is scored on ``test_manifest``'s subjects when the study has a held-out test cohort."""
    from .evaluate import summarise, with_mean_r2

    out = Path(out)
    if ceiling and not (out / CEILING_FILE).exists():  # the probes are deterministic: computed once per study
        from .data import open_cohort
        from .evaluate.ceiling import ceiling_table

        test_cohort = open_cohort(test_manifest) if test_manifest else None
        table = ceiling_table(open_cohort(manifest), test_cohort=test_cohort)
        with_mean_r2(table).to_csv(out / CEILING_FILE, index=False)
    table = read_comparison(out)
    summary = summarise(table)
    summary.to_csv(out / "summary.csv", index=False)
    paired = paired_table(out)
    paired.to_csv(out / PAIRED_FILE, index=False)
    return StudyTables(table, summary, paired, window_table(table))


def data_lines(manifest: str | Path, preprocess: Any = None) -> list[str]:
    """The cohort in one paragraph: subjects per split, and those preprocessing (``preprocess``, default
    the ``demo`` geometry's) skipped, with the commonest reasons."""
    from .data import PreprocessConfig, PreprocessedCohort, open_cohort

    cohort = open_cohort(manifest)
    cache = PreprocessedCohort.build_or_load(cohort, preprocess or PreprocessConfig(), progress=False)
    splits = cohort.table["split"].value_counts().to_dict()
    line = (f"{len(cohort)} subjects ({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))}); "
            f"preprocessing skipped {len(cache.errors)}")
    if len(cache.errors):
        line += " (" + "; ".join(f"{n} × {r}" for r, n in cache.skip_reasons().head(3).items()) + ")"
    return [line + f", listed in `{(cache.root / 'errors.csv').as_posix()}`.", ""]


def test_set_lines(config: StudyConfig) -> list[str]:
    """Which test set every number below comes from: the held-out cohort (with its size) or the test split."""
    if not config.test_manifest:
        return ["**Test set:** the test split of the study cohort; every test number below comes from it.", ""]
    from .data import open_cohort

    held = open_cohort(config.test_manifest)
    return [f"**Test set:** the held-out test cohort `{config.test_manifest}`, all {len(held)} subjects (before "
            "preprocessing); every test number below, retrieval and alignment included, comes from it. Probes "
            "and the retrieval database use the study cohort's train split.", ""]


def _cell(mean: float, low: float, high: float, digits: int = 3) -> str:
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def verdict_lines(paired: pd.DataFrame) -> list[str]:
    """Plain sentences from the paired bootstrap: one per contrast, on the mean R² and LVEF."""
    if paired.empty:
        return [f"- No contrast to test: the study holds none of the pairs {list(CONTRASTS)}."]
    lines = []
    for (arm, reference), rows in paired.groupby(["arm", "reference"], sort=False):
        keyed = rows.set_index("target")
        for target, label in (("mean", "mean test R²"), ("lvef", "LVEF test R²")):
            if target not in keyed.index:
                continue
            row = keyed.loc[target]
            word = ("higher" if row["ci_low"] > 0 else "lower" if row["ci_high"] < 0
                    else "no difference the study can resolve")
            lines.append(f"- {arm_label(arm)} − {arm_label(reference)}, {label}: "
                         f"{_cell(row['mean_difference'], row['ci_low'], row['ci_high'])}: {word}"
                         + (f" (smallest detectable difference ≈ {row['mdd']:.3f})" if target == "mean" else "") + ".")
    return lines


def settings_line(config: StudyConfig) -> str:
    """The study's training settings in one sentence, naming every arm whose recipe departs from them."""
    runs = {arm: config.train_config(arm, 0) for arm in config.arms}
    departures = [f"{arm_label(arm)}: {run.epochs} epochs, batch {run.batch_size}, lr {run.lr:g}, "
                  f"warm-up {run.warmup_epochs:g}"
                  for arm, run in runs.items() if any(getattr(run, k) != getattr(config, k) for k in RECIPE_SETTINGS)]
    recipes = f" (per-arm recipes, `study_config.json`: {'; '.join(departures)})" if departures else ""
    return (f"model preset `{config.model}`, {config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g}, "
            f"warm-up {config.warmup_epochs:g} epoch(s){recipes}, seeds 0–{config.seeds - 1}, "
            f"local negatives `{config.local_negatives}`.")


def render_report(config: StudyConfig, tables: StudyTables, timings: dict[str, float],
                  failed_notebooks: list[str] | None = None) -> str:
    """The Markdown report."""
    from .evaluate import format_table

    out = Path(config.out)
    summary = tables.summary
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    lines = [
        "# PTACL study report", "",
        f"Measured {when} on {machine}. Cohort `{config.manifest}`; arms {list(config.arms)}; "
        f"{settings_line(config)}", "",
        "Cells are the mean over seeds [95 % percentile-bootstrap CI over seeds]. The paired contrasts "
        "below resample seeds *and* test subjects (`ptacl_lib.evaluate.bootstrap`), so their intervals "
        "say how large a difference this study could have seen.", "",
        "## Data", "", *data_lines(config.manifest, config.preprocess), *test_set_lines(config),
        "## Regression from the frozen ECG embedding (test R², ridge probe)", "",
        format_table(summary, task="regression", metric="r2").to_markdown(), "",
    ]
    if not tables.window.empty:
        window = tables.window.assign(arm=[arm_label(a) for a in tables.window["arm"]]).round(3)
        lines += ["## The information window", "",
                  "Reference rows: `median-beat ridge` (a ridge on 12-lead median beats + RR, built with the "
                  "library's R-peak detector) and, for synthetic cohorts, `latent oracle` (a probe on the "
                  "generator's ECG-side latent variables). The ceiling is the better of the two; "
                  "`share_closed` = (arm − random init) / (ceiling − random init), the mean over seeds.", "",
                  window.to_markdown(index=False), ""]
    lines += ["## Paired contrasts (subject-and-seed bootstrap)", "", *verdict_lines(tables.paired), ""]
    if not tables.paired.empty:
        shown = tables.paired[tables.paired["target"].isin(["mean", "lvef", "lvm", "lvedv"])]
        lines += [shown[["arm", "reference", "target", "n_seeds", "n_subjects", "mean_difference", "ci_low",
                         "ci_high", "mdd"]].round(4).to_markdown(index=False), ""]
    lines += ["## Power: what would resolve a smaller difference", "",
              *power_lines(tables.paired, run_seconds(out))]
    lines += ["## Calibrated prediction intervals", "", *calibration_lines(out)]
    if (summary["task"] == "alignment").any():
        lines += ["## What the local loss visibly learns (ECG phase ↔ CMR frame, test set)", "",
                  "Diagonal accuracy: the share of ECG phases whose most similar CMR frame is their own "
                  "(chance 1/T). Phase error: circular distance from that frame to their own.", "",
                  format_table(summary, task="alignment",
                               metric=["diagonal_accuracy", "phase_error_ms"]).to_markdown(), ""]
        snapshot = next(iter(sorted((out / "figures" / "06_alignment_inspector").glob("inspector_*.png"))), None)
        if snapshot is not None:
            lines += [f"![alignment snapshot]({snapshot.relative_to(out).as_posix()})", ""]
    lines += [
        "## Retrieval of patients with similar phenotypes (ECG → ECG, precision@k)", "",
        format_table(summary[summary["target"] == "all"], task="retrieval",
                     metric=["precision@1", "precision@5", "precision@10", "precision_random"]).to_markdown(), "",
        "## Cross-modal retrieval (test ECG → its own CMR among all test CMRs, recall@k)", "",
        format_table(summary, task="cross_modal", metric=["recall@1", "recall@10", "recall_random@10"]).to_markdown(),
        "", "## Figures", "",
        *[f"![{name}](figures/{name})" for name in KEY_FIGURES if (out / "figures" / name).exists()],
        "", "## Wall time", "",
        *[f"- {stage}: {seconds:.0f} s" for stage, seconds in timings.items()],
        f"- total: {sum(timings.values()):.0f} s", "",
    ]
    if failed_notebooks:
        lines += [f"**Notebooks that failed** (executed copies in `notebooks/`): {', '.join(failed_notebooks)}", ""]
    lines += ["Executed notebooks are in `notebooks/`; per-run metrics in `arms/<arm>/seed<k>/metrics.json`; "
              "every number in tidy form in `comparison.csv`, `ceiling.csv`, `summary.csv`, `paired.csv` and "
              "`calibration.csv`.", ""]
    return "\n".join(lines)


def _machine() -> str:
    import torch

    from .runtime import available_cpus

    cores = available_cpus()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {cores} CPU cores, {gpu}, torch {torch.__version__}"

