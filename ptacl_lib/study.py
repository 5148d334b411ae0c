"""``ptacl study``: the whole comparison on any cohort, one command, resumable.

1. train every arm x seed (finished runs are skipped, interrupted ones resume; under ``torchrun``
   every rank trains, and everything after training runs on rank 0);
2. evaluate every run (retrieval, regression, alignment; ``metrics.json`` per run), compare the arms,
   and add the information ceiling (``evaluate.ceiling``) as reference rows;
3. execute the ordered notebooks into ``<out>/notebooks`` (all of them, even when one fails; ``jobs`` at a time);
4. write ``<out>/report.md``.

``ptacl demo`` is "generate the synthetic cohort, then this".
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .arms import ARM_RECIPES, OBJECTIVES, RECIPE_SETTINGS, arm_recipe, check_objectives
from .geometry import GEOMETRY_FIELD, Geometry, as_geometry, saved_geometry
from .runs import CONFIG_FILE, arm_run_dir, discover_runs, model_changes
from .train_config import INPUT_SETTINGS, LOCAL_NEGATIVES, MAINS_HZ, MODEL_PRESET_NAMES, TrainConfig, resume_conflicts

STUDY_CONFIG_FILE = "study_config.json"


@dataclass
class StudyConfig:
    """Every setting of a study; saved as ``<out>/study_config.json`` so notebooks retrain it exactly."""

    manifest: str = field(default="", metadata={"help": "the cohort's manifest (or cohort directory)",
                                                "required": True})
    out: str = field(default="", metadata={"help": "study folder: arms/, report.md, notebooks/, figures/",
                                           "required": True})
    arms: tuple[str, ...] = field(default=OBJECTIVES, metadata={"help": "arms to train", "choices": OBJECTIVES})
    seeds: int = field(default=5, metadata={"help": "seeds per arm (0 .. N-1)"})
    model: str = field(default="small", metadata={"help": "model preset", "choices": MODEL_PRESET_NAMES})
    geometry: Geometry | None = field(default=None, metadata=GEOMETRY_FIELD)
    mains_hz: int = field(default=50, metadata={"help": "mains frequency of the recordings (Hz): 50 or 60",
                                                "choices": MAINS_HZ})
    epochs: int = field(default=15, metadata={"help": "epochs per run"})
    batch_size: int = field(default=64, metadata={"help": "samples per process and batch"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    warmup_epochs: float = field(default=1.0, metadata={"help": "linear learning-rate warm-up, in epochs"})
    recipes: bool = field(default=True, metadata={"help": "per-arm batch/lr/warm-up/epochs multipliers of "
                                                           "arms.ARM_RECIPES; off: every arm trains with the "
                                                           "study's batch_size, lr, warmup_epochs and epochs"})
    recipe_table: dict[str, dict[str, float]] = field(default_factory=dict, metadata={
        "cli": False, "help": "the multipliers this study trains with: arms.ARM_RECIPES when the study starts, "
                              "then read back from study_config.json, so a resumed study keeps its own"})
    local_negatives: str = field(default="within", metadata={"help": "negatives of PTACL's local term",
                                                             "choices": LOCAL_NEGATIVES})
    phase_pooling: str = field(default="", metadata={"help": "PTACL's phase-pooling rule; empty: the model's "
                                                             "default for the input geometry"})
    ecg_patch_ms: float = field(default=0.0, metadata={"help": "ECG token width in milliseconds; 0: the model's"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    jobs: int = field(default=1, metadata={"help": "runs trained (CPU: one thread each) and notebooks executed "
                                                   "side by side"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads per run; 0: the runtime's policy"})
    notebooks: bool = field(default=True, metadata={"help": "execute the notebooks into <out>/notebooks"})
    ceiling: bool = field(default=True, metadata={"help": "add the information-ceiling reference rows"})
    test_manifest: str = field(default="", metadata={
        "help": "a held-out test cohort: every run, the ceiling and the contrasts are scored on all of its "
                "subjects (probes still fit on the study cohort's train split); empty: the study cohort's "
                "test split"})

    def __post_init__(self) -> None:
        self.arms = check_objectives(self.arms)
        if not self.manifest or not self.out:
            raise ValueError("a study needs a manifest and an out folder")
        if self.seeds < 1 or self.jobs < 1:
            raise ValueError(f"seeds and jobs must be >= 1, got {self.seeds} and {self.jobs}")
        self.geometry = as_geometry(self.geometry, self.model)  # a name or a saved dict becomes the object once
        if not self.recipes:
            self.recipe_table = {}
        elif not self.recipe_table:
            self.recipe_table = copy.deepcopy(ARM_RECIPES)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    @property
    def preprocess(self) -> Any:
        """The ``PreprocessConfig`` of the study's input geometry."""
        from .data.preprocess import PreprocessConfig

        return PreprocessConfig(geometry=self.geometry, mains_hz=self.mains_hz)

    def train_config(self, arm: str, seed: int, **overrides: Any) -> TrainConfig:
        """The exact ``TrainConfig`` of one arm and seed of this study."""
        study = {name: getattr(self, name) for name in RECIPE_SETTINGS}
        settings: dict[str, Any] = dict(
            manifest=str(self.manifest), run_dir=str(arm_run_dir(self.out, arm, seed)), objective=arm,
            local_negatives=self.local_negatives, seed=seed, device=self.device, threads=self.threads, resume=True,
            **{name: getattr(self, name) for name in INPUT_SETTINGS}, **arm_recipe(arm, study, self.recipe_table))
        settings.update(overrides)
        return TrainConfig(**settings)


def save_study_config(config: StudyConfig) -> Path:
    """Write ``<out>/study_config.json``."""
    path = Path(config.out) / STUDY_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2))
    return path


def read_study_config(run_root: str | Path) -> StudyConfig | None:
    """The study that made ``run_root`` (None when it was not made by ``ptacl study``)."""
    path = Path(run_root) / STUDY_CONFIG_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(StudyConfig)}
    values = {k: v for k, v in record.items() if k in names}
    values["geometry"] = saved_geometry(record, str(record.get("model", "small")))  # any version's record
    values["arms"] = tuple(values.get("arms", OBJECTIVES))
    values.setdefault("recipes", False)  # a study saved before per-arm recipes trained every arm alike
    return StudyConfig(**values)


def check_resumable_study(config: StudyConfig) -> None:
    """A clear error when ``config.out`` holds a study whose arms trained with other settings (a changed
    recipe table, epochs, lr, the geometry, ...): resuming would mix them. Adding arms or seeds is fine."""
    from .train import run_inputs

    saved = read_study_config(config.out)
    if saved is None:
        return
    for arm in (a for a in config.arms if a in saved.arms):  # in the study's order, so the error is reproducible
        changed = resume_conflicts(config.train_config(arm, 0), saved.train_config(arm, 0))
        trained = next((d for d in (arm_run_dir(config.out, arm, s) for s in saved.seed_list)
                        if (d / CONFIG_FILE).exists()), None)
        if trained:  # a model of another library version
            changed += model_changes(trained, run_inputs(config.train_config(arm, 0))[1])
        if changed:
            raise ValueError(f"{config.out} holds a study whose {arm!r} runs trained with other {changed} "
                             f"({Path(config.out) / STUDY_CONFIG_FILE}); use a new out folder, or delete that "
                             "one to start over")


def _fit_quietly(config: TrainConfig) -> str:
    from .data.cache import PreprocessingNotice
    from .train import fit

    warnings.simplefilter("ignore", PreprocessingNotice)  # the study said it once (announce_preprocessing)
    return str(fit(config))


def announce_preprocessing(config: StudyConfig) -> None:
    """Build (or load) the preprocessing caches of the study cohort and of its held-out test cohort, and say
    once, in plain words, what each left out."""
    from .data import PreprocessedCohort, open_cohort
    from .data.cache import PreprocessingNotice

    cohorts = {"": config.manifest, " (held-out test cohort)": config.test_manifest}
    for label, manifest in cohorts.items():
        if not manifest:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreprocessingNotice)
            cache = PreprocessedCohort.build_or_load(open_cohort(manifest), config.preprocess)
        for line in cache.notices():
            print(f"[study] note{label}: {line}", flush=True)


def train_arms(config: StudyConfig) -> list[Path]:
    """Train every arm x seed of the study (resumably) and return the run directories.

    With ``jobs > 1`` on a CPU, that many runs train side by side in spawned processes with
    ``runtime.cpu_share(jobs)`` threads each (two 1-thread processes out-ran one 2-thread process on
    a 2-core machine: ``benchmarks/RESULTS.md``). Under ``torchrun`` runs go one at a time, every
    rank taking part.
    """
    from tqdm.auto import tqdm

    from .data import PreprocessedCohort, open_cohort
    from .runtime import cpu_share, resolve_device

    configs = [config.train_config(arm, seed) for seed in config.seed_list for arm in config.arms]
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    parallel = config.jobs > 1 and not distributed and resolve_device(config.device).type == "cpu"
    if not parallel:
        from .runtime import cleanup_distributed, init_distributed
        from .train import fit

        dist_info = init_distributed(resolve_device(config.device))  # one process group for every run
        try:
            for cfg in configs:
                if dist_info.is_main:
                    print(f"[study] train {cfg.objective} seed {cfg.seed} -> {cfg.run_dir}", flush=True)
                fit(cfg)
        finally:
            cleanup_distributed()
        return [Path(c.run_dir) for c in configs]
    PreprocessedCohort.build_or_load(open_cohort(config.manifest), config.preprocess)  # once, before the workers
    threads = config.threads or cpu_share(config.jobs)
    quiet = [dataclasses.replace(c, threads=threads, progress=False) for c in configs]
    quiet.sort(key=lambda c: -c.epochs)  # longest first, so the last to finish are short and no worker waits long
    with ProcessPoolExecutor(config.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_fit_quietly, c): c for c in quiet}
        for future in tqdm(as_completed(futures), total=len(futures), desc="training runs", unit="run"):
            cfg = futures[future]
            future.result()  # re-raises a run's error here, naming nothing lost: finished runs stay on disk
            tqdm.write(f"[study] done {cfg.objective} seed {cfg.seed}")
    return [Path(c.run_dir) for c in configs]


def inspection_runs(run_root: str | Path, run_dir: str | Path | None = None,
                    compare_run_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """The runs the alignment inspector opens: ``run_dir`` or the study's PTACL seed 0, against
    ``compare_run_dir`` or (when None) global-only seed 0 if present; ``""`` means no comparison."""
    if run_dir:
        run = Path(run_dir)
    else:
        run = arm_run_dir(run_root, "ptacl", 0)
        run = run if run.exists() else discover_runs(run_root)[0]
    if compare_run_dir is None:
        other = arm_run_dir(run_root, "global", 0)
        return run, (other if other.exists() and other != run else None)
    return run, (Path(compare_run_dir) if compare_run_dir else None)


def notebook_parameters(config: StudyConfig) -> dict[str, Any]:
    """The common parameters every notebook accepts, for this study (the notebooks read the geometry and
    every other setting from the study and its runs)."""
    return {"manifest": str(config.manifest), "run_root": str(config.out), "device": config.device}


def calibrate_study(out: Path, runs: list[Path], config: StudyConfig) -> None:
    """Calibrated intervals of every arm's seed ensemble (``evaluate.calibration.write_calibration``), when the
    study cohort has a validation split to calibrate them on."""
    from .data import open_cohort
    from .evaluate.calibration import CALIBRATION_CSV, write_calibration

    cohort = open_cohort(config.manifest)
    if len(cohort.indices("val")) == 0:
        (out / CALIBRATION_CSV).unlink(missing_ok=True)
        print(f"[study] note: {config.manifest} has no validation split, so no intervals are calibrated", flush=True)
        return
    write_calibration(out, runs, cohort, device=config.device)


@dataclass
class StudyResult:
    """What ``run_study`` produced."""

    report: Path
    failed_notebooks: list[str]


def run_study(config: StudyConfig) -> StudyResult:
    """Run every stage (each one resumable) and return the report's path and any failed notebook."""
    from .data.cache import PreprocessingNotice
    from .evaluate import evaluate_runs
    from .notebook_runner import execute_notebooks, list_notebooks
    from .report import CEILING_FILE, StudyTables, render_report, study_tables

    out = Path(config.out)
    check_resumable_study(config)
    previous = read_study_config(out)
    if previous is not None and previous.test_manifest != config.test_manifest:
        (out / CEILING_FILE).unlink(missing_ok=True)  # it was scored on the other test set
    save_study_config(config)
    timings: dict[str, float] = {}
    if int(os.environ.get("RANK", "0")) == 0:
        announce_preprocessing(config)
    with warnings.catch_warnings():  # said once above: every run and split would repeat it
        warnings.simplefilter("ignore", PreprocessingNotice)
        start = time.perf_counter()
        runs = train_arms(config)
        timings["train"] = time.perf_counter() - start
        if int(os.environ.get("RANK", "0")) != 0:
            return StudyResult(out / "report.md", [])

        start = time.perf_counter()
        evaluate_runs(runs, config.manifest, out, device=config.device, test_cohort=config.test_manifest or None)
        tables: StudyTables = study_tables(out, config.manifest, ceiling=config.ceiling,
                                           test_manifest=config.test_manifest or None)
        timings["evaluate"] = time.perf_counter() - start
        start = time.perf_counter()
        calibrate_study(out, runs, config)
        timings["calibrate"] = time.perf_counter() - start

        failed: list[str] = []
        if config.notebooks:
            start = time.perf_counter()
            names = [n for n in list_notebooks() if n[:2] <= "06"]
            results = execute_notebooks(names, out / "notebooks", common=notebook_parameters(config), jobs=config.jobs)
            failed = [r.name for r in results if not r.ok]
            timings["notebooks"] = time.perf_counter() - start

    report = out / "report.md"
    report.write_text(render_report(config, tables, timings, failed))
    return StudyResult(report, failed)


@dataclass(frozen=True)
class Study:
    """A finished study as the notebooks read it: its runs, cohort, tables and one seed's embeddings per arm."""

    run_root: Path
    runs: list[Path]
    cohort: Any
    table: pd.DataFrame
    summary: pd.DataFrame
    per_arm: dict[str, Any]
    figures: Path
    test_cohort: Any = None  # the held-out test cohort the study was scored on (None: the cohort's test split)

    @property
    def test_rows_cohort(self) -> Any:
        """The cohort that the embeddings' test rows index: the held-out test cohort, or the study cohort."""
        return self.test_cohort if self.test_cohort is not None else self.cohort

    def subject_table(self, embeddings: Any) -> pd.DataFrame:
        """The manifest row of every row of ``embeddings``, in their order: test rows come from the held-out
        test cohort when the study was scored on one, every other row from the study cohort."""
        test = np.asarray(embeddings.split) == "test"
        own = self.cohort.table.iloc[embeddings.index[~test]].set_axis(np.flatnonzero(~test))
        held = self.test_rows_cohort.table.iloc[embeddings.index[test]].set_axis(np.flatnonzero(test))
        return pd.concat([own, held]).sort_index()

    def describe(self) -> str:
        """One line: how many runs, which arms and seeds, whose embeddings are shown, and the test set."""
        seeds = sorted(int(s) for s in self.table["seed"].dropna().unique())
        test = (f"held-out test cohort {self.test_cohort.manifest_path}" if self.test_cohort is not None
                else "the cohort's test split")
        return (f"{len(self.runs)} runs under {self.run_root}; arms {sorted(self.table['arm'].unique())}; "
                f"seeds {seeds}; embeddings shown: {', '.join(self.per_arm)}; test set: {test}")


def saved_path(run_root: str | Path, saved: StudyConfig, path: str) -> Path:
    """A path saved in ``run_root``'s ``study_config.json``, usable from here. Relative paths there are
    relative to the folder the study ran in, which is where its ``out`` led to ``run_root``; when ``out``
    does not end ``run_root`` they are taken as notebook paths (``paths.project_path``)."""
    from .paths import project_path

    given, out = Path(path), Path(saved.out)
    root = Path(run_root).resolve()
    if given.is_absolute():
        return given
    if not out.is_absolute() and len(root.parts) > len(out.parts) and root.parts[-len(out.parts):] == out.parts:
        return Path(*root.parts[:-len(out.parts)]) / given
    return Path(str(project_path(path)))


def read_study_here(run_root: str | Path) -> StudyConfig | None:
    """The study saved in ``run_root`` (``read_study_config``) with its ``manifest``, ``test_manifest`` and
    ``out`` usable from this process's folder (``saved_path``), wherever the study ran: what a notebook
    resumes or reads it with."""
    saved = read_study_config(run_root)
    if saved is None:
        return None
    here = {k: str(saved_path(run_root, saved, getattr(saved, k))) for k in ("manifest", "test_manifest")
            if getattr(saved, k)}
    return dataclasses.replace(saved, out=str(Path(run_root).resolve()), **here)


def load_study(run_root: str | Path, manifest: str | Path | None = None, seed: int | None = None) -> Study:
    """Open an evaluated study: runs under ``run_root``, its cohort (``manifest`` or the study's own),
    the comparison table and summary (with the ceiling rows when present), the embeddings of ``seed``
    (each arm's lowest when None), and its held-out test cohort when it was scored on one."""
    from .data import open_cohort
    from .evaluate import embeddings_by_arm, summarise
    from .report import read_comparison

    root = Path(run_root)
    runs = discover_runs(root)
    saved = read_study_here(root)
    if manifest is None:
        if saved is None:
            raise ValueError(f"{root} holds no {STUDY_CONFIG_FILE}: pass the cohort's manifest")
        manifest = saved.manifest
    table = read_comparison(root)
    figures = root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    test_cohort = open_cohort(saved.test_manifest) if saved is not None and saved.test_manifest else None
    return Study(root, runs, open_cohort(manifest), table, summarise(table), embeddings_by_arm(runs, seed=seed),
                 figures, test_cohort)
