"""Pretraining loop: one file, every objective, CPU or CUDA, one process or many (``torchrun``).

    ptacl train --manifest runs/cohort --run-dir runs/ptacl_s0 --objective ptacl
    torchrun --nproc_per_node 4 -m ptacl_lib.cli train --manifest ... --run-dir ... --model base

Objectives (every arm uses the same encoders, data and budget):

* ``ptacl``      global InfoNCE + ``lambda_local`` x within-patient phase contrast (DESIGN §1)
* ``global``     the global (CLIP-style) term only
* ``ecg_ssl``    ECG-only masked time-patch reconstruction (mask token + linear decoder on the
                 projected tokens; MSE on the masked patches)
* ``supervised`` ECG -> phenotypes standardised with the train split's mean/std (linear head on
                 the projected ECG embedding; MSE over the phenotypes that are present)
* ``none``       random initialisation, written as the only checkpoint (an evaluation baseline)

A run directory holds ``config.json``, ``checkpoints/last.pt`` and ``checkpoints/epoch_NNN.pt``,
``metrics/steps.csv`` and ``metrics/epochs.csv``. ``resume=True`` continues from ``last.pt`` with
the model, optimiser, scheduler and RNG state; the sampler is re-seeded per epoch, so a resumed
run repeats an uninterrupted one's numbers exactly (on CPU).

Under DDP ``batch_size`` is per process; the global loss draws negatives from every rank.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from .data import PreprocessConfig, PTACLDataset, collate, open_cohort
from .data.schema import PHENOTYPES
from .losses import global_contrastive_loss, local_temporal_loss
from .models import ModelConfig, PTACLModel
from .runtime import (DistInfo, autocast, barrier, capture_rng_state, cleanup_distributed, init_distributed,
                      load_checkpoint, mean_over_ranks, resolve_device, restore_rng_state, rng_state_preserved,
                      save_checkpoint, seed_everything, to_device)

OBJECTIVES: tuple[str, ...] = ("ptacl", "global", "ecg_ssl", "supervised", "none")
LOSS_PARTS: tuple[str, ...] = ("loss", "loss_global", "loss_local")
STEP_COLUMNS: tuple[str, ...] = ("epoch", "step", *LOSS_PARTS, "lr", "samples_per_s")
EPOCH_COLUMNS: tuple[str, ...] = ("epoch", "step", *LOSS_PARTS, *(f"val_{k}" for k in LOSS_PARTS),
                                  "lr", "samples_per_s", "seconds")
#: Fields that may differ between a run and its resumption (they do not change the numbers).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"run_dir", "resume", "device", "num_workers", "progress", "log_every"})


@dataclass
class TrainConfig:
    """Everything that defines a pretraining run (saved as ``config.json``)."""

    manifest: str = "runs/demo/cohort/manifest.csv"  # manifest file or cohort directory
    run_dir: str = ""  # empty: arm_run_dir("runs/demo", objective, seed)
    objective: str = "ptacl"  # one of OBJECTIVES
    model: str = "small"  # ModelConfig preset: small (CPU) or base (GPU, paper-like)
    epochs: int = 15
    batch_size: int = 64  # per process
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    temperature_global: float = 0.1
    temperature_local: float = 0.1
    lambda_local: float = 1.0
    mask_ratio: float = 0.5  # ecg_ssl: fraction of time patches masked
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (no-op on CPU)
    num_workers: int = 0
    log_every: int = 10  # steps between metric flushes (one device sync each)
    keep_epoch_checkpoints: bool = True
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose from {OBJECTIVES}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}")
        if not self.run_dir:
            self.run_dir = str(arm_run_dir("runs/demo", self.objective, self.seed))


def arm_run_dir(run_root: str | Path, objective: str, seed: int) -> Path:
    """Where one arm and seed lives in a demo layout: ``<run_root>/arms/<objective>/seed<seed>``."""
    return Path(run_root) / "arms" / objective / f"seed{seed}"


# ----------------------------------------------------------------------------- objectives

class ContrastiveObjective(nn.Module):
    """``ptacl`` (global + lambda x local) or ``global`` (global only) on a PTACL model."""

    def __init__(self, model: PTACLModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.with_local = config.objective == "ptacl"
        self.tau_g, self.tau_l, self.lam = config.temperature_global, config.temperature_local, config.lambda_local

    def forward(self, batch: dict[str, Any], monitor_local: bool = False) -> dict[str, torch.Tensor]:
        if not (self.with_local or monitor_local):
            loss_global = global_contrastive_loss(self.model.embed_ecg(batch["ecg"]),
                                                  self.model.embed_cmr(batch["cmr"]), self.tau_g)
            return {"loss": loss_global, "loss_global": loss_global, "loss_local": _nan_like(loss_global)}
        out = self.model(batch)
        loss_global = global_contrastive_loss(out["ecg_global"], out["cmr_global"], self.tau_g)
        loss_local = local_temporal_loss(out["ecg_phase"], out["cmr_frames"], self.tau_l, out["phase_mask"])
        total = loss_global + self.lam * loss_local if self.with_local else loss_global
        return {"loss": total, "loss_global": loss_global, "loss_local": loss_local}


class MaskedECGObjective(nn.Module):
    """ECG-only self-supervision: replace a random ``mask_ratio`` of time patches by a learned token and
    reconstruct their raw samples from the projected output tokens."""

    def __init__(self, model: PTACLModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        enc = model.ecg_encoder
        self.mask_ratio = config.mask_ratio
        self.mask_token = nn.Parameter(torch.zeros(enc.dim))
        self.decoder = nn.Linear(model.config.embed_dim, enc.leads * enc.patch)

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        enc = self.model.ecg_encoder
        patches = enc.embed_patches(batch["ecg"])
        b, n, _ = patches.shape
        scores = torch.rand(b, n, generator=generator, device=generator.device if generator else patches.device)
        masked = (scores.argsort(dim=1).argsort(dim=1) < max(1, round(self.mask_ratio * n))).to(patches.device)
        tokens = enc.encode_patches(torch.where(masked[..., None], self.mask_token.to(patches.dtype), patches))
        recon = self.decoder(self.model.ecg_head(tokens)).float()
        loss = F.mse_loss(recon[masked], enc.patch_targets(batch["ecg"]).float()[masked])
        return {"loss": loss, "loss_global": _nan_like(loss), "loss_local": _nan_like(loss)}


class PhenotypeObjective(nn.Module):
    """Supervised baseline: a linear head on the projected ECG embedding predicts standardised phenotypes."""

    def __init__(self, model: PTACLModel, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Linear(model.config.embed_dim, len(PHENOTYPES))
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pred = self.head(self.model.embed_ecg(batch["ecg"])).float()
        target = (batch["phenotypes"].float() - self.mean) / self.std
        present = torch.isfinite(target)
        loss = F.mse_loss(pred[present], target[present])
        return {"loss": loss, "loss_global": _nan_like(loss), "loss_local": _nan_like(loss)}


def _nan_like(x: torch.Tensor) -> torch.Tensor:
    return torch.full_like(x.detach(), float("nan"))


def train_phenotype_stats(dataset: PTACLDataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every phenotype over a (train) dataset, ignoring NaNs; a constant column gets std 1."""
    values = np.asarray(dataset.phenotypes, dtype=np.float64)
    mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    if not np.all(np.isfinite(mean)):
        missing = [p for p, m in zip(PHENOTYPES, mean) if not np.isfinite(m)]
        raise ValueError(f"the train split has no value for phenotype(s) {missing}")
    return mean, np.where(std > 0, std, 1.0)


def build_objective(model: PTACLModel, config: TrainConfig, train_set: PTACLDataset | None) -> nn.Module:
    """The training module of ``config.objective``; it owns ``model`` plus any objective-only head."""
    if config.objective in ("ptacl", "global", "none"):
        return ContrastiveObjective(model, config)
    if config.objective == "ecg_ssl":
        return MaskedECGObjective(model, config)
    if train_set is None:
        raise ValueError("the supervised objective needs the train split for its phenotype standardisation")
    return PhenotypeObjective(model, *train_phenotype_stats(train_set))


# ----------------------------------------------------------------------------- run directory

def _config_record(config: TrainConfig, model_config: ModelConfig, world_size: int) -> dict[str, Any]:
    """``config.json``: the TrainConfig fields, plus the resolved model and preprocessing settings."""
    return {**dataclasses.asdict(config), "model_config": dataclasses.asdict(model_config),
            "preprocess": PreprocessConfig().to_dict(), "world_size": world_size}


def read_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig saved in a run directory."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config.json in run directory {run_dir}")
    record = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in record.items() if k in names})


def run_preprocess_config(run_dir: str | Path) -> PreprocessConfig:
    """The ``PreprocessConfig`` a run was trained with (the ``preprocess`` entry of its ``config.json``)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config.json in run directory {run_dir}")
    saved = json.loads(path.read_text()).get("preprocess")
    return PreprocessConfig(**saved) if saved is not None else PreprocessConfig()


def _model_config_of(record: dict[str, Any], preset: str) -> ModelConfig:
    saved = record.get("model_config")
    if saved is None:
        return ModelConfig.preset(preset)
    return ModelConfig(**{**saved, "cmr_channels": tuple(saved["cmr_channels"])})


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[PTACLModel, TrainConfig]:
    """The trained model of a run (``checkpoints/last.pt``), in eval mode on ``device``, and its config."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    record = json.loads((run_dir / "config.json").read_text())
    model = PTACLModel(_model_config_of(record, config.model))
    path = run_dir / "checkpoints" / "last.pt"
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
        path = run_dir / "metrics" / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"no metrics/{name}.csv in run directory {run_dir}")
        tables.append(pd.read_csv(path).assign(objective=config.objective, seed=config.seed))
    return tables[0], tables[1]


class MetricsLog:
    """Append-only CSV files; on resume the rows past the checkpoint's epoch are dropped first."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_through_epoch: int | None) -> None:
        self.path, self.columns = path, columns
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        if keep_through_epoch is not None and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_through_epoch]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerows(rows)


# ----------------------------------------------------------------------------- schedule and data

def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: linear warm-up from ~0 to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_loader(dataset: PTACLDataset, config: TrainConfig, dist_info: DistInfo, device: torch.device,
                train: bool) -> DataLoader:
    """A DataLoader over a DistributedSampler (also for one process: one seeded shuffle per epoch)."""
    sampler = DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=train, seed=config.seed, drop_last=False)
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=config.num_workers, pin_memory=device.type == "cuda", drop_last=train,
                      persistent_workers=config.num_workers > 0)


def _datasets(config: TrainConfig, dist_info: DistInfo) -> tuple[PTACLDataset, PTACLDataset | None]:
    """Train and val datasets; rank 0 builds the preprocessing cache before the others map it."""
    cohort = open_cohort(config.manifest)
    show = config.progress and dist_info.is_main
    if not dist_info.is_main:
        barrier()
    train_set = PTACLDataset(cohort, "train", progress=show)
    val_set = PTACLDataset(cohort, "val", progress=False)
    if dist_info.is_main:
        barrier()
    if len(train_set) < config.batch_size * dist_info.world_size:
        raise ValueError(f"{config.manifest}: the train split holds {len(train_set)} subjects, fewer than one "
                         f"batch of {config.batch_size} x {dist_info.world_size} process(es)")
    return train_set, (val_set if len(val_set) else None)


# ----------------------------------------------------------------------------- the loop

def _stack_losses(out: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([out[k].detach().float() for k in LOSS_PARTS])


@torch.no_grad()
def evaluate_loss(objective: nn.Module, loader: DataLoader, config: TrainConfig, device: torch.device) -> torch.Tensor:
    """Mean validation loss parts ``[3]`` (averaged over batches and ranks); deterministic SSL masks."""
    objective.eval()
    totals = torch.zeros(len(LOSS_PARTS), device=device)
    n_batches = 0
    generator = torch.Generator().manual_seed(config.seed)
    with rng_state_preserved():
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device, config.amp):
                if isinstance(objective, ContrastiveObjective):
                    out = objective(batch, monitor_local=True)
                elif isinstance(objective, MaskedECGObjective):
                    out = objective(batch, generator=generator)
                else:
                    out = objective(batch)
            totals += _stack_losses(out)
            n_batches += 1
    objective.train()
    return mean_over_ranks(totals / max(n_batches, 1))


def fit(config: TrainConfig) -> Path:
    """Train ``config.objective`` and return the run directory (see the module docstring for its layout)."""
    device = resolve_device(config.device)
    dist_info = init_distributed(device)
    try:
        return _fit(config, device, dist_info)
    finally:
        cleanup_distributed()


def _fit(config: TrainConfig, device: torch.device, dist_info: DistInfo) -> Path:
    run_dir = Path(config.run_dir)
    ckpt_dir, last = run_dir / "checkpoints", run_dir / "checkpoints" / "last.pt"
    resuming = config.resume and last.exists()
    if resuming:
        _check_resumable(config, read_config(run_dir))
    elif last.exists():
        raise ValueError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another run_dir")

    seed_everything(config.seed)
    model_config = ModelConfig.preset(config.model)
    model = PTACLModel(model_config)  # identical initial weights for every arm of one seed
    need_data = config.objective != "none" and config.epochs > 0  # else: only the initial weights are saved
    train_set, val_set = _datasets(config, dist_info) if need_data else (None, None)
    objective = build_objective(model, config, train_set).to(device)

    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(_config_record(config, model_config, dist_info.world_size),
                                                        indent=2))
    if not need_data:
        if dist_info.is_main:
            MetricsLog(run_dir / "metrics" / "steps.csv", STEP_COLUMNS, None)
            MetricsLog(run_dir / "metrics" / "epochs.csv", EPOCH_COLUMNS, None)
            save_checkpoint(last, {"model": model.state_dict(), "epoch": 0, "step": 0})
        return run_dir
    assert train_set is not None

    train_loader = make_loader(train_set, config, dist_info, device, train=True)
    val_loader = make_loader(val_set, config, dist_info, device, train=False) if val_set is not None else None
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(objective, config.weight_decay), lr=config.lr,
                                  betas=(0.9, 0.95), fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        warmup_cosine, warmup_steps=max(1, round(config.warmup_epochs * steps_per_epoch)), total_steps=total_steps))

    start_epoch, step = 1, 0
    if resuming:
        state = load_checkpoint(last, map_location=device)
        model.load_state_dict(state["model"])
        objective.load_state_dict({**objective.state_dict(), **state["objective_extra"]})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
    torch.manual_seed(config.seed + dist_info.rank)  # per-rank stream for masks and dropout
    if resuming:
        rng = state["rng"]
        restore_rng_state(rng[dist_info.rank] if len(rng) == dist_info.world_size else rng[0])

    done_epochs = start_epoch - 1 if resuming else None
    steps_log = MetricsLog(run_dir / "metrics" / "steps.csv", STEP_COLUMNS, done_epochs) if dist_info.is_main else None
    epochs_log = MetricsLog(run_dir / "metrics" / "epochs.csv", EPOCH_COLUMNS, done_epochs) if dist_info.is_main else None

    trainer: nn.Module = objective
    if dist_info.distributed:
        trainer = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.objective in ("ecg_ssl", "supervised"))  # the CMR side idles there
    trainer.train()
    batch_samples = config.batch_size * dist_info.world_size

    for epoch in range(start_epoch, config.epochs + 1):
        train_loader.sampler.set_epoch(epoch)
        epoch_start = time.perf_counter()
        pending: list[torch.Tensor] = []
        pending_lr: list[float] = []
        chunk_start, epoch_sums = time.perf_counter(), torch.zeros(len(LOSS_PARTS), device=device)
        bar = tqdm(train_loader, desc=f"{config.objective} epoch {epoch}/{config.epochs}", leave=False,
                   disable=not (config.progress and dist_info.is_main))
        for i, batch in enumerate(bar):
            batch = to_device(batch, device)
            with autocast(device, config.amp):
                out = trainer(batch)
            out["loss"].backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
            pending_lr.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            pending.append(_stack_losses(out))
            if len(pending) == config.log_every or i == steps_per_epoch - 1:
                losses = mean_over_ranks(torch.stack(pending)).cpu()  # one sync per flush
                epoch_sums += losses.sum(dim=0).to(device)
                rate = batch_samples * len(pending) / (time.perf_counter() - chunk_start)
                if steps_log is not None:
                    steps_log.write({"epoch": epoch, "step": step - len(pending) + j + 1,
                                     **dict(zip(LOSS_PARTS, row.tolist())), "lr": lr, "samples_per_s": rate}
                                    for j, (row, lr) in enumerate(zip(losses, pending_lr)))
                bar.set_postfix(loss=f"{losses[-1, 0]:.3f}", refresh=False)
                pending, pending_lr, chunk_start = [], [], time.perf_counter()
        train_seconds = time.perf_counter() - epoch_start
        val = evaluate_loss(objective, val_loader, config, device).cpu() if val_loader is not None else None

        rng_states = _rng_states_of_all_ranks(dist_info)
        if dist_info.is_main:
            assert epochs_log is not None
            means = (epoch_sums / steps_per_epoch).cpu().tolist()
            val_values = val.tolist() if val is not None else [float("nan")] * len(LOSS_PARTS)
            epochs_log.write([{"epoch": epoch, "step": step, **dict(zip(LOSS_PARTS, means)),
                               **{f"val_{k}": v for k, v in zip(LOSS_PARTS, val_values)},
                               "lr": optimizer.param_groups[0]["lr"],
                               "samples_per_s": batch_samples * steps_per_epoch / train_seconds,
                               "seconds": time.perf_counter() - epoch_start}])
            state = {"model": model.state_dict(), "objective_extra": _extra_state(objective),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "epoch": epoch, "step": step, "rng": rng_states}
            if config.keep_epoch_checkpoints:
                save_checkpoint(ckpt_dir / f"epoch_{epoch:03d}.pt", state)
            save_checkpoint(last, state)
            if config.progress:
                tqdm.write(f"[{config.objective}] epoch {epoch}/{config.epochs}  loss {means[0]:.4f}"
                           + (f"  val {val_values[0]:.4f}" if val is not None else ""))
        barrier()
    return run_dir


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only (not on biases, norms or the mask token)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def _extra_state(objective: nn.Module) -> dict[str, torch.Tensor]:
    """The objective's own weights and buffers (the model's are saved separately)."""
    return {k: v for k, v in objective.state_dict().items() if not k.startswith("model.")}


def _rng_states_of_all_ranks(dist_info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (collective under DDP), so a resumed job restores each one."""
    state = capture_rng_state()
    if not dist_info.distributed:
        return [state]
    states: list[Any] = [None] * dist_info.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def _check_resumable(config: TrainConfig, saved: TrainConfig) -> None:
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUMABLE_CHANGES and getattr(config, f.name) != getattr(saved, f.name)]
    if changed:
        raise ValueError(f"cannot resume {config.run_dir}: its saved config differs in {changed}")
