"""Open a cohort from its manifest, validate it, and read one subject's arrays.

A manifest row points at its ECG and CMR either as ``array:INDEX`` into the cohort's array
store (``arrays/`` beside the manifest) or as a file path, absolute or relative to the manifest.
Files ending in ``.npy`` are read directly; other formats go through ``ptacl_lib.data.readers``.

A cohort has one geometry (``ptacl_lib.geometry``): its store's, or for a manifest of plain files
``geometry.STORED_DEFAULT``, at which those files are read. A cine is always ``[S, T, H, W]``, one slice included.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..geometry import STORED_DEFAULT
from .phenotype_checks import FLAGS_COLUMN, details_by_row, extreme_flags, find_implausible
from .schema import (
    ARRAY_PREFIX,
    LEADS,
    PHENOTYPES,
    REQUIRED_COLUMNS,
    SPLITS,
    SPLITS_NEEDING_PHENOTYPES,
)
from .store import ArrayStore

STORE_DIR = "arrays"
#: Columns of ``Cohort.rejected``: the manifest line (header = line 1), the subject, and one finding
#: (``phenotype_checks.find_implausible``: ``;``-joined fields and values, reason, sentence).
REJECTED_COLUMNS: tuple[str, ...] = ("row", "subject_id", "fields", "values", "reason", "detail")
#: How many rejected rows the warning of ``open_cohort`` names before it points at ``Cohort.rejected``.
NAMED_IN_WARNING = 10


class ManifestError(ValueError):
    """The manifest itself is malformed; the message names the row and the column."""


class SubjectDataError(ValueError):
    """One subject's data cannot be read; the message names the subject and the file."""


class ImplausiblePhenotypeWarning(UserWarning):
    """Manifest rows that ``open_cohort`` left out for impossible or contradictory phenotypes (said once)."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet manifest as strings-for-ids, floats-for-phenotypes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, dtype={"subject_id": str, "split": str, "ecg_path": str, "cmr_path": str})
    return table


def _row_label(table: pd.DataFrame, i: int) -> str:
    sid = table["subject_id"].iloc[i] if "subject_id" in table else "?"
    return f"row {i + 2} (subject {sid})"  # +2: header line, 1-based lines as seen in a spreadsheet


def validate_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """Check columns, ids, splits and phenotypes; raise ``ManifestError`` naming row and column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(f"manifest is missing required column(s): {', '.join(missing)}")
    table = table.reset_index(drop=True).copy()
    for col in ("subject_id", "ecg_path", "cmr_path"):
        empty = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if empty.any():
            raise ManifestError(f"{_row_label(table, int(np.flatnonzero(empty)[0]))}: column '{col}' is empty")
    table["subject_id"] = table["subject_id"].astype(str)
    dup = table["subject_id"].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(table["subject_id"] == table["subject_id"].iloc[i])[0])
        raise ManifestError(
            f"{_row_label(table, i)}: column 'subject_id' duplicates row {first + 2}")
    bad_split = ~table["split"].isin(SPLITS)
    if bad_split.any():
        i = int(np.flatnonzero(bad_split)[0])
        raise ManifestError(f"{_row_label(table, i)}: column 'split' has unknown value "
                            f"{table['split'].iloc[i]!r} (expected one of {', '.join(SPLITS)})")
    for col in PHENOTYPES:
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
        nan = table[col].isna() & table["split"].isin(SPLITS_NEEDING_PHENOTYPES)
        if nan.any():
            i = int(np.flatnonzero(nan)[0])
            raise ManifestError(f"{_row_label(table, i)}: column '{col}' is NaN in split "
                                f"'{table['split'].iloc[i]}', which needs phenotypes")
    return table


class Cohort:
    """A validated manifest plus lazy access to each subject's ECG and cine."""

    def __init__(self, manifest_path: str | Path, table: pd.DataFrame, store: ArrayStore | None,
                 rejected: pd.DataFrame | None = None) -> None:
        self.manifest_path = Path(manifest_path)
        self.root = self.manifest_path.parent
        self.table = table
        self.store = store
        #: Manifest rows left out of ``table`` for impossible or contradictory phenotypes, one row per finding
        #: (``REJECTED_COLUMNS``; ``open_cohort``), empty when every row passed.
        self.rejected = rejected if rejected is not None else pd.DataFrame(columns=list(REJECTED_COLUMNS))
        #: The geometry the cohort's arrays hold: its store's, or the one plain files are read at.
        self.geometry = store.meta.geometry if store is not None else STORED_DEFAULT

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        counts = self.table["split"].value_counts().to_dict()
        return f"Cohort({self.manifest_path}, n={len(self)}, splits={counts})"

    # ---- per-subject access -------------------------------------------------------------
    def ecg(self, i: int) -> np.ndarray:
        """The 12-lead ECG of row ``i``: float32 ``[12, n_samples]`` in millivolts, at ``geometry.ecg_hz``."""
        ecg = self._load(i, "ecg_path")
        if ecg.ndim != 2 or ecg.shape[0] != len(LEADS):
            raise self._error(i, "ecg_path", f"ECG has shape {ecg.shape}, expected [{len(LEADS)}, n_samples]")
        return np.asarray(ecg, dtype=np.float32)

    def cmr(self, i: int) -> np.ndarray:
        """The cine of row ``i``: float32 ``[S, T, H, W]`` (``S = geometry.slices``, base to apex; 1 included)
        with intensities in [0, 1]."""
        cmr = self._load(i, "cmr_path")
        if cmr.ndim < 3 or cmr.size == 0:
            raise self._error(i, "cmr_path", f"CMR has shape {cmr.shape}, expected [S, T, H, W]")
        stack = cmr.reshape(-1, *cmr.shape[-3:])  # a .npy file of one slice may leave out the slice axis
        if len(stack) != self.geometry.slices:
            raise self._error(i, "cmr_path", f"CMR has {len(stack)} slice(s) (shape {cmr.shape}), the cohort "
                                             f"{self.geometry.slices}")
        if stack.dtype == np.uint8:
            return stack.astype(np.float32) / 255.0
        return np.asarray(stack, dtype=np.float32)

    def extra(self, name: str, i: int) -> np.ndarray | None:
        """A per-subject extra array of the store (e.g. ``volumes``, ``rpeaks``), or None."""
        if self.store is None or name not in self.store.extras:
            return None
        ref = str(self.table["ecg_path"].iloc[i])
        if not ref.startswith(ARRAY_PREFIX):
            return None
        return np.asarray(self.store.extras[name][int(ref[len(ARRAY_PREFIX):])])

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row indices of a split (all rows when ``split`` is None)."""
        if split is None:
            return np.arange(len(self))
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def index_of(self, subject_id: str) -> int:
        """Row index of a subject id."""
        hits = np.flatnonzero(self.table["subject_id"].to_numpy() == str(subject_id))
        if len(hits) == 0:
            raise KeyError(f"subject {subject_id!r} is not in {self.manifest_path}")
        return int(hits[0])

    def phenotypes(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Phenotype matrix ``[n, 9]`` in ``PHENOTYPES`` order (NaN where missing)."""
        table = self.table if rows is None else self.table.iloc[rows]
        return table[list(PHENOTYPES)].to_numpy(dtype=np.float32)

    # ---- internals ----------------------------------------------------------------------
    def _error(self, i: int, column: str, reason: str) -> SubjectDataError:
        return SubjectDataError(f"subject {self.table['subject_id'].iloc[i]} ({column}="
                                f"{self.table[column].iloc[i]}): {reason}")

    def _resolve(self, ref: str) -> Path:
        path = Path(ref)
        return path if path.is_absolute() else self.root / path

    def _load(self, i: int, column: str) -> np.ndarray:
        ref = str(self.table[column].iloc[i])
        if ref.startswith(ARRAY_PREFIX):
            assert self.store is not None  # guaranteed by open_cohort's checks
            arrays = self.store.ecg if column == "ecg_path" else self.store.cmr
            return np.asarray(arrays[int(ref[len(ARRAY_PREFIX):])])
        path = self._resolve(ref)
        if not path.exists():
            raise self._error(i, column, f"file not found: {path}")
        try:
            if path.suffix == ".npy":
                return np.load(path)
            from . import readers  # real-data formats (UK Biobank XML, DICOM, WFDB, NIfTI)

            g = self.geometry
            if column == "ecg_path":  # resampled to the cohort's rate, so every subject has one time axis
                return readers.read_ecg(path, sampling_rate=g.ecg_hz).signal
            # heart crop, one cycle in the geometry's frames, intensities in [0, 1]: as prepare-ukb writes them
            return readers.standardise_stack(readers.read_cine_slices(path, g.slices), g.frames, g.image_size)
        except SubjectDataError:
            raise
        except Exception as err:  # any reader failure becomes an error that names the file
            raise self._error(i, column, f"unreadable: {err}") from err


def _check_array_refs(table: pd.DataFrame, store: ArrayStore | None, manifest: Path) -> None:
    for column, kind in (("ecg_path", "ecg"), ("cmr_path", "cmr")):
        refs = table[column].astype(str)
        is_array = refs.str.startswith(ARRAY_PREFIX)
        if not is_array.any():
            continue
        if store is None:
            i = int(np.flatnonzero(is_array)[0])
            raise ManifestError(f"{_row_label(table, i)}: column '{column}' points into an array store, "
                                f"but {manifest.parent / STORE_DIR} does not exist")
        idx = pd.to_numeric(refs[is_array].str[len(ARRAY_PREFIX):], errors="coerce")
        n = len(store)
        bad = idx.isna() | (idx < 0) | (idx >= n)
        if bad.any():
            i = int(bad[bad].index[0])
            raise ManifestError(f"{_row_label(table, i)}: column '{column}' = {refs.iloc[i]!r} is not an "
                                f"index into the array store (0..{n - 1})")
        shape = (store.ecg if kind == "ecg" else store.cmr).shape[1:]
        meta = store.meta
        expected = (len(meta.leads), meta.n_samples) if kind == "ecg" else meta.cine_shape
        if len(meta.leads) != len(LEADS) or tuple(shape) != tuple(expected):
            raise ManifestError(f"array store {store.root}: {kind} arrays have shape {tuple(shape)}, "
                                f"expected {tuple(expected)} with {len(LEADS)} leads")


def _check_files(table: pd.DataFrame, root: Path) -> None:
    for column in ("ecg_path", "cmr_path"):
        for i, ref in enumerate(table[column].astype(str)):
            if ref.startswith(ARRAY_PREFIX):
                continue
            path = Path(ref) if Path(ref).is_absolute() else root / ref
            if not path.exists():
                raise ManifestError(f"{_row_label(table, i)}: column '{column}': file not found: {path}")


def check_phenotypes(table: pd.DataFrame, manifest: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave out the rows of a validated ``table`` with impossible or contradictory phenotypes
    (``phenotype_checks``), with one ``ImplausiblePhenotypeWarning`` naming each; flag extremes in
    ``phenotype_flags``. Returns (the kept rows, renumbered from 0; ``REJECTED_COLUMNS`` of the others)."""
    table = table.assign(**{FLAGS_COLUMN: extreme_flags(table)})
    findings = find_implausible(table)
    positions = findings["position"].to_numpy()
    rejected = findings.assign(row=positions + 2, subject_id=table["subject_id"].to_numpy()[positions])
    by_row = details_by_row(findings)
    said = [f"{_row_label(table, i)}: {details}" for i, details in by_row.items()]
    if said and len(said) == len(table):
        raise ManifestError(f"{manifest}: every row has impossible or contradictory phenotypes, e.g. {said[0]}")
    if said:
        more = [f"and {len(said) - NAMED_IN_WARNING} more"] if len(said) > NAMED_IN_WARNING else []
        warnings.warn("\n  ".join([f"{manifest}: {len(said)} row(s) left out for impossible or contradictory "
                                   "phenotypes (listed in cohort.rejected):", *said[:NAMED_IN_WARNING], *more]),
                      ImplausiblePhenotypeWarning, stacklevel=3)
    return table.drop(index=by_row.index).reset_index(drop=True), rejected[list(REJECTED_COLUMNS)]


def open_cohort(manifest_path: str | Path, check_files: bool = True) -> Cohort:
    """Read and validate a manifest, leave out rows with impossible or contradictory phenotypes
    (``check_phenotypes``: warned about, listed in ``Cohort.rejected``); map its array store if it has one."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.csv"
    table = validate_manifest(read_manifest(manifest_path))
    store_dir = manifest_path.parent / STORE_DIR
    store = ArrayStore(store_dir) if (store_dir / "store.json").exists() else None
    _check_array_refs(table, store, manifest_path)
    if check_files:
        _check_files(table, manifest_path.parent)
    table, rejected = check_phenotypes(table, manifest_path)
    return Cohort(manifest_path, table, store, rejected)


def describe(cohort: Cohort) -> pd.DataFrame:
    """A cohort summary: count and phenotype mean ± SD per split and sex."""
    table = cohort.table
    group_cols = ["split"] + (["sex"] if "sex" in table.columns else [])
    stats: dict[str, Any] = {"n": table.groupby(group_cols).size()}
    for col in PHENOTYPES:
        g = table.groupby(group_cols)[col]
        stats[col] = g.mean().round(1).astype(str) + " ± " + g.std().round(1).astype(str)
    return pd.DataFrame(stats)
