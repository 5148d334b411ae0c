"""Phase-pooling rules and ECG token widths at the ``ukb`` input geometry, with the ``demo`` geometry beside them.

    python benchmarks/phase_pooling_ukb.py --manifest COHORT/manifest.csv --test-manifest HELDOUT/manifest.csv \\
        --out runs/phase_pooling --seeds 3 --epochs 10 --jobs 2 --with-global
    python benchmarks/phase_pooling_ukb.py --dry-run --out /tmp/phase_pooling   # tiny cohorts, in about a minute

A variant is ``GEOMETRY:RULE@MS``: an input geometry (``ptacl_lib.geometry``), a rule of
``models.phase_pooling.PHASE_POOLERS`` and an ECG token width in milliseconds. Each is a study of the
``ptacl`` arm alone under ``--out/<geometry>/<rule>@<ms>`` (resumable, and a study with a ``report.md`` is
not evaluated again; the study's per-arm recipe), every variant's runs trained side by side in ``--jobs``
one-thread processes. ``--with-global`` adds the global-only arm to each geometry's first variant (the
reference of every contrast), for chance-level alignment. Printed, as two markdown tables:

* **pooling, cost and validation** (what a default is chosen on): on the val split, whatever the weights,
  the share of empty phase bins and, per non-empty bin, the tokens of non-zero weight and the effective
  number of tokens, under the variant's own pooling rule; the ms per sample of one PTACL training step
  (batch ``--step-batch``, one thread), the variants of a geometry alternating in this process so that
  machine load hits them alike; validation alignment (diagonal accuracy, phase error in ms;
  ``viz.inspector``) and the last epoch's global validation loss, averaged over seeds, with its per-seed
  difference from the reference;
* **test** (the held-out cohort when given): alignment and the ridge probes' mean R², with the paired
  subject-and-seed bootstrap (``evaluate.bootstrap``) of each against the reference: the difference, its
  95 % interval and (±) the smallest difference it could detect with 80 % power.

Alignment is scored on the phases each rule fills and (``_common``) on those that ``COMMON_PHASES`` (today's
rule) fills too, since a rule that fills every phase answers more and harder rows, among more candidate
frames. Each run's per-subject scores are cached beside it (``alignment_<split>.csv``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_train_step import StepBench, markdown_table, synthetic_batch  # a script's folder is on sys.path

from ptacl_lib.data import PTACLDataset, collate, open_cohort
from ptacl_lib.data.cache import PreprocessedCohort
from ptacl_lib.evaluate.bootstrap import paired_r2_difference, paired_score_difference
from ptacl_lib.geometry import Geometry, resolve_geometry
from ptacl_lib.models import PHASE_POOLERS, PTACLModel
from ptacl_lib.report import probe_results, read_comparison
from ptacl_lib.runs import arm_run_dir, read_metrics
from ptacl_lib.study import StudyConfig, _fit_quietly, run_study
from ptacl_lib.train import run_inputs

#: The variants measured by default: today's rule first (every other variant of its geometry is compared with it).
DEFAULT_VARIANTS: tuple[str, ...] = (
    "ukb:beat_nearest_frame@100", "ukb:beat_overlap@100", "ukb:beat_nearest_frame@50", "ukb:beat_overlap@50",
    "ukb:beat_overlap@25", "demo:beat_nearest_frame@100", "demo:beat_overlap@100")
DRY_RUN_VARIANTS: tuple[str, ...] = ("ukb:beat_nearest_frame@100", "ukb:beat_overlap@50", "demo:beat_nearest_frame@100")
#: Per-subject alignment scores (``viz.inspector.AlignmentMetrics`` fields).
ALIGNMENT_METRICS: tuple[str, ...] = ("diagonal_accuracy", "phase_error_ms")
#: Every variant is also scored on the phases that this rule and token width fill (today's rule, which leaves
#: some empty): a rule that fills every phase otherwise answers harder rows (and has more candidate frames).
COMMON_PHASES: tuple[str, float] = ("beat_nearest_frame", 100.0)
#: The scores compared: on the variant's own phases, and on the common ones.
ALIGNMENT_SCORES: tuple[str, ...] = (*ALIGNMENT_METRICS, *(f"{k}_common" for k in ALIGNMENT_METRICS))
#: The two printed tables: pooling, cost and validation (what a default is chosen on), then test.
CHOICE_COLUMNS: tuple[str, ...] = (
    "geometry", "variant", "seeds", "token_ms", "empty_bins_pct", "tokens_per_bin", "effective_tokens_per_bin",
    "step ms/sample", "val_diagonal_accuracy", "val_diagonal_accuracy_common", "val_phase_error_ms",
    "val_phase_error_ms_common", "val_loss_global", "Δ val_loss_global by seed")
TEST_COLUMNS: tuple[str, ...] = (
    "geometry", "variant", "test_diagonal_accuracy", "test_diagonal_accuracy_common", "test_phase_error_ms",
    "test_phase_error_ms_common", "test_mean_r2", "Δ test phase error ms", "Δ test diagonal accuracy (common)",
    "Δ test mean R²")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One measured setting: input geometry, pooling rule, ECG token width (ms)."""

    geometry: str
    rule: str
    token_ms: float

    @classmethod
    def parse(cls, text: str) -> Variant:
        geometry, _, rest = text.partition(":")
        rule, _, ms = rest.partition("@")
        if rule not in PHASE_POOLERS or not ms:
            raise ValueError(f"variant {text!r}: expected GEOMETRY:RULE@MS with RULE one of {sorted(PHASE_POOLERS)}")
        return cls(geometry, rule, float(ms))

    @property
    def name(self) -> str:
        return f"{self.rule}@{self.token_ms:g}"


def study_of(variant: Variant, args: argparse.Namespace, arms: tuple[str, ...] = ("ptacl",)) -> StudyConfig:
    """The variant's study: the ``ptacl`` arm (and ``arms``) with the variant's rule and token width."""
    return StudyConfig(manifest=str(args.manifest), out=str(args.out / variant.geometry / variant.name), arms=arms,
                       seeds=args.seeds, geometry=resolve_geometry(variant.geometry, image_size=args.image_size),
                       epochs=args.epochs,
                       batch_size=args.batch_size, phase_pooling=variant.rule, ecg_patch_ms=variant.token_ms,
                       jobs=1, threads=1, notebooks=False, ceiling=False,
                       test_manifest=str(args.test_manifest) if args.test_manifest else "")


def relative_cost(config: Any) -> int:
    """A run's training cost up to a constant (epochs x cine pixels per sample), to start the costliest first."""
    geometry = run_inputs(config)[0].geometry
    return config.epochs * geometry.frames * geometry.slices * geometry.image_size ** 2


def train_everything(studies: list[StudyConfig], jobs: int) -> None:
    """Every run of every study, ``jobs`` one-thread processes side by side, the costliest first."""
    for study in studies:  # each cache once, before the workers map it
        PreprocessedCohort.build_or_load(open_cohort(study.manifest), study.preprocess)
    configs = [dataclasses.replace(s.train_config(arm, seed), threads=1, progress=False)
               for s in studies for seed in s.seed_list for arm in s.arms]
    configs.sort(key=relative_cost, reverse=True)
    if jobs <= 1:
        for config in configs:
            _fit_quietly(config)
        return
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        for future in [pool.submit(_fit_quietly, c) for c in configs]:
            print(f"[phase pooling] trained {future.result()}", flush=True)


def pooling_statistics(study: StudyConfig, split: str = "val") -> dict[str, float]:
    """Share of empty phase bins, and per non-empty bin the tokens of non-zero weight and the effective number of
    tokens (``1 / sum(share²)``), over ``split``, under the model that the study's ``ptacl`` runs build (its
    pooling rule and token width; the trained weights play no part)."""
    preprocess, model_config = run_inputs(study.train_config("ptacl", 0))
    model = PTACLModel(model_config)
    batch = collate(list(PTACLDataset(open_cohort(study.manifest), split, preprocess, progress=False)))
    times = model.ecg_encoder.token_times(batch["ecg"].shape[-1] // model.ecg_encoder.patch)
    shares = model.phase_pool.phase_weights(times, batch["rpeaks"], preprocess.geometry.frames)  # [B, N, T]
    filled = shares.sum(dim=1) > 0
    return {"token_ms": 1000.0 * model.ecg_encoder.patch / preprocess.geometry.ecg_hz,
            "empty_bins_pct": 100.0 * float((~filled).float().mean()),
            "tokens_per_bin": float((shares > 0).sum(dim=1)[filled].float().mean()),
            "effective_tokens_per_bin": float((1.0 / (shares ** 2).sum(dim=1)[filled]).mean())}


def step_ms_per_sample(variants: list[Variant], batch_size: int, repeats: int, image_size: int) -> dict[Variant, float]:
    """Median ms per sample of one PTACL training step of each variant (``bench_train_step``), the variants of a
    geometry alternating step by step."""
    result: dict[Variant, float] = {}
    for geometry_name in dict.fromkeys(v.geometry for v in variants):
        geometry = resolve_geometry(geometry_name, image_size=image_size)
        batch = synthetic_batch(batch_size, geometry=geometry)
        group = [v for v in variants if v.geometry == geometry_name]
        benches = {v: StepBench("small", torch.device("cpu"), geometry, phase_pooling=v.rule,
                                ecg_patch_ms=v.token_ms) for v in group}
        times: dict[Variant, list[float]] = {v: [] for v in group}
        for repeat in range(repeats + 1):  # the first round warms up
            for v, bench in benches.items():
                seconds = bench.step(bench.arms["ptacl"], batch)
                if repeat:
                    times[v].append(seconds)
        result.update({v: 1000.0 * statistics.median(t) / batch_size for v, t in times.items()})
    return result


def alignment_scores(run_dir: Path, manifest: str, split: str | None) -> pd.DataFrame:
    """Per-subject alignment scores of a run on ``split`` of ``manifest`` (None: every subject), cached: on the
    phases its own rule fills, and (``_common``) on those of them that ``COMMON_PHASES`` fills too."""
    from ptacl_lib.viz.inspector import AlignmentInspector, alignment_metrics

    cached = run_dir / f"alignment_{split or 'all'}.csv"
    if cached.exists():
        return pd.read_csv(cached)
    inspector = AlignmentInspector(run_dir, open_cohort(manifest), split=split, device="cpu")
    inspector.prepare(inspector.rows)
    rule, token_ms = COMMON_PHASES
    reference = PTACLModel(dataclasses.replace(inspector.models[0].model.config, phase_pooling=rule,
                                               ecg_patch_ms=token_ms))
    records = []
    for row in inspector.rows:
        views = inspector.views(int(row))
        alignment = views.primary
        times = reference.ecg_encoder.token_times(views.ecg.shape[-1] // reference.ecg_encoder.patch)
        common = reference.phase_pool.weights(times, torch.from_numpy(alignment.rpeaks)[None],
                                              alignment.n_phases)[0].sum(dim=0).numpy() > 0
        own, shared = alignment.metrics(), alignment_metrics(alignment.similarity, alignment.valid & common,
                                                             alignment.rr_ms)
        records.append({"subject_id": views.subject_id, **{k: getattr(own, k) for k in ALIGNMENT_METRICS},
                        **{f"{k}_common": getattr(shared, k) for k in ALIGNMENT_METRICS}})
    scores = pd.DataFrame.from_records(records)
    scores.to_csv(cached, index=False)
    return scores


def last_val_losses(run_dir: Path) -> dict[str, float]:
    """The validation losses of a run's last epoch."""
    epochs = read_metrics(run_dir)[1]
    return {k: float(epochs[k].iloc[-1]) for k in ("val_loss", "val_loss_global", "val_loss_local")}


def arm_summary(study: StudyConfig, arm: str) -> dict[str, Any]:
    """Validation and test numbers of one arm of a finished study, averaged over its seeds, and per seed the
    last validation losses, the per-subject test alignment and the probes (for the paired contrasts)."""
    runs = [arm_run_dir(study.out, arm, seed) for seed in study.seed_list]
    test_manifest, test_split = (study.test_manifest, None) if study.test_manifest else (study.manifest, "test")
    val = pd.concat([alignment_scores(r, study.manifest, "val") for r in runs])
    test = {seed: alignment_scores(r, test_manifest, test_split)[list(ALIGNMENT_SCORES)].to_numpy()
            for seed, r in zip(study.seed_list, runs)}
    losses = pd.DataFrame([last_val_losses(r) for r in runs], index=study.seed_list)
    table = read_comparison(study.out)
    mine = table[table["arm"] == arm]
    mean_r2 = mine[(mine["task"] == "regression") & (mine["target"] == "mean") & (mine["metric"] == "r2")]
    return {**{f"val_{k}": float(val[k].mean()) for k in ALIGNMENT_SCORES}, **losses.mean().to_dict(),
            **{f"test_{k}": float(np.nanmean(np.concatenate([t[:, i] for t in test.values()])))
               for i, k in enumerate(ALIGNMENT_SCORES)},
            "test_mean_r2": float(mean_r2["value"].mean()), "alignment": test, "losses": losses,
            "probes": probe_results(study.out)[arm]}


def contrast(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Against ``reference`` (the same seeds): the validation global loss per seed, and paired subject-and-seed
    bootstraps of the test alignment and mean R², each a difference with its 95 % interval and (±) the
    difference it could detect with 80 % power."""
    scores = paired_score_difference(row["alignment"], reference["alignment"], ALIGNMENT_SCORES).set_index("target")
    r2 = paired_r2_difference(row["probes"], reference["probes"]).set_index("target").loc["mean"]
    by_seed = row["losses"]["val_loss_global"] - reference["losses"]["val_loss_global"]
    cells = {"Δ val_loss_global by seed": ", ".join(f"{d:+.3f}" for d in by_seed)}
    for label, line in (("Δ test phase error ms", scores.loc["phase_error_ms"]),
                        ("Δ test diagonal accuracy (common)", scores.loc["diagonal_accuracy_common"]),
                        ("Δ test mean R²", r2)):
        digits = 1 if "ms" in label else 3
        cells[label] = (f"{line.mean_difference:+.{digits}f} [{line.ci_low:+.{digits}f}, {line.ci_high:+.{digits}f}]"
                        f" (±{line.mdd:.{digits}f})")
    return cells


def rounded_cell(value: Any) -> str:
    """A table cell: a float with three decimals (one from 10 up), NaN left empty, anything else as ``str``."""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a markdown table (``bench_train_step.markdown_table``), numbers rounded by ``rounded_cell``."""
    return markdown_table(list(table.columns), [list(row) for row in table.itertuples(index=False)], rounded_cell)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="the study cohort (stored at least at the ukb geometry)")
    parser.add_argument("--test-manifest", type=Path, help="a held-out test cohort (default: the test split)")
    parser.add_argument("--out", type=Path, default=Path("runs/phase_pooling"))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help="GEOMETRY:RULE@MS ...")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="study epochs (PTACL's recipe trains 2 x)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=0, help="override of the geometries' frame side; 0: theirs")
    parser.add_argument("--with-global", action="store_true",
                        help="also train global-only (chance-level alignment) beside each geometry's first variant")
    parser.add_argument("--jobs", type=int, default=2, help="one-thread training processes side by side")
    parser.add_argument("--step-batch", type=int, default=16)
    parser.add_argument("--step-repeats", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="tiny generated cohorts, 1 epoch, 2 seeds")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.variants = list(DRY_RUN_VARIANTS) if args.variants == list(DEFAULT_VARIANTS) else args.variants
        args.seeds, args.epochs, args.batch_size, args.image_size, args.with_global = 2, 1, 8, 32, True
        args.jobs, args.step_batch, args.step_repeats = 1, 2, 2
    elif args.manifest is None:
        parser.error("--manifest is required (or --dry-run)")
    args.variants = [Variant.parse(v) for v in args.variants]
    return args


def dry_run_cohorts(out: Path) -> tuple[Path, Path]:
    """A 60-subject study cohort and a 20-subject held-out one at 500 Hz, 50 frames of 32 px, 3 slices."""
    from ptacl_lib.data.synthetic import generate_cohort

    stored = {"geometry": Geometry("stored", ecg_hz=500, frames=50, image_size=32, slices=3), "progress": False}
    cohorts = (out / "cohort", out / "heldout")
    return (cohorts[0] / "manifest.csv" if (cohorts[0] / "manifest.csv").exists()
            else generate_cohort(cohorts[0], n_subjects=60, seed=0, **stored),
            cohorts[1] / "manifest.csv" if (cohorts[1] / "manifest.csv").exists()
            else generate_cohort(cohorts[1], n_subjects=20, seed=1, id_prefix="HOT", **stored))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    if args.dry_run:
        args.manifest, args.test_manifest = dry_run_cohorts(args.out)
    references = {v.geometry: v for v in reversed(args.variants)}  # each geometry's first variant
    studies = {v: study_of(v, args, ("ptacl", "global") if args.with_global and references[v.geometry] == v
                           else ("ptacl",)) for v in args.variants}
    train_everything(list(studies.values()), args.jobs)
    for study in studies.values():  # the runs are trained: this evaluates them and writes each study's report
        if not (Path(study.out) / "report.md").exists():
            run_study(study)
    steps = step_ms_per_sample(args.variants, args.step_batch, args.step_repeats, args.image_size)

    rows, summaries = [], {}
    for v, study in studies.items():
        summaries[v] = arm_summary(study, "ptacl")
        rows.append({"geometry": v.geometry, "variant": v.name, **pooling_statistics(study),
                     "step ms/sample": steps[v], **summaries[v]})
        if "global" in study.arms:
            rows.append({"geometry": v.geometry, "variant": "global-only", **arm_summary(study, "global")})
    for row in rows:
        reference = summaries[references[row["geometry"]]]
        if row["alignment"] is not reference["alignment"]:
            row.update(contrast(row, reference))
    table = pd.DataFrame(rows).drop(columns=["alignment", "losses", "probes"]).assign(seeds=args.seeds)
    table = table.reindex(columns=list(dict.fromkeys([*CHOICE_COLUMNS, *TEST_COLUMNS, *table.columns])))
    (args.out / "results.json").write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    test_set = "held-out cohort" if args.test_manifest else "test split"
    print(f"Pooling, step cost and validation\n\n{markdown(table[list(CHOICE_COLUMNS)])}\n\n"
          f"Test ({test_set})\n\n{markdown(table[list(TEST_COLUMNS)])}", flush=True)
    return table


if __name__ == "__main__":
    main()
