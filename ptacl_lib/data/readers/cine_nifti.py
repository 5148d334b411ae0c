"""Short-axis cine as NIfTI (``sa.nii.gz`` [X, Y, Z, T], as written by common UK Biobank pipelines) via nibabel.

The time step is ``pixdim[4]`` in the header's time unit (seconds are converted to ms; an
unspecified unit is read as ms unless the step is below 1, which can only be seconds). Frames
are evenly spaced from 0 and the cycle is ``T * dt``. Voxel [i, j] becomes pixel [row j, column i].
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import SpatialImage

from .cine_ops import chosen_slices, crop_heart, pick_slice
from .records import CineRecord, ReaderError, require_file

_TIME_TO_MS: dict[str, float] = {"sec": 1e3, "msec": 1.0, "usec": 1e-3}


def read_cine_nifti(path: str | Path, *, slice_index: int | None = None, min_frames: int = 10,
                    image_size: int | None = None, crop_mm: float = 140.0) -> CineRecord:
    """Read one slice (default: the middle of the stack) of a 4D cine NIfTI as float32 [T, H, W]."""
    path, image = _open(path)
    record = _slice_record(path, image, pick_slice(image.shape[2], slice_index, path), min_frames)
    return record if image_size is None else crop_heart(record, image_size, crop_mm)


def read_cine_nifti_slices(path: str | Path, n_slices: int, *, slice_index: int | None = None,
                           min_frames: int = 10, source: str | Path | None = None) -> list[CineRecord]:
    """``n_slices`` slices of a 4D cine NIfTI spread over the stack (or the one at ``slice_index``;
    ``cine_ops.chosen_slices``), in position order, each float32 [T, H, W]; the file is opened once.

    The middle slice is read first, as ``read_cine_nifti`` reads it, so that a broken file fails with the same
    reason whatever is asked of it; it is read once when it is one of the chosen slices. A stack without the
    asked slices is named by ``source`` (the folder the file was found in; default: the file)."""
    path, image = _open(path)
    middle = pick_slice(image.shape[2], None, path)
    checked = _slice_record(path, image, middle, min_frames)
    wanted = chosen_slices(image.shape[2], n_slices, slice_index, path if source is None else source)
    return [checked if i == middle else _slice_record(path, image, i, min_frames) for i in wanted]


def _open(path: str | Path) -> tuple[Path, SpatialImage]:
    """The checked path and the image of a 4D [X, Y, Z, T] NIfTI (its header only: the data is read per slice)."""
    path = require_file(path)
    try:
        image = nib.load(str(path))
    except (ImageFileError, EOFError, OSError, ValueError, zlib.error) as err:
        raise ReaderError(path, "corrupt_file", f"not a readable NIfTI image ({err})") from err
    if len(image.shape) != 4:
        raise ReaderError(path, "bad_metadata", f"expected a 4D [X, Y, Z, T] cine, got shape {image.shape}")
    return path, image


def _slice_record(path: Path, image: SpatialImage, chosen: int, min_frames: int) -> CineRecord:
    """Slice ``chosen`` (a valid stack position) of an opened cine, as a ``CineRecord``."""
    n_slices, n_time = image.shape[2], image.shape[3]
    if n_time < min_frames:
        raise ReaderError(path, "too_few_frames", f"{n_time} frames, need {min_frames}")
    try:
        data = np.asarray(image.dataobj[:, :, chosen, :], dtype=np.float32)  # [X, Y, T]
    except (EOFError, OSError, ValueError, zlib.error) as err:
        raise ReaderError(path, "corrupt_file", f"image data cannot be read ({err})") from err
    zooms = image.header.get_zooms()
    dt = float(zooms[3])
    unit = image.header.get_xyzt_units()[1]
    dt_ms = dt * _TIME_TO_MS.get(unit, 1e3 if dt < 1.0 else 1.0)
    if dt_ms <= 0:
        raise ReaderError(path, "non_monotonic_trigger_times", f"time step pixdim[4] is {dt}")
    affine = image.affine
    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    centre = affine @ np.array([(data.shape[0] - 1) / 2, (data.shape[1] - 1) / 2, chosen, 1.0])
    return CineRecord(frames=np.ascontiguousarray(data.transpose(2, 1, 0)),
                      frame_times=np.arange(n_time) * dt_ms, cycle_ms=n_time * dt_ms,
                      pixel_spacing=(float(zooms[1]), float(zooms[0])),
                      slice_location=float(np.dot(centre[:3], normal)), slice_index=chosen, n_slices=n_slices,
                      source=str(path), meta={})
