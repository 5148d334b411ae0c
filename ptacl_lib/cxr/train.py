"""Teacher-forced training of the Show-Attend-Tell captioner, with the library's runtime conventions."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..runtime import autocast, load_checkpoint, resolve_device, save_checkpoint, seed_everything, to_device
from .model import CaptionerConfig, ShowAttendTell, caption_loss
from .vocab import Vocabulary

CHECKPOINT_NAME = "captioner.pt"


@dataclass(frozen=True)
class CaptionTrainConfig:
    """Optimisation settings (model sizes live in ``CaptionerConfig``)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    alpha_c: float = 0.1  # weight of the doubly stochastic attention penalty (mean over cells)
    grad_clip: float = 5.0
    max_len: int = 40  # tokens per caption including <start> and <end>
    device: str = "auto"
    seed: int = 0


@dataclass
class TrainedCaptioner:
    """A trained model, its vocabulary and the per-epoch loss history."""

    model: ShowAttendTell
    vocab: Vocabulary
    history: list[dict[str, float]] = field(default_factory=list)


def encode_captions(captions: Sequence[str], vocab: Vocabulary, max_len: int) -> torch.Tensor:
    """Captions -> ``[N, L]`` int64, padded with ``vocab.pad`` to the longest (at most ``max_len``)."""
    ids = [vocab.encode(c, max_len) for c in captions]
    out = torch.full((len(ids), max(map(len, ids))), vocab.pad, dtype=torch.long)
    for i, seq in enumerate(ids):
        out[i, : len(seq)] = torch.tensor(seq)
    return out


def train_captioner(images: np.ndarray, captions: Sequence[str], config: CaptionTrainConfig = CaptionTrainConfig(),
                    model_config: CaptionerConfig | None = None, vocab: Vocabulary | None = None,
                    run_dir: str | Path | None = None, log: bool = False) -> TrainedCaptioner:
    """Train on ``images`` [N, H, W] in [0, 1] and their captions; checkpoint to ``run_dir`` if given.

    ``model_config`` defaults to ``CaptionerConfig`` sized for the vocabulary and image size.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    seed_everything(config.seed)
    device = resolve_device(config.device)
    vocab = vocab or Vocabulary.build(captions)
    model_config = model_config or CaptionerConfig(vocab_size=len(vocab), image_size=images.shape[-1])
    if model_config.vocab_size != len(vocab):
        raise ValueError(f"model_config.vocab_size={model_config.vocab_size} but the vocabulary has {len(vocab)}")
    model = ShowAttendTell(model_config).to(device)
    data = TensorDataset(torch.from_numpy(np.asarray(images, np.float32)),
                         encode_captions(captions, vocab, config.max_len))
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * len(loader),
                                                   pct_start=0.15)
    result = TrainedCaptioner(model, vocab)
    _fit(result, loader, optimizer, schedule, config, device, run_dir, log)
    model.eval()
    return result


def _fit(result: TrainedCaptioner, loader: DataLoader, optimizer: torch.optim.Optimizer,
         schedule: torch.optim.lr_scheduler.LRScheduler, config: CaptionTrainConfig, device: torch.device,
         run_dir: str | Path | None, log: bool) -> None:
    """The epoch loop of ``train_captioner``."""
    model, vocab = result.model, result.vocab
    for epoch in range(config.epochs):
        model.train()
        t0, sums, n = time.perf_counter(), {"loss": 0.0, "cross_entropy": 0.0, "attention_penalty": 0.0}, 0
        for images_b, captions_b in loader:
            batch = to_device({"images": images_b, "captions": captions_b}, device)
            with autocast(device):
                logits, alphas = model(batch["images"], batch["captions"])
            loss, parts = caption_loss(logits.float(), alphas.float(), batch["captions"], vocab.pad, config.alpha_c)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            schedule.step()
            sums["loss"] += float(loss.detach()) * len(images_b)
            for k, v in parts.items():
                sums[k] += v * len(images_b)
            n += len(images_b)
        record = {"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
        result.history.append(record)
        if log:
            print(f"epoch {record['epoch']}: loss {record['loss']:.3f} "
                  f"(ce {record['cross_entropy']:.3f}) {record['seconds']:.1f}s")
        if run_dir is not None:
            save_captioner(Path(run_dir) / CHECKPOINT_NAME, result, config, epoch + 1)


def save_captioner(path: str | Path, trained: TrainedCaptioner, config: CaptionTrainConfig, epoch: int) -> Path:
    """Checkpoint the weights, both configs, the vocabulary and the history (atomic write)."""
    path = Path(path)
    state = {"model": trained.model.state_dict(), "model_config": dataclasses.asdict(trained.model.config),
             "train_config": dataclasses.asdict(config), "vocab": list(trained.vocab.words),
             "history": trained.history, "epoch": epoch}
    save_checkpoint(path, state)
    path.with_name("history.json").write_text(json.dumps(trained.history, indent=1))
    return path


def load_captioner(path: str | Path, device: str = "auto") -> TrainedCaptioner:
    """Rebuild a ``TrainedCaptioner`` (in eval mode) from ``save_captioner``'s checkpoint."""
    state = load_checkpoint(path)
    cfg = state["model_config"]
    model_config = CaptionerConfig(**{**cfg, "encoder_channels": tuple(cfg["encoder_channels"])})
    model = ShowAttendTell(model_config)
    model.load_state_dict(state["model"])
    model.to(resolve_device(device)).eval()
    return TrainedCaptioner(model, Vocabulary(tuple(state["vocab"])), list(state["history"]))
