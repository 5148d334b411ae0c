"""The torch ``Dataset`` over a preprocessed cohort, and its ``collate``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import PreprocessedCohort, PreprocessingNotice
from .cohort import Cohort
from .preprocess import PreprocessConfig


class PTACLDataset(Dataset):
    """Per subject: preprocessed ECG ``[12, L]``, cine ``[S, T, H, W]`` in [0, 1], R peaks, phenotypes, subject id.

    Subjects that failed preprocessing are left out (with a warning naming how many); the
    rest of the split is served from the memory-mapped cache.
    """

    def __init__(self, cohort: Cohort, split: str | None = None,
                 config: PreprocessConfig = PreprocessConfig(), progress: bool = True) -> None:
        self.cohort = cohort
        self.split = split
        self.config = config
        self.cache = PreprocessedCohort.build_or_load(cohort, config, progress=progress)
        rows = cohort.indices(split)
        keep = self.cache.ok[rows]
        if not keep.all():
            warnings.warn(f"{int((~keep).sum())} subject(s) of split {split!r} were skipped in preprocessing; "
                          f"see {self.cache.root / 'errors.csv'}", PreprocessingNotice, stacklevel=2)
        self.rows = rows[keep]
        self.phenotypes = cohort.phenotypes(self.rows)
        self.subject_ids = cohort.table["subject_id"].to_numpy()[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i = int(self.rows[k])
        return {
            "ecg": torch.from_numpy(np.array(self.cache.ecg[i])),
            "cmr": torch.from_numpy(np.array(self.cache.cmr[i])).float().div_(255.0),
            "rpeaks": torch.from_numpy(self.cache.rpeaks_of(i)),
            "phenotypes": torch.from_numpy(self.phenotypes[k]),
            "subject_id": str(self.subject_ids[k]),
            "index": i,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items; R peaks are padded with -1 to the longest in the batch."""
    n_peaks = max(len(it["rpeaks"]) for it in items)
    rpeaks = torch.full((len(items), n_peaks), -1, dtype=torch.int64)
    for b, it in enumerate(items):
        rpeaks[b, : len(it["rpeaks"])] = it["rpeaks"]
    return {
        "ecg": torch.stack([it["ecg"] for it in items]),
        "cmr": torch.stack([it["cmr"] for it in items]),
        "rpeaks": rpeaks,
        "phenotypes": torch.stack([it["phenotypes"] for it in items]),
        "subject_id": [it["subject_id"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
    }
