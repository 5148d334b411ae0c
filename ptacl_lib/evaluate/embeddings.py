"""Pooled ECG and CMR embeddings of a trained model, per subject, saved as ``embeddings.npz``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import Cohort, PreprocessConfig, PTACLDataset, collate, open_cohort
from ..data.schema import PHENOTYPES
from ..runs import EMBEDDINGS_FILE, load_run, run_preprocess_config
from ..runtime import autocast, resolve_device, to_device

#: The splits ``embed`` covers by default: training rows are the retrieval database and the
#: probe's fitting set, test rows are queries and the scored set.
DEFAULT_SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class Embeddings:
    """One row per subject: pooled embeddings plus what evaluation needs to know about the subject."""

    ecg: np.ndarray  #: float32 [N, E] pooled ECG embedding (projection-head output)
    cmr: np.ndarray  #: float32 [N, E] pooled CMR embedding
    subject_ids: np.ndarray  #: str [N]
    split: np.ndarray  #: str [N]
    index: np.ndarray  #: int64 [N] cohort row of each subject
    phenotypes: np.ndarray  #: float32 [N, 9] in ``PHENOTYPES`` order (NaN where unknown)

    def __post_init__(self) -> None:
        n = len(self.subject_ids)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"Embeddings.{f.name} has {len(getattr(self, f.name))} rows, expected {n}")
        if self.phenotypes.ndim != 2 or self.phenotypes.shape[1] != len(PHENOTYPES):
            raise ValueError(f"phenotypes must be [N, {len(PHENOTYPES)}], got {self.phenotypes.shape}")

    def __len__(self) -> int:
        return len(self.subject_ids)

    def subset(self, split: str) -> Embeddings:
        """The rows of one split (in their stored order)."""
        keep = self.split == split
        if not keep.any():
            raise ValueError(f"no '{split}' rows in these embeddings (splits: {sorted(set(self.split))})")
        return Embeddings(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def require_phenotypes(self) -> np.ndarray:
        """The phenotype matrix, or a clear error naming the first subject with a missing value."""
        bad = ~np.isfinite(self.phenotypes)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"subject {self.subject_ids[i]} ({self.split[i]}) has no {PHENOTYPES[j]}; "
                             f"evaluation needs complete phenotypes in {sorted(set(self.split))}")
        return self.phenotypes

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (uncompressed; strings stored as unicode arrays)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        """Read what ``save`` wrote; ``path`` may be the file or its run directory."""
        path = Path(path)
        if path.is_dir():
            path = path / EMBEDDINGS_FILE
        if not path.exists():
            raise FileNotFoundError(f"embeddings not found: {path} (run ptacl_lib.evaluate.embed first)")
        with np.load(path, allow_pickle=False) as data:
            missing = [f.name for f in fields(cls) if f.name not in data]
            if missing:
                raise ValueError(f"{path} lacks arrays {missing}")
            return cls(**{f.name: data[f.name] for f in fields(cls)})


def embed(source: str | Path | torch.nn.Module, cohort: Cohort | str | Path,
          splits: str | Sequence[str] = DEFAULT_SPLITS, preprocess: PreprocessConfig | None = None,
          batch_size: int = 64, device: str = "auto", num_workers: int = 0) -> Embeddings:
    """Pooled ECG and CMR embeddings of every subject in ``splits``.

    ``source`` is a run directory (its model and preprocessing are loaded, and the result is
    saved there as ``embeddings.npz``) or a model with ``embed_ecg`` / ``embed_cmr`` (then pass
    the ``preprocess`` config it was trained with; the default ``PreprocessConfig`` otherwise).
    ``cohort`` is a ``Cohort`` or a manifest path.
    """
    dev = resolve_device(device)
    run_dir: Path | None = None
    if isinstance(source, torch.nn.Module):
        model = source.to(dev)
    else:
        run_dir = Path(source)
        model, _ = load_run(run_dir, device=str(dev))
        preprocess = preprocess if preprocess is not None else run_preprocess_config(run_dir)
    if not isinstance(cohort, Cohort):
        cohort = open_cohort(cohort)
    preprocess = preprocess if preprocess is not None else PreprocessConfig()
    parts = [_embed_split(model, cohort, s, preprocess, batch_size, dev, num_workers)
             for s in ([splits] if isinstance(splits, str) else splits)]
    result = Embeddings(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Embeddings)})
    if run_dir is not None:
        result.save(run_dir / EMBEDDINGS_FILE)
    return result


def heldout_embeddings(run_dir: str | Path, cohort: Cohort, test_cohort: Cohort, batch_size: int = 64,
                       device: str = "auto") -> Embeddings:
    """The run's embeddings of ``cohort``'s train split and of *every* subject of ``test_cohort``, labelled
    ``test``; saved in the run directory like ``embed``'s. ``index`` then refers to rows of ``test_cohort`` for
    the test rows. The held-out cohort is preprocessed with the run's settings (its own cache, per-lead scale
    from its own train split)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    model, _ = load_run(run_dir, device=str(dev))
    preprocess = run_preprocess_config(run_dir)
    train = embed(model, cohort, "train", preprocess=preprocess, batch_size=batch_size, device=str(dev))
    splits = [s for s in ("train", "val", "test") if len(test_cohort.indices(s))]
    held = embed(model, test_cohort, splits, preprocess=preprocess, batch_size=batch_size, device=str(dev))
    held = replace(held, split=np.full(len(held), "test"))
    result = Embeddings(**{f.name: np.concatenate([getattr(train, f.name), getattr(held, f.name)])
                           for f in fields(Embeddings)})
    result.save(run_dir / EMBEDDINGS_FILE)
    return result


@torch.no_grad()
def _embed_split(model: torch.nn.Module, cohort: Cohort, split: str, preprocess: PreprocessConfig,
                 batch_size: int, device: torch.device, num_workers: int) -> Embeddings:
    dataset = PTACLDataset(cohort, split, config=preprocess, progress=False)
    if len(dataset) == 0:
        raise ValueError(f"split '{split}' of {cohort} is empty; nothing to embed")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    ecg, cmr, ids, index, phen = [], [], [], [], []
    try:
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device):
                ecg.append(model.embed_ecg(batch["ecg"]).float().cpu().numpy())
                cmr.append(model.embed_cmr(batch["cmr"]).float().cpu().numpy())
            ids += list(batch["subject_id"])
            index.append(batch["index"].cpu().numpy())
            phen.append(batch["phenotypes"].cpu().numpy())
    finally:
        model.train(was_training)
    return Embeddings(ecg=np.concatenate(ecg).astype(np.float32), cmr=np.concatenate(cmr).astype(np.float32),
                      subject_ids=np.asarray(ids, dtype=str), split=np.full(len(ids), split),
                      index=np.concatenate(index).astype(np.int64),
                      phenotypes=np.concatenate(phen).astype(np.float32))
