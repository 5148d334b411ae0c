"""Pretraining loop: one file, every objective, CPU or CUDA, one process or many (``torchrun``).

    ptacl train --manifest runs/cohort --run-dir runs/ptacl_s0 --objective ptacl
    torchrun --nproc_per_node 4 -m ptacl_lib.cli train --manifest ... --run-dir ... --model base

Objectives (every arm uses the same encoders, data and budget; the registry is ``ptacl_lib.arms``):

* ``ptacl``      ``losses.ptacl_loss``: global InfoNCE + ``lambda_local`` x local phase contrast
                 (``docs/design.md`` §1)
* ``global``     the global (CLIP-style) term only
* ``ecg_ssl``    ECG-only spatio-temporal masked reconstruction: random (lead, time-patch) cells
                 are zeroed; a linear decoder on the projected tokens rebuilds them (MSE on those cells)
* ``supervised`` ECG -> phenotypes standardised with the train split's mean/std (linear head on
                 the projected ECG embedding; MSE over the phenotypes that are present)
* ``none``       random initialisation, written as the only checkpoint (an evaluation baseline)

The run directory's layout is ``ptacl_lib.runs``. Checkpoints: ``last.pt`` every epoch, ``best.pt``
at the lowest validation loss, and ``epoch_NNN.pt`` every ``keep_every`` epochs when asked.
``resume=True`` continues from ``last.pt`` with the model, optimiser, scheduler and RNG state; the
sampler is re-seeded per epoch, so a resumed run repeats an uninterrupted one's numbers exactly (on CPU).

Under DDP ``batch_size`` is per process; the global loss draws negatives from every rank.
``accumulate`` > 1 sums gradients over that many batches per optimiser step: a larger effective batch
for the optimiser, but *not* more InfoNCE negatives (each batch's loss sees only its own batch; only
the DDP gather adds negatives).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from .data import PreprocessConfig, PTACLDataset, collate, open_cohort
from .data.schema import PHENOTYPES
from .losses import global_contrastive_loss, ptacl_loss
from .models import ModelConfig, PTACLModel
from .runs import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    METRICS_DIR,
    checkpoint_path,
    config_record,
    model_changes,
    read_config,
    write_config,
)
from .runtime import (
    DistInfo,
    autocast,
    available_cpus,
    barrier,
    capture_rng_state,
    cleanup_distributed,
    configure_threads,
    init_distributed,
    load_checkpoint,
    mean_over_ranks,
    resolve_device,
    restore_rng_state,
    rng_state_preserved,
    save_checkpoint,
    seed_everything,
    to_device,
)
from .train_config import TrainConfig, resume_conflicts

__all__ = ["TrainConfig", "build_objective", "fit", "make_loader", "warmup_cosine", "ContrastiveObjective",
           "MaskedECGObjective", "PhenotypeObjective", "train_phenotype_stats"]

LOSS_PARTS: tuple[str, ...] = ("loss", "loss_global", "loss_local")
STEP_COLUMNS: tuple[str, ...] = ("epoch", "step", *LOSS_PARTS, "lr", "samples_per_s")
EPOCH_COLUMNS: tuple[str, ...] = ("epoch", "step", *LOSS_PARTS, *(f"val_{k}" for k in LOSS_PARTS),
                                  "lr", "samples_per_s", "seconds")


# ----------------------------------------------------------------------------- objectives

class ContrastiveObjective(nn.Module):
    """``ptacl`` (``losses.ptacl_loss``) or, with ``with_local=False``, the global term alone."""

    def __init__(self, model: PTACLModel, with_local: bool = True, temperature_global: float = 0.1,
                 temperature_local: float = 0.1, lambda_local: float = 1.0, local_negatives: str = "within") -> None:
        super().__init__()
        self.model = model
        self.with_local = with_local
        self.loss_options = {"temperature_global": temperature_global, "temperature_local": temperature_local,
                             "lambda_local": lambda_local, "local_negatives": local_negatives}

    def forward(self, batch: dict[str, Any], monitor_local: bool = False) -> dict[str, torch.Tensor]:
        if not (self.with_local or monitor_local):
            ecg, cmr = self.model.embed_ecg(batch["ecg"]), self.model.embed_cmr(batch["cmr"])
            loss_global = global_contrastive_loss(ecg, cmr, self.loss_options["temperature_global"])
            return {"loss": loss_global, "loss_global": loss_global, "loss_local": _nan_like(loss_global)}
        out = self.model(batch)
        parts = ptacl_loss(out["ecg_global"], out["cmr_global"], out["ecg_phase"], out["cmr_frames"],
                           out["phase_mask"], **self.loss_options)
        return {"loss": parts.total if self.with_local else parts.global_, "loss_global": parts.global_,
                "loss_local": parts.local}


class MaskedECGObjective(nn.Module):
    """ECG-only self-supervision by spatio-temporal masking (after ST-MEM, Na et al., ICLR 2024).

    A random ``mask_ratio`` of the (lead, time-patch) cells of every recording is set to zero in the
    input; a linear decoder on the projected output tokens reconstructs the raw samples of every cell,
    and the loss is their MSE over the masked cells (1.0 = predicting zero on standardised leads).
    Masking whole time patches (all leads at once) never left that trivial solution on the demo
    cohort (``docs/design.md`` §5), so a masked lead is recovered from the other leads and from time.
    """

    def __init__(self, model: PTACLModel, mask_ratio: float = 0.5) -> None:
        super().__init__()
        self.model = model
        enc = model.ecg_encoder
        self.mask_ratio = mask_ratio
        self.decoder = nn.Linear(model.config.embed_dim, enc.leads * enc.patch)

    def cell_mask(self, batch_size: int, n_patches: int, generator: torch.Generator | None = None,
                  device: torch.device | None = None) -> torch.Tensor:
        """``[B, N, leads]`` bool: exactly ``round(mask_ratio * N * leads)`` masked cells per recording."""
        leads = self.model.ecg_encoder.leads
        scores = torch.rand(batch_size, n_patches * leads, generator=generator,
                            device=generator.device if generator else device)
        k = max(1, round(self.mask_ratio * n_patches * leads))
        return (scores.argsort(dim=1).argsort(dim=1) < k).reshape(batch_size, n_patches, leads).to(device)

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        enc = self.model.ecg_encoder
        ecg = batch["ecg"]
        b, leads, length = ecg.shape
        n = length // enc.patch
        cells = self.cell_mask(b, n, generator, ecg.device)
        hidden = cells.transpose(1, 2).repeat_interleave(enc.patch, dim=2)  # [B, leads, N * P]
        tokens = enc.encode_patches(enc.embed_patches(ecg[..., : n * enc.patch].masked_fill(hidden, 0.0)))
        recon = self.decoder(self.model.ecg_head(tokens)).float().reshape(b, n, leads, enc.patch)
        target = enc.patch_targets(ecg).float().reshape(b, n, leads, enc.patch)
        loss = F.mse_loss(recon[cells], target[cells])
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
        return ContrastiveObjective(model, with_local=config.objective == "ptacl",
                                    temperature_global=config.temperature_global,
                                    temperature_local=config.temperature_local, lambda_local=config.lambda_local,
                                    local_negatives=config.local_negatives)
    if config.objective == "ecg_ssl":
        return MaskedECGObjective(model, config.mask_ratio)
    if train_set is None:
        raise ValueError("the supervised objective needs the train split for its phenotype standardisation")
    return PhenotypeObjective(model, *train_phenotype_stats(train_set))


# ----------------------------------------------------------------------------- metrics

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


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """``num_workers``, with -1 resolved: none on CPU (decoding is cheap next to a CPU step), else up to 8."""
    if config.num_workers >= 0:
        return config.num_workers
    if device.type != "cuda":
        return 0
    return max(1, min(8, available_cpus() // max(1, torch.cuda.device_count()) - 1))


def make_loader(dataset: PTACLDataset, config: TrainConfig, dist_info: DistInfo, device: torch.device,
                train: bool) -> DataLoader:
    """A DataLoader over a DistributedSampler (also for one process: one seeded shuffle per epoch);
    pinned memory and persistent workers on CUDA."""
    sampler = DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=train, seed=config.seed, drop_last=False)
    workers = loader_workers(config, device)
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=workers, pin_memory=device.type == "cuda", drop_last=train,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)


def _datasets(config: TrainConfig, dist_info: DistInfo,
              preprocess: PreprocessConfig) -> tuple[PTACLDataset, PTACLDataset | None]:
    """Train and val datasets; rank 0 builds the preprocessing cache before the others map it."""
    cohort = open_cohort(config.manifest)
    show = config.progress and dist_info.is_main
    if not dist_info.is_main:
        barrier()
    train_set = PTACLDataset(cohort, "train", config=preprocess, progress=show)
    val_set = PTACLDataset(cohort, "val", config=preprocess, progress=False)
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
    """Train ``config.objective`` and return the run directory (``ptacl_lib.runs`` has its layout)."""
    configure_threads(config.threads)
    device = resolve_device(config.device)
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    dist_info = init_distributed(device)
    try:
        return _fit(config, device, dist_info)
    finally:
        if not joined:  # a caller that set the group up (``study.train_arms``) keeps it for its next run
            cleanup_distributed()


def run_inputs(config: TrainConfig) -> tuple[PreprocessConfig, ModelConfig]:
    """The preprocessing and model of a run: its input geometry (``ptacl_lib.geometry``) given to both, then the
    run's own ``phase_pooling`` and ``ecg_patch_ms`` when set."""
    geometry = config.geometry
    assert geometry is not None  # resolved by TrainConfig
    model = ModelConfig.preset(config.model).at_geometry(geometry)
    chosen = {name: getattr(config, name) for name in ("phase_pooling", "ecg_patch_ms") if getattr(config, name)}
    return PreprocessConfig(geometry=geometry, mains_hz=config.mains_hz), dataclasses.replace(model, **chosen)


def _initial_model(config: TrainConfig) -> tuple[PTACLModel, ModelConfig]:
    """The seeded initial model (identical for every arm of one seed), or ``init_from``'s trained weights."""
    model_config = run_inputs(config)[1]
    changed = model_changes(config.init_from, model_config) if config.init_from else []
    if changed:
        raise ValueError(f"init_from={config.init_from} was trained with another model than the {config.model!r} "
                         f"preset (it differs in {changed})")
    changed = read_config(config.init_from).geometry.changes(config.geometry) if config.init_from else []
    if changed:
        raise ValueError(f"init_from={config.init_from} was trained on another input geometry (it differs in "
                         f"{changed}); pass the geometry it was trained on (--geometry and the overrides)")
    seed_everything(config.seed)
    model = PTACLModel(model_config)
    if config.init_from:
        model.load_state_dict(load_checkpoint(checkpoint_path(config.init_from))["model"])
    return model, model_config


def _optimizer_steps(n_batches: int, accumulate: int) -> list[int]:
    """How many batches each optimiser step of one epoch sums (the last step takes the remainder)."""
    full, rest = divmod(n_batches, accumulate)
    return [accumulate] * full + ([rest] if rest else [])


def _fit(config: TrainConfig, device: torch.device, dist_info: DistInfo) -> Path:
    run_dir = Path(config.run_dir)
    last = checkpoint_path(run_dir, LAST_CHECKPOINT)
    resuming = config.resume and last.exists()
    if resuming:
        _check_resumable(config, run_dir)
    elif last.exists():
        raise ValueError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another run_dir")

    model, model_config = _initial_model(config)
    preprocess = run_inputs(config)[0]
    need_data = config.objective != "none" and config.epochs > 0  # else: only the initial weights are saved
    if dist_info.is_main:
        write_config(run_dir, config_record(config, model_config, preprocess, dist_info.world_size))
    if not need_data:
        if dist_info.is_main:
            MetricsLog(run_dir / METRICS_DIR / "steps.csv", STEP_COLUMNS, None)
            MetricsLog(run_dir / METRICS_DIR / "epochs.csv", EPOCH_COLUMNS, None)
            save_checkpoint(last, {"model": model.state_dict(), "epoch": 0, "step": 0})
        return run_dir

    train_set, val_set = _datasets(config, dist_info, preprocess)
    objective = build_objective(model, config, train_set).to(device)
    if device.type == "cuda":
        model.cmr_encoder.frame_encoder.use_channels_last()

    train_loader = make_loader(train_set, config, dist_info, device, train=True)
    val_loader = make_loader(val_set, config, dist_info, device, train=False) if val_set is not None else None
    groups = _optimizer_steps(len(train_loader), config.accumulate)
    steps_per_epoch = len(groups)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(param_groups(objective, config.weight_decay), lr=config.lr,
                                  betas=(0.9, 0.95), fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        warmup_cosine, warmup_steps=max(1, round(config.warmup_epochs * steps_per_epoch)), total_steps=total_steps))

    start_epoch, step, best_val = 1, 0, math.inf
    if resuming:
        state = load_checkpoint(last, map_location=device)
        model.load_state_dict(state["model"])
        objective.load_state_dict({**objective.state_dict(), **state["objective_extra"]})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best_val = state["epoch"] + 1, state["step"], state.get("best_val", math.inf)
    torch.manual_seed(config.seed + dist_info.rank)  # per-rank stream for masks and dropout
    if resuming:
        rng = state["rng"]
        restore_rng_state(rng[dist_info.rank] if len(rng) == dist_info.world_size else rng[0])

    done_epochs = start_epoch - 1 if resuming else None
    logs = ((MetricsLog(run_dir / METRICS_DIR / "steps.csv", STEP_COLUMNS, done_epochs),
             MetricsLog(run_dir / METRICS_DIR / "epochs.csv", EPOCH_COLUMNS, done_epochs))
            if dist_info.is_main else None)

    ddp = DistributedDataParallel(
        objective, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=config.objective in ("ecg_ssl", "supervised")  # the CMR side idles there
    ) if dist_info.distributed else None
    trainer: nn.Module = ddp if ddp is not None else objective
    if config.compile:
        trainer = torch.compile(trainer)  # weights stay shared with ``model``, whose state_dict is saved
    trainer.train()
    batch_samples = config.batch_size * dist_info.world_size

    for epoch in range(start_epoch, config.epochs + 1):
        train_loader.sampler.set_epoch(epoch)
        epoch_start = time.perf_counter()
        pending: list[torch.Tensor] = []
        pending_lr: list[float] = []
        chunk_start, chunk_samples = time.perf_counter(), 0
        epoch_sums = torch.zeros(len(LOSS_PARTS), device=device)
        batches = iter(tqdm(train_loader, desc=f"{config.objective} epoch {epoch}/{config.epochs}", leave=False,
                            disable=not (config.progress and dist_info.is_main)))
        for i, n_micro in enumerate(groups):
            step_losses = torch.zeros(len(LOSS_PARTS), device=device)
            for j in range(n_micro):
                batch = to_device(next(batches), device)
                defer_sync = ddp is not None and j < n_micro - 1  # all-reduce once per optimiser step
                with (ddp.no_sync() if defer_sync else nullcontext()), autocast(device, config.amp):
                    out = trainer(batch)
                (out["loss"] / n_micro).backward()
                step_losses += _stack_losses(out) / n_micro
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
            pending_lr.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            chunk_samples += batch_samples * n_micro
            pending.append(step_losses)
            if len(pending) == config.log_every or i == steps_per_epoch - 1:
                losses = mean_over_ranks(torch.stack(pending)).cpu()  # one sync per flush
                epoch_sums += losses.sum(dim=0).to(device)
                rate = chunk_samples / (time.perf_counter() - chunk_start)
                if logs is not None:
                    logs[0].write({"epoch": epoch, "step": step - len(pending) + k + 1,
                                   **dict(zip(LOSS_PARTS, row.tolist())), "lr": lr, "samples_per_s": rate}
                                  for k, (row, lr) in enumerate(zip(losses, pending_lr)))
                pending, pending_lr, chunk_start, chunk_samples = [], [], time.perf_counter(), 0
        for _ in batches:  # already drained: this only closes the progress bar
            pass
        train_seconds = time.perf_counter() - epoch_start
        val = evaluate_loss(objective, val_loader, config, device).cpu() if val_loader is not None else None

        rng_states = _rng_states_of_all_ranks(dist_info)
        if logs is not None:
            means = (epoch_sums / steps_per_epoch).cpu().tolist()
            val_values = val.tolist() if val is not None else [float("nan")] * len(LOSS_PARTS)
            logs[1].write([{"epoch": epoch, "step": step, **dict(zip(LOSS_PARTS, means)),
                            **{f"val_{k}": v for k, v in zip(LOSS_PARTS, val_values)},
                            "lr": optimizer.param_groups[0]["lr"],
                            "samples_per_s": batch_samples * len(train_loader) / train_seconds,
                            "seconds": time.perf_counter() - epoch_start}])
            improved = val is not None and val_values[0] < best_val
            best_val = val_values[0] if improved else best_val
            state = {"model": model.state_dict(), "objective_extra": _extra_state(objective),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "epoch": epoch, "step": step, "rng": rng_states, "best_val": best_val}
            save_epoch_checkpoints(run_dir, state, epoch, config, improved)
            if config.progress:
                tqdm.write(f"[{config.objective}] epoch {epoch}/{config.epochs}  loss {means[0]:.4f}"
                           + (f"  val {val_values[0]:.4f}" if val is not None else ""))
        barrier()
    return run_dir


def save_epoch_checkpoints(run_dir: Path, state: dict[str, Any], epoch: int, config: TrainConfig,
                           improved: bool) -> None:
    """The checkpoint policy: ``last.pt`` always, ``best.pt`` when validation improved, ``epoch_NNN.pt``
    every ``keep_every`` epochs. Only ``last.pt`` carries the optimiser state (resume needs it);
    ``best.pt`` and the kept epochs hold the weights alone."""
    weights = {k: state[k] for k in ("model", "objective_extra", "epoch", "step", "best_val")}
    if improved:
        save_checkpoint(checkpoint_path(run_dir, BEST_CHECKPOINT), weights)
    if config.keep_every and epoch % config.keep_every == 0:
        save_checkpoint(checkpoint_path(run_dir, f"epoch_{epoch:03d}.pt"), weights)
    save_checkpoint(checkpoint_path(run_dir, LAST_CHECKPOINT), state)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
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


def _check_resumable(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` with other settings or another model than it was trained with."""
    model_config = run_inputs(config)[1]
    changed = resume_conflicts(config, read_config(run_dir))
    if changed:
        raise ValueError(f"cannot resume {config.run_dir}: its saved config differs in {changed}")
    model_changed = model_changes(run_dir, model_config)
    if model_changed:
        raise ValueError(f"cannot resume {config.run_dir}: it was built with another {config.model!r} model "
                         f"(it differs in {model_changed}; written by an earlier version?); choose a new run_dir")
