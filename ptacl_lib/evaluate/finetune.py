"""Fine-tuning evaluation: start from a run's ECG encoder, train it with a linear phenotype head, score on test.

The linear probe measures what a frozen embedding holds; fine-tuning measures how good a
starting point the pretrained encoder is. It is the training loop's own ``supervised`` objective
started from the run's weights (``TrainConfig.init_from``): the same parameter groups, clipping,
schedule, checkpoints and resume as every arm, written to ``<run_dir>/finetune/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import Cohort, PTACLDataset, collate, open_cohort
from ..data.schema import PHENOTYPES
from ..runs import checkpoint_path, load_run, read_config, run_preprocess_config
from ..runtime import autocast, load_checkpoint, resolve_device
from ..train import PhenotypeObjective, TrainConfig, fit, train_phenotype_stats
from ..train_config import INPUT_SETTINGS
from .regression import ProbeResult

FINETUNE_DIR = "finetune"


@dataclass(frozen=True)
class FinetuneConfig:
    """A short, fixed fine-tuning budget (the same for every arm)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    seed: int = 0
    device: str = "auto"


def finetune(run_dir: str | Path, cohort: Cohort | str | Path,
             config: FinetuneConfig = FinetuneConfig()) -> ProbeResult:
    """Fine-tune the run's model plus a new linear head on the train split (resumably, in
    ``<run_dir>/finetune``); return test predictions in physical units (``ProbeResult`` without alphas)."""
    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    source = read_config(run_dir)
    tuned_dir = fit(TrainConfig(
        manifest=str(cohort.manifest_path), run_dir=str(Path(run_dir) / FINETUNE_DIR), objective="supervised",
        **{name: getattr(source, name) for name in INPUT_SETTINGS},
        init_from=str(run_dir), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, warmup_epochs=config.warmup_epochs, seed=config.seed, device=config.device,
        resume=True, progress=False))
    device = resolve_device(config.device)
    preprocess = run_preprocess_config(run_dir)
    train_set = PTACLDataset(cohort, "train", config=preprocess, progress=False)
    test_set = PTACLDataset(cohort, "test", config=preprocess, progress=False)
    model, _ = load_run(tuned_dir, device=str(device))
    objective = PhenotypeObjective(model, *train_phenotype_stats(train_set)).to(device)
    extra = load_checkpoint(checkpoint_path(tuned_dir), map_location=device)["objective_extra"]
    objective.load_state_dict({**objective.state_dict(), **extra})
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
