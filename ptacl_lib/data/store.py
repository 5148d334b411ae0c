"""The cohort array store: memory-mappable ``.npy`` files beside the manifest.

Layout of a cohort directory::

    manifest.csv          one row per subject (see ``schema``); ecg_path/cmr_path = "array:INDEX"
    arrays/store.json     metadata: sampling_rate, n_samples, n_frames, image_size, leads, extras
    arrays/ecg.npy        float32 [N, 12, n_samples], millivolts
    arrays/cmr.npy        uint8   [N, T, H, W], intensity * 255; [N, S, T, H, W] with S > 1 short-axis
                          slices (base to apex)
    arrays/<extra>.npy    optional per-subject arrays [N, ...] (e.g. volumes, true R peaks)

Rows are written in place through ``numpy.lib.format.open_memmap``, so a writer never holds
the cohort in memory and readers map it lazily.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from .schema import LEADS

ECG_FILE = "ecg.npy"
CMR_FILE = "cmr.npy"
META_FILE = "store.json"


@dataclass
class StoreMeta:
    """What a reader needs to interpret the arrays."""

    n_subjects: int
    sampling_rate: float
    n_samples: int
    n_frames: int
    image_size: tuple[int, int]
    leads: tuple[str, ...] = LEADS
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"shape": [...], "dtype": str}
    attrs: dict[str, Any] = field(default_factory=dict)  # free-form provenance (generator version, seed, ...)
    n_slices: int = 1  # short-axis slices per cine; 1: cmr.npy is [N, T, H, W] (as every store before slices)

    @property
    def cine_shape(self) -> tuple[int, ...]:
        """One subject's cine in ``cmr.npy``: ``(T, H, W)``, or ``(S, T, H, W)`` with several slices."""
        slices = (self.n_slices,) if self.n_slices > 1 else ()
        return (*slices, self.n_frames, *tuple(self.image_size))


class ArrayStoreWriter:
    """Create a store of ``n_subjects`` rows and fill it row by row."""

    def __init__(self, root: str | Path, meta: StoreMeta, overwrite: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        mode = "w+" if overwrite or not (self.root / ECG_FILE).exists() else "r+"
        n = meta.n_subjects
        self.ecg = open_memmap(self.root / ECG_FILE, mode=mode, dtype=np.float32,
                               shape=(n, len(meta.leads), meta.n_samples))
        self.cmr = open_memmap(self.root / CMR_FILE, mode=mode, dtype=np.uint8,
                               shape=(n, *meta.cine_shape))
        self.extras = {
            name: open_memmap(self.root / f"{name}.npy", mode=mode, dtype=np.dtype(spec["dtype"]),
                              shape=(n, *spec["shape"]))
            for name, spec in meta.extras.items()
        }
        (self.root / META_FILE).write_text(json.dumps(asdict(meta), indent=2))

    def write(self, index: int, ecg: np.ndarray, cmr: np.ndarray, **extras: np.ndarray) -> None:
        """Write one subject. ``cmr`` is float in [0, 1] (quantised to uint8) or already uint8."""
        self.ecg[index] = ecg
        if cmr.dtype != np.uint8:
            cmr = np.clip(np.rint(cmr * 255.0), 0, 255).astype(np.uint8)
        self.cmr[index] = cmr
        for name, value in extras.items():
            self.extras[name][index] = value

    def flush(self) -> None:
        """Push written rows to disk."""
        for arr in (self.ecg, self.cmr, *self.extras.values()):
            arr.flush()


class ArrayStore:
    """Read-only, memory-mapped view of a store."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"no array store at {self.root} (missing {META_FILE})")
        raw = json.loads(meta_path.read_text())
        raw["image_size"] = tuple(raw["image_size"])
        raw["leads"] = tuple(raw["leads"])
        self.meta = StoreMeta(**raw)
        self.ecg = np.load(self.root / ECG_FILE, mmap_mode="r")
        self.cmr = np.load(self.root / CMR_FILE, mmap_mode="r")
        self.extras = {name: np.load(self.root / f"{name}.npy", mmap_mode="r") for name in self.meta.extras}

    def __len__(self) -> int:
        return int(self.ecg.shape[0])
