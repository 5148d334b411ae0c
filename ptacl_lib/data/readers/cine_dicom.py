"""Short-axis cine CMR from DICOM: a UK Biobank field-20209 zip or a folder of single-frame DICOM files.

Frames are grouped by slice position (ImagePositionPatient projected on the slice normal,
rounded to 0.1 mm) and ordered by TriggerTime, never by file name. Where two series share a
position (e.g. a scanner-derived copy), the one with more frames (then the lower SeriesNumber)
is kept. The default slice is the mid-ventricular one: the middle of the stack sorted along
the normal. Non-DICOM members of a zip (UKB's ``manifest.csv``/``manifest.cvs``) are ignored.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .cine_ops import chosen_slices, crop_heart, pick_slice
from .records import CineRecord, ReaderError


@dataclass(frozen=True)
class _Frame:
    """Header facts of one cine image and a way to load its bytes again."""

    name: str
    load: Callable[[], bytes]
    position: float
    trigger_time: float
    instance: int | None
    series: str
    series_number: int
    header: Dataset


def read_cine_dicom(path: str | Path, *, slice_index: int | None = None, min_frames: int = 10,
                    image_size: int | None = None, crop_mm: float = 140.0) -> CineRecord:
    """Read one slice of a cine stack (default: mid-ventricular) as float32 [T, H, W] scanner intensities.

    ``image_size`` crops the heart region and resamples it to that size (``cine_ops.crop_heart``).
    """
    path = Path(path)
    stacks = _group_by_position(path, _frames(path))
    record = _slice_record(path, stacks, pick_slice(len(stacks), slice_index, path), min_frames)
    return record if image_size is None else crop_heart(record, image_size, crop_mm)


def read_cine_dicom_slices(path: str | Path, n_slices: int, *, slice_index: int | None = None,
                           min_frames: int = 10) -> list[CineRecord]:
    """``n_slices`` slices of a cine stack spread from one end of the stack to the other (or the one at
    ``slice_index``; ``cine_ops.chosen_slices``), in position order, each float32 [T, H, W]; the headers are
    read once."""
    path = Path(path)
    stacks = _group_by_position(path, _frames(path))
    return [_slice_record(path, stacks, i, min_frames)
            for i in chosen_slices(len(stacks), n_slices, slice_index, path)]


def _slice_record(path: Path, stacks: dict[float, list[_Frame]], chosen: int, min_frames: int) -> CineRecord:
    """The ``chosen``-th slice (in position order) of a grouped stack, as a ``CineRecord``."""
    positions = sorted(stacks)
    frames = _ordered_frames(path, stacks[positions[chosen]], min_frames)
    pixels = [_pixels(path, frame) for frame in frames]
    if len({p.shape for p in pixels}) > 1:
        sizes = sorted({p.shape for p in pixels})
        raise ReaderError(path, "bad_metadata", f"frames of one slice differ in size: {sizes}")
    images = np.stack(pixels)
    first = frames[0].header
    times = np.array([f.trigger_time for f in frames], dtype=np.float64)
    spacing = tuple(float(v) for v in first.get("PixelSpacing", (1.0, 1.0)))
    nominal = float(first.get("NominalInterval", 0) or 0)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    cycle = nominal if nominal > times[-1] - times[0] + 0.5 * step else times[-1] - times[0] + step
    location = float(first.SliceLocation) if "SliceLocation" in first else positions[chosen]
    return CineRecord(frames=images, frame_times=times, cycle_ms=cycle, pixel_spacing=(spacing[0], spacing[1]),
                      slice_location=location, slice_index=chosen, n_slices=len(positions), source=str(path),
                      meta={"series_description": str(first.get("SeriesDescription", "")),
                            "files": [f.name for f in frames]})


def _members(path: Path) -> list[tuple[str, Callable[[], bytes]]]:
    """(name, loader) of every candidate DICOM file in a zip or folder."""
    if path.is_dir():
        return [(str(p.relative_to(path)), p.read_bytes) for p in sorted(path.rglob("*"))
                if p.is_file() and not p.name.lower().startswith("manifest.")]
    if not path.is_file():
        raise ReaderError(path, "missing_file", "file or folder does not exist")
    try:
        archive = zipfile.ZipFile(path)
        names = [i.filename for i in archive.infolist()
                 if not i.is_dir() and not Path(i.filename).name.lower().startswith("manifest.")]
    except (zipfile.BadZipFile, OSError) as err:
        raise ReaderError(path, "corrupt_file", f"not a readable zip archive ({err})") from err

    def loader(name: str) -> Callable[[], bytes]:
        def load() -> bytes:
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as err:  # truncated or CRC mismatch
                raise ReaderError(path, "corrupt_file", f"member {name} cannot be extracted ({err})") from err
        return load

    return [(name, loader(name)) for name in names]


def _frames(path: Path) -> list[_Frame]:
    """Header facts of every cine image (files without TriggerTime or position are not cine frames)."""
    frames: list[_Frame] = []
    for name, load in _members(path):
        try:
            header = pydicom.dcmread(io.BytesIO(load()), stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError) as err:
            raise ReaderError(path, "corrupt_file", f"member {name} is not a readable DICOM file ({err})") from err
        if not all(key in header for key in ("ImagePositionPatient", "ImageOrientationPatient", "TriggerTime")):
            continue
        orientation = np.asarray(header.ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        instance = header.get("InstanceNumber")
        frames.append(_Frame(
            name=name, load=load, position=round(float(np.dot(header.ImagePositionPatient, normal)), 1),
            trigger_time=float(header.TriggerTime), instance=None if instance is None else int(instance),
            series=str(header.get("SeriesInstanceUID", "")), series_number=int(header.get("SeriesNumber", 0) or 0),
            header=header))
    if not frames:
        raise ReaderError(path, "unsupported_format", "no cine images (DICOM with TriggerTime and position)")
    return frames


def _group_by_position(path: Path, frames: list[_Frame]) -> dict[float, list[_Frame]]:
    """Frames of each slice position; one series per position (most frames, then lowest SeriesNumber)."""
    by_position: dict[float, dict[str, list[_Frame]]] = defaultdict(lambda: defaultdict(list))
    for frame in frames:
        by_position[frame.position][frame.series].append(frame)
    return {position: min(series.values(), key=lambda fs: (-len(fs), fs[0].series_number))
            for position, series in by_position.items()}


def _ordered_frames(path: Path, frames: list[_Frame], min_frames: int) -> list[_Frame]:
    """One slice's frames by TriggerTime, checked: strictly increasing, agreeing with InstanceNumber, enough."""
    ordered = sorted(frames, key=lambda f: f.trigger_time)
    times = [f.trigger_time for f in ordered]
    repeated = [t for a, t in zip(times, times[1:]) if t <= a]
    if repeated:
        raise ReaderError(path, "non_monotonic_trigger_times", f"trigger time {repeated[0]} ms occurs twice "
                          f"at slice position {frames[0].position} mm")
    if all(f.instance is not None for f in frames):
        by_instance = sorted(frames, key=lambda f: f.instance)
        backwards = [(a, b) for a, b in zip(by_instance, by_instance[1:]) if b.trigger_time <= a.trigger_time]
        if backwards:
            a, b = backwards[0]
            raise ReaderError(path, "non_monotonic_trigger_times",
                              f"trigger time goes back from {a.trigger_time} ms ({a.name}, instance {a.instance}) "
                              f"to {b.trigger_time} ms ({b.name}, instance {b.instance})")
    if len(ordered) < min_frames:
        raise ReaderError(path, "too_few_frames",
                          f"{len(ordered)} frames at slice position {frames[0].position} mm, need {min_frames}")
    return ordered


def _pixels(path: Path, frame: _Frame) -> np.ndarray:
    """One frame's pixels as float32, rescaled by RescaleSlope/Intercept."""
    try:
        ds = pydicom.dcmread(io.BytesIO(frame.load()))
        pixels = ds.pixel_array.astype(np.float32)
    except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError) as err:
        raise ReaderError(path, "corrupt_file", f"member {frame.name} has unreadable pixel data ({err})") from err
    if pixels.ndim != 2:
        raise ReaderError(path, "unsupported_format", f"member {frame.name} is not a single-frame 2D image")
    slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    return pixels * np.float32(slope) + np.float32(intercept)
