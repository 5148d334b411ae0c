"""``make demo``: generate the synthetic cohort, then run the whole study on it (``ptacl_lib.study``).

Scales (``ptacl demo --scale``):

* ``cpu``  the default on a machine without CUDA, sized for a 2-core CPU within half an hour (its
  measured time is in the README);
* ``gpu``  the default when CUDA is present: a larger cohort and the ``base`` model at its ``ukb`` input
  geometry (500 Hz, 50 frames, 96 px, 3 slices; the cohorts are generated at it), sized for one
  H100-class card (``benchmarks/RESULTS.md`` says what has been measured on one);
* ``fast`` seconds-scale settings for the tests (``make demo DEMO_FAST=1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .study import StudyConfig, StudyResult, run_study

DEFAULT_OUT = "runs/demo"

#: Cohort size, held-out test cohort size and study settings of each scale. Held-out test subjects cost
#: generation, preprocessing and embedding but no training, so they are the cheap lever on the detectable
#: difference (``evaluate.power``).
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {"n_subjects": 3000, "test_subjects": 4000,
            "study": {"seeds": 5, "epochs": 6, "batch_size": 64, "model": "small", "jobs": 2}},
    # the per-arm recipes were chosen on the CPU demo; the base model keeps one recipe until measured on a GPU
    "gpu": {"n_subjects": 8000, "test_subjects": 8000,
            "study": {"seeds": 5, "epochs": 10, "batch_size": 256, "model": "base", "jobs": 1, "recipes": False}},
    "fast": {"n_subjects": 100, "test_subjects": 40,
             "study": {"seeds": 2, "epochs": 1, "batch_size": 16, "model": "small", "jobs": 1}},
}
#: Held-out ECGs the demo writes as CardioSoft XML files and predicts from the files alone, per scale.
APPLIED_ECGS: dict[str, int] = {"cpu": 300, "gpu": 300, "fast": 20}
BUNDLE_DIR, ECG_DIR, PREDICTIONS_FILE = "bundle", "heldout_ecgs", "heldout_predictions.csv"


@dataclass
class DemoConfig:
    """The synthetic cohort and the study run on it."""

    out: str = DEFAULT_OUT
    scale: str = "cpu"
    cohort_seed: int = 0
    n_subjects: int = 0  # 0: the scale's
    test_subjects: int = -1  # the held-out test cohort (same generator, seed cohort_seed + 1); -1: the scale's, 0: none
    study: dict[str, Any] = field(default_factory=dict)  # overrides of the scale's study settings

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unknown demo scale {self.scale!r}; choose from {sorted(SCALES)}")

    @property
    def manifest(self) -> Path:
        return Path(self.out) / "cohort" / "manifest.csv"

    @property
    def n_test_subjects(self) -> int:
        return SCALES[self.scale]["test_subjects"] if self.test_subjects < 0 else self.test_subjects

    @property
    def test_manifest(self) -> Path | None:
        return Path(self.out) / "test_cohort" / "manifest.csv" if self.n_test_subjects else None

    def study_config(self) -> StudyConfig:
        settings = {**SCALES[self.scale]["study"], **self.study}
        test = str(self.test_manifest) if self.test_manifest else ""
        return StudyConfig(manifest=str(self.manifest), out=self.out, test_manifest=test, **settings)


def default_scale() -> str:
    """``gpu`` when CUDA is available, else ``cpu``."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def apply_to_heldout_files(config: DemoConfig) -> Path:
    """Export the study's PTACL bundle, write held-out ECGs as CardioSoft XML, predict them from the files alone,
    add what that measured (coverage, MAE, throughput) to the report, and execute notebook 08 on them.
    Returns the predictions table's path."""
    import time

    from .data import open_cohort
    from .data.readers.writers import write_cohort_ecgs
    from .inference import Predictor, default_workers, export_bundle
    from .notebook_runner import execute_notebooks, find_notebook
    from .report import application_lines

    out = Path(config.out)
    bundle = export_bundle(out, out / BUNDLE_DIR, arm="ptacl")
    held = open_cohort(config.test_manifest) if config.test_manifest else open_cohort(config.manifest)
    rows = (held.indices() if config.test_manifest else held.indices("test"))[:APPLIED_ECGS[config.scale]]
    files = write_cohort_ecgs(held, rows, out / ECG_DIR)
    start = time.perf_counter()  # end to end: loading the bundle included
    predictor = Predictor.from_bundle(bundle)
    table = predictor.predict(files, workers=default_workers(), progress=False)
    seconds = time.perf_counter() - start
    table.to_csv(out / PREDICTIONS_FILE, index=False)
    truth = held.table.iloc[rows].reset_index(drop=True)
    with (out / "report.md").open("a") as report:
        report.write("\n".join(application_lines(table, truth, seconds, out, predictor.bundle.calibration.coverage,
                                                  BUNDLE_DIR, ECG_DIR, PREDICTIONS_FILE)) + "\n")
    print(f"[demo] {len(files)} held-out ECG files predicted from the bundle {bundle} -> {out / PREDICTIONS_FILE}",
          flush=True)
    execute_notebooks([find_notebook("08")], out / "notebooks", common={
        "bundle": str(bundle), "ecg_dir": str(out / ECG_DIR), "run_root": str(out), "manifest": str(config.manifest)})
    return out / PREDICTIONS_FILE


def run_demo(config: DemoConfig) -> StudyResult:
    """Generate the cohort (reused when it exists), run the study on it, then apply its PTACL bundle to
    held-out ECG files (``apply_to_heldout_files``)."""
    from .data.synthetic import generate_cohort, store_geometry_for

    study = config.study_config()
    assert study.geometry is not None  # resolved by StudyConfig
    stored = {"geometry": store_geometry_for(study.geometry)}
    if not config.manifest.exists():
        n = config.n_subjects or SCALES[config.scale]["n_subjects"]
        generate_cohort(config.manifest.parent, n_subjects=n, seed=config.cohort_seed, **stored)
    if config.test_manifest is not None and not config.test_manifest.exists():
        generate_cohort(config.test_manifest.parent, n_subjects=config.n_test_subjects, seed=config.cohort_seed + 1,
                        id_prefix="HOT", **stored)  # held-out test: its own ids, so no subject is named twice
    result = run_study(study)
    if "ptacl" in study.arms:
        apply_to_heldout_files(config)
    return result
