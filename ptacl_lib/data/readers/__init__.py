"""Readers of real-world ECG and cine CMR formats into ``EcgRecord`` / ``CineRecord``.

One module per format: ``ukb_xml`` (UK Biobank CardioSoft XML), ``dicom_ecg`` (DICOM 12-lead
waveforms), ``wfdb_ecg`` (PhysioNet WFDB), ``cine_dicom`` (UKB 20209 zip or DICOM folder),
``cine_nifti`` (``sa.nii.gz``), ``idp`` (UKB imaging-derived phenotype CSV). ``read_ecg`` and
``read_cine`` pick the reader from the file type. Every failure is a ``ReaderError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from .cine_dicom import read_cine_dicom, read_cine_dicom_slices
from .cine_nifti import read_cine_nifti, read_cine_nifti_slices
from .cine_ops import chosen_slices, crop_heart, resample_cycle, spread_slices, standardise_stack, to_unit_range
from .dicom_ecg import read_dicom_ecg
from .idp import IDP_FIELDS, read_idp_csv
from .records import READER_REASONS, CineRecord, EcgRecord, ReaderError
from .ukb_xml import read_ukb_xml
from .wfdb_ecg import read_wfdb_ecg

__all__ = [
    "CineRecord", "ECG_SUFFIXES", "EcgRecord", "IDP_FIELDS", "READER_REASONS", "ReaderError", "chosen_slices",
    "crop_heart", "read_cine", "read_cine_dicom", "read_cine_nifti", "read_cine_slices", "read_dicom_ecg", "read_ecg",
    "read_idp_csv", "read_ukb_xml", "read_wfdb_ecg", "resample_cycle", "spread_slices", "standardise_stack",
    "to_unit_range",
]

ECG_SUFFIXES: tuple[str, ...] = (".xml", ".dcm", ".hea")
NIFTI_NAMES: tuple[str, ...] = ("sa.nii.gz", "sa.nii")


def read_ecg(path: str | Path, sampling_rate: float | None = None) -> EcgRecord:
    """Read an ECG by file type: ``.xml`` CardioSoft, ``.dcm`` DICOM waveform, ``.hea``/``.dat`` WFDB."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_ukb_xml(path, sampling_rate)
    if suffix in (".hea", ".dat"):
        return read_wfdb_ecg(path, sampling_rate)
    if suffix in (".dcm", ""):
        return read_dicom_ecg(path, sampling_rate)
    raise ReaderError(path, "unsupported_format", f"no ECG reader for '{suffix}' files")


def read_cine(path: str | Path, *, slice_index: int | None = None, min_frames: int = 10,
              image_size: int | None = None, crop_mm: float = 140.0) -> CineRecord:
    """Read a cine by type: a ``.nii(.gz)`` file or a folder holding ``sa.nii.gz``, else a DICOM zip or folder."""
    path = Path(path)
    options = {"slice_index": slice_index, "min_frames": min_frames, "image_size": image_size, "crop_mm": crop_mm}
    if path.is_dir():
        nifti = next((path / name for name in NIFTI_NAMES if (path / name).is_file()), None)
        return read_cine_nifti(nifti, **options) if nifti else read_cine_dicom(path, **options)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return read_cine_nifti(path, **options)
    if path.suffix.lower() == ".zip" or not path.exists():
        return read_cine_dicom(path, **options)
    raise ReaderError(path, "unsupported_format", "no cine reader for this file type")


def _nifti_path(path: Path) -> Path | None:
    """The NIfTI cine of ``path`` (the file itself, or ``sa.nii.gz`` in a folder), None for DICOM."""
    if path.is_dir():
        return next((path / name for name in NIFTI_NAMES if (path / name).is_file()), None)
    return path if path.name.lower().endswith((".nii", ".nii.gz")) else None


def read_cine_slices(path: str | Path, n_slices: int = 1, *, slice_index: int | None = None,
                     min_frames: int = 10) -> list[CineRecord]:
    """``n_slices`` short-axis slices of a cine stack (one slice included), spread over it by
    ``cine_ops.spread_slices`` or the one at ``slice_index`` (``cine_ops.chosen_slices``), in position order;
    each one a [T, H, W] ``CineRecord`` as ``read_cine`` returns it. ``standardise_stack`` makes the model's
    ``[S, T, H, W]`` of them."""
    path = Path(path)
    nifti = _nifti_path(path)
    if nifti is None:
        return read_cine_dicom_slices(path, n_slices, slice_index=slice_index, min_frames=min_frames)
    return read_cine_nifti_slices(nifti, n_slices, slice_index=slice_index, min_frames=min_frames, source=path)
