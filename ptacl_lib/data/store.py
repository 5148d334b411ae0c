"""The cohort array store: memory-mappable ``.npy`` files beside the manifest.

Layout of a cohort directory::

    manifest.csv          one row per subject (see ``schema``); ecg_path/cmr_path = "array:INDEX"
    arrays/store.json     metadata: the geometry stored (``ptacl_lib.geometry``), n_samples, leads, extras
    arrays/ecg.npy        float32 [N, 12, n_samples], millivolts, at the geometry's ``ecg_hz``
    arrays/cmr.npy        uint8   [N, S, T, H, W], intensity * 255: S short-axis slices (base to apex; 1
                          included), T frames of H = W = ``image_size`` pixels
    arrays/<extra>.npy    optional per-subject arrays [N, ...] (e.g. volumes, true R peaks)

Rows are written in place through ``numpy.lib.format.open_memmap``, so a writer never holds
the cohort in memory and readers map it lazily. Stores written before ``STORE_FORMAT`` 2 (named fields
``sampling_rate``, ``n_frames``, ``image_size``, ``n_slices``; a single-slice cine as ``[N, T, H, W]``) are
read as they are, the slice axis added as a view.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from ..geometry import Geometry
from .schema import LEADS

ECG_FILE = "ecg.npy"
CMR_FILE = "cmr.npy"
META_FILE = "store.json"
#: 2: the geometry as one entry, the cine always [N, S, T, H, W].
STORE_FORMAT = 2


@dataclass
class StoreMeta:
    """What a reader needs to interpret the arrays."""

    n_subjects: int
    geometry: Geometry  # the ECG rate, frames, frame side and slices the arrays hold
    n_samples: int
    leads: tuple[str, ...] = LEADS
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"shape": [...], "dtype": str}
    attrs: dict[str, Any] = field(default_factory=dict)  # free-form provenance (generator version, seed, ...)

    @property
    def cine_shape(self) -> tuple[int, int, int, int]:
        """One subject's cine in ``cmr.npy``: ``(S, T, H, W)``."""
        g = self.geometry
        return (g.slices, g.frames, g.image_size, g.image_size)

    def to_dict(self) -> dict[str, Any]:
        """``store.json``'s content."""
        return {"format": STORE_FORMAT, **asdict(self), "geometry": self.geometry.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "StoreMeta":
        """From ``store.json``, of this format or an earlier one (see the module docstring)."""
        raw = {k: v for k, v in raw.items() if k != "format"}
        if "geometry" in raw:
            geometry = Geometry.from_dict(raw.pop("geometry"))
        else:
            geometry = Geometry("stored", ecg_hz=round(float(raw.pop("sampling_rate"))), frames=raw.pop("n_frames"),
                                image_size=raw.pop("image_size")[0], slices=raw.pop("n_slices", 1))
        return cls(geometry=geometry, **{**raw, "leads": tuple(raw["leads"])})


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
        (self.root / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2))

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
        self.meta = StoreMeta.from_dict(raw)
        self.ecg = np.load(self.root / ECG_FILE, mmap_mode="r")
        cmr = np.load(self.root / CMR_FILE, mmap_mode="r")
        # format 1 kept a single-slice cine as [N, T, H, W]: the same bytes, seen with their slice axis
        single_slice_v1 = raw.get("format", 1) < STORE_FORMAT and raw.get("n_slices", 1) == 1
        self.cmr = cmr[:, None] if single_slice_v1 else cmr
        self.extras = {name: np.load(self.root / f"{name}.npy", mmap_mode="r") for name in self.meta.extras}

    def __len__(self) -> int:
        return int(self.ecg.shape[0])
