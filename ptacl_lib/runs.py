"""The run directory: the one module that knows its layout (see ``docs/design.md``).

A study keeps every arm and seed under one root::

    <run_root>/arms/<arm>/seed<k>/
        config.json              TrainConfig fields (the input geometry once, as ``geometry``), the model's
                                 architecture and the preprocessing filters
        checkpoints/last.pt      model, optimiser, scheduler and RNG state of the latest epoch
        checkpoints/best.pt      the epoch with the lowest validation loss (when there is a val split)
        checkpoints/epoch_NNN.pt kept every N epochs when asked
        metrics/steps.csv        one row per optimisation step
        metrics/epochs.csv       one row per epoch, with the validation losses
        embeddings.npz           pooled train/test embeddings (written by evaluation)
        metrics.json             retrieval and regression records (written by evaluation)

Only ``load_run`` needs torch; everything else here reads files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .train_config import TrainConfig

if TYPE_CHECKING:
    import torch

    from .data.preprocess import PreprocessConfig
    from .models import ModelConfig, PTACLModel

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
METRICS_DIR = "metrics"
METRICS_FILE = "metrics.json"
EMBEDDINGS_FILE = "embeddings.npz"


def arm_run_dir(run_root: str | Path, arm: str, seed: int) -> Path:
    """Where one arm and seed lives in a study: ``<run_root>/arms/<arm>/seed<seed>``."""
    return Path(run_root) / "arms" / arm / f"seed{seed}"


def checkpoint_path(run_dir: str | Path, name: str = LAST_CHECKPOINT) -> Path:
    """A checkpoint file of a run (``last.pt`` by default)."""
    return Path(run_dir) / CHECKPOINT_DIR / name


def discover_runs(run_root: str | Path) -> list[Path]:
    """Run directories ``<run_root>/arms/<arm>/seed<k>/`` that hold a ``config.json``, sorted."""
    root = Path(run_root)
    if not root.is_dir():
        raise FileNotFoundError(f"run root not found: {root}")
    runs = sorted(p.parent for p in root.glob(f"arms/*/seed*/{CONFIG_FILE}"))
    if not runs:
        raise FileNotFoundError(f"no run directories under {root}/arms/<arm>/seed<k>/ (with {CONFIG_FILE})")
    return runs


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a run (the one place that reads it)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {CONFIG_FILE} in run directory {run_dir}")
    return json.loads(path.read_text())


def config_record(config: TrainConfig, model_config: ModelConfig, preprocess: PreprocessConfig,
                  world_size: int) -> dict[str, Any]:
    """What ``config.json`` holds: the TrainConfig fields, the input geometry among them (recorded once, as
    ``geometry``), the model's architecture (``ModelConfig.architecture``) and the preprocessing filters."""
    return {**dataclasses.asdict(config), "model_config": model_config.architecture(),
            "preprocess": preprocess.filters(), "world_size": world_size}


def write_config(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``config.json`` (from ``config_record``) into a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return path


def read_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig saved in a run directory (fields this version does not know are ignored; the geometry
    of a run saved by an earlier version is read from wherever that version kept it: ``geometry.saved_geometry``)."""
    return _record_config(read_run_record(run_dir))


def _record_config(record: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a parsed ``config.json`` (``read_config``; the other readers reuse the record they hold)."""
    from .geometry import saved_geometry

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in record.items() if k in names}
    values["geometry"] = saved_geometry(record, str(record.get("model", "small")))
    return TrainConfig(**values)


def run_preprocess_config(run_dir: str | Path) -> PreprocessConfig:
    """The ``PreprocessConfig`` a run was trained with: its geometry and its ``preprocess`` filters."""
    from .data.preprocess import PreprocessConfig

    record = read_run_record(run_dir)
    saved = record.get("preprocess") or {}
    return PreprocessConfig.from_dict(saved, geometry=_record_config(record).geometry)


def run_model_config(run_dir: str | Path) -> ModelConfig:
    """The ``ModelConfig`` a run was built with, at its geometry (its preset's, for runs that predate the saved one)."""
    record = read_run_record(run_dir)
    return _record_model_config(record, _record_config(record))


def _record_model_config(record: dict[str, Any], config: TrainConfig) -> ModelConfig:
    """The ``ModelConfig`` of a parsed ``config.json`` whose TrainConfig is ``config`` (``run_model_config``)."""
    from .models import ModelConfig

    geometry = config.geometry
    saved = record.get("model_config")
    if saved is None:
        return ModelConfig.preset(record.get("model", "small")).at_geometry(geometry)
    return ModelConfig.from_record(saved, geometry)


def model_changes(run_dir: str | Path, model_config: ModelConfig) -> list[str]:
    """The architecture fields in which the model saved in ``run_dir`` differs from ``model_config`` (a model of
    another library version; the geometry is compared on its own, ``train_config.resume_conflicts``)."""
    saved = run_model_config(run_dir).architecture()
    return [k for k, v in model_config.architecture().items() if saved.get(k) != v]


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             checkpoint: str = LAST_CHECKPOINT) -> tuple[PTACLModel, TrainConfig]:
    """The trained model of a run (``checkpoints/last.pt`` by default), in eval mode on ``device``, and its config."""
    from .models import PTACLModel
    from .runtime import load_checkpoint

    record = read_run_record(run_dir)
    config = _record_config(record)
    model = PTACLModel(_record_model_config(record, config))
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # weights written by other model code than this version's
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise ValueError(f"{path} does not fit this version's {config.model!r} model (written by different "
                         f"model code?): {first[0].strip()}") from err
    return model.to(device).eval(), config


def read_metrics(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's ``(steps, epochs)`` metric tables, each with ``objective`` and ``seed`` columns added."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tables = []
    for name in ("steps", "epochs"):
        path = run_dir / METRICS_DIR / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"no {METRICS_DIR}/{name}.csv in run directory {run_dir}")
        tables.append(pd.read_csv(path).assign(objective=config.objective, seed=config.seed))
    return tables[0], tables[1]


def read_evaluation(run_dir: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` that evaluation wrote into a run directory."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: evaluate the run first (ptacl evaluate)")
    return json.loads(path.read_text())
