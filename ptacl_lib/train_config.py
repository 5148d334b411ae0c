"""``TrainConfig``: everything that defines one pretraining run (torch-free, so the CLI starts fast).

The fields' metadata carry the CLI's help text, choices and required flags
(``ptacl_lib.cli.add_dataclass_arguments`` reads them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .arms import OBJECTIVES
from .geometry import GEOMETRY_FIELD, Geometry, as_geometry

#: Names of the model presets (``ptacl_lib.models.ModelConfig.preset``): ``small`` for CPUs, ``base`` paper-like.
MODEL_PRESET_NAMES: tuple[str, ...] = ("small", "base")
#: Mains frequencies a recording may carry: 50 Hz (Europe, most of Asia and Africa) or 60 Hz (the Americas).
MAINS_HZ: tuple[int, ...] = (50, 60)
#: Readings of the local loss's negatives (``ptacl_lib.losses.local_temporal_loss``).
LOCAL_NEGATIVES: tuple[str, ...] = ("within", "cross", "both")


def _meta(help: str, **extra: object) -> dict[str, object]:
    return {"help": help, **extra}


@dataclass
class TrainConfig:
    """Everything that defines a pretraining run (saved as ``config.json`` in its run directory)."""

    manifest: str = field(default="", metadata=_meta("manifest file or cohort directory", required=True))
    run_dir: str = field(default="", metadata=_meta("where the run is written", required=True))
    objective: str = field(default="ptacl", metadata=_meta("training objective (arm)", choices=OBJECTIVES))
    model: str = field(default="small", metadata=_meta("model preset", choices=MODEL_PRESET_NAMES))
    geometry: Geometry | None = field(default=None, metadata=GEOMETRY_FIELD)
    mains_hz: int = field(default=50, metadata=_meta(
        "mains frequency of the recordings (Hz), notched where the ECG band reaches it", choices=MAINS_HZ))
    epochs: int = field(default=15, metadata=_meta("epochs over the train split"))
    batch_size: int = field(default=64, metadata=_meta("samples per process and batch"))
    accumulate: int = field(default=1, metadata=_meta(
        "batches per optimiser step (gradient accumulation; adds no InfoNCE negatives)"))
    lr: float = field(default=2e-3, metadata=_meta("peak learning rate (AdamW)"))
    weight_decay: float = field(default=0.05, metadata=_meta("AdamW weight decay on matrices and kernels"))
    warmup_epochs: float = field(default=1.0, metadata=_meta("linear warm-up, in epochs"))
    grad_clip: float = field(default=1.0, metadata=_meta("max global gradient norm; 0 disables clipping"))
    temperature_global: float = field(default=0.1, metadata=_meta("temperature of the global InfoNCE"))
    temperature_local: float = field(default=0.1, metadata=_meta("temperature of the local phase contrast"))
    lambda_local: float = field(default=1.0, metadata=_meta("weight of the local term (ptacl)"))
    local_negatives: str = field(default="within", metadata=_meta(
        "negatives of the local term: frames of the same patient, other patients at the same phase, or both",
        choices=LOCAL_NEGATIVES))
    phase_pooling: str = field(default="", metadata=_meta(
        "rule that pools ECG tokens into phase tokens (models.phase_pooling.PHASE_POOLERS, e.g. beat_nearest_frame, "
        "beat_overlap); empty: the model's default for the input geometry"))
    ecg_patch_ms: float = field(default=0.0, metadata=_meta("ECG token width in milliseconds; 0: the model's"))
    mask_ratio: float = field(default=0.5, metadata=_meta("ecg_ssl: fraction of (lead, time-patch) cells masked"))
    init_from: str = field(default="", metadata=_meta("start from this run's trained model (fine-tuning)"))
    seed: int = field(default=0, metadata=_meta("seed of the initial weights, shuffling and masks"))
    device: str = field(default="auto", metadata=_meta("auto, cpu, cuda or cuda:N"))
    amp: bool = field(default=True, metadata=_meta("bf16 autocast on CUDA (no-op on CPU)"))
    compile: bool = field(default=False, metadata=_meta("torch.compile the training module (CUDA: faster steps)"))
    threads: int = field(default=0, metadata=_meta("CPU threads for torch; 0: the runtime's policy"))
    num_workers: int = field(default=-1, metadata=_meta(
        "DataLoader worker processes; -1: none on CPU, up to 8 pinned-memory workers on CUDA"))
    log_every: int = field(default=10, metadata=_meta("steps between metric flushes (one device sync each)"))
    keep_every: int = field(default=0, metadata=_meta(
        "also keep checkpoints/epoch_NNN.pt every N epochs; 0: only last.pt and best.pt"))
    resume: bool = field(default=False, metadata=_meta("continue the run from its last checkpoint"))
    progress: bool = field(default=True, metadata=_meta("progress bars"))

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose from {OBJECTIVES}")
        if self.model not in MODEL_PRESET_NAMES:
            raise ValueError(f"unknown model preset {self.model!r}; choose from {MODEL_PRESET_NAMES}")
        if self.local_negatives not in LOCAL_NEGATIVES:
            raise ValueError(f"unknown local_negatives {self.local_negatives!r}; choose from {LOCAL_NEGATIVES}")
        if self.epochs < 0 or self.batch_size < 1 or self.accumulate < 1 or self.keep_every < 0:
            raise ValueError(f"need epochs >= 0, batch_size >= 1, accumulate >= 1 and keep_every >= 0, got "
                             f"{self.epochs}, {self.batch_size}, {self.accumulate} and {self.keep_every}")
        if self.ecg_patch_ms < 0:
            raise ValueError(f"ecg_patch_ms must be >= 0 (0: the model's), got {self.ecg_patch_ms}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}")
        if not self.manifest or not self.run_dir:
            raise ValueError("a run needs both a manifest and a run_dir")
        self.geometry = as_geometry(self.geometry, self.model)  # a name or a saved dict becomes the object once


#: Fields that define a run's inputs and model (a study passes its own to every run; fine-tuning copies its source's).
INPUT_SETTINGS: tuple[str, ...] = ("model", "geometry", "mains_hz", "phase_pooling", "ecg_patch_ms")


#: Fields that may differ between a run and its resumption (they do not change the numbers).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"run_dir", "resume", "device", "num_workers", "progress", "log_every",
                                               "threads",
                                               "keep_every", "compile"})



def resume_conflicts(config: TrainConfig, saved: TrainConfig) -> list[str]:
    """The fields in which ``config`` differs from the ``saved`` run it would resume (those that change numbers);
    a geometry is named by the field that differs (``ecg_hz``, ``frames``, ``image_size``, ``slices``)."""
    changed = [f.name for f in fields(TrainConfig) if f.name not in RESUMABLE_CHANGES | {"geometry"}
               and getattr(config, f.name) != getattr(saved, f.name)]
    return changed + saved.geometry.changes(config.geometry)  # type: ignore[union-attr]
