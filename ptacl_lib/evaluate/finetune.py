"""Fine-tuning evaluation: start from a run's ECG encoder, train it with a linear phenotype head, score on test.

The linear probe measures what a frozen embedding holds; fine-tuning measures how good a
starting point the pretrained encoder is. The head and loss are the training module's
``supervised`` objective (``PhenotypeObjective``: MSE on phenotypes standardised with the
train split's statistics), so the fine-tuned arm and the supervised arm optimise the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import Cohort, PTACLDataset, collate, open_cohort
from ..data.schema import PHENOTYPES
from ..runtime import autocast, resolve_device, seed_everything, to_device
from ..train import PhenotypeObjective, load_run, train_phenotype_stats, warmup_cosine
from ..train import run_preprocess_config
from .regression import ProbeResult


@dataclass(frozen=True)
class FinetuneConfig:
    """A short, fixed fine-tuning budget (the same for every arm)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"


def finetune(run_dir: str | Path, cohort: Cohort | str | Path,
             config: FinetuneConfig = FinetuneConfig()) -> ProbeResult:
    """Fine-tune the run's ECG encoder and projection head plus a new linear head on the train split;
    return test predictions in physical units (``ProbeResult`` without alphas)."""
    device = resolve_device(config.device)
    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    preprocess = run_preprocess_config(run_dir)
    train_set = PTACLDataset(cohort, "train", config=preprocess, progress=False)
    test_set = PTACLDataset(cohort, "test", config=preprocess, progress=False)
    seed_everything(config.seed)
    model, _ = load_run(run_dir, device=str(device))
    objective = PhenotypeObjective(model, *train_phenotype_stats(train_set)).to(device)
    trained = (model.ecg_encoder, model.ecg_head, objective.head)  # the CMR side stays as it is
    optimizer = torch.optim.AdamW([p for m in trained for p in m.parameters()], lr=config.lr,
                                  weight_decay=config.weight_decay)
    loader = DataLoader(train_set, batch_size=min(config.batch_size, len(train_set)), shuffle=True,
                        drop_last=True, collate_fn=collate, generator=torch.Generator().manual_seed(config.seed))
    total = max(1, config.epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        warmup_cosine, warmup_steps=max(1, round(config.warmup_fraction * total)), total_steps=total))
    objective.train()
    for _ in range(config.epochs):
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device):
                loss = objective(batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
    return ProbeResult(targets=PHENOTYPES, predictions=_predict(objective, test_set, config.batch_size, device),
                       truth=np.asarray(test_set.phenotypes, dtype=np.float64), alphas=None)


@torch.no_grad()
def _predict(objective: PhenotypeObjective, dataset: PTACLDataset, batch_size: int,
             device: torch.device) -> np.ndarray:
    """Phenotype predictions in physical units, in dataset order."""
    objective.eval()
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        with autocast(device):
            standardised = objective.head(objective.model.embed_ecg(batch["ecg"].to(device))).float()
        out.append((standardised * objective.std + objective.mean).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
