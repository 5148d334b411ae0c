"""Turn a raw cine slice into the store's fixed shape: heart crop, frame-count and intensity standardisation.

Heart-region rule (documented choice): the heart is the part of a cine that moves. Per pixel,
take the standard deviation of intensity over the cardiac cycle, smooth that map with a
Gaussian of ``sigma_mm`` (15 mm: about a ventricle's radius, so the ring of moving wall around a
blood pool peaks at the pool's centre, and single noisy pixels or small vessels do not win), and centre a
square of ``crop_mm`` x ``crop_mm`` on its maximum. Parts of the square outside the image
are filled with the image minimum. The square is then resampled to ``image_size`` pixels with
linear interpolation (``scipy.ndimage.zoom``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.interpolate import interp1d
from scipy.ndimage import gaussian_filter, zoom

from .records import CineRecord, ReaderError


def pick_slice(n_slices: int, slice_index: int | None, source: str | Path) -> int:
    """The slice to read: ``slice_index`` (negative counts from the end) or, by default, the middle of the stack."""
    chosen = n_slices // 2 if slice_index is None else slice_index
    if not -n_slices <= chosen < n_slices:
        raise ReaderError(source, "bad_metadata", f"slice {slice_index} requested, stack has {n_slices} slices")
    return chosen % n_slices


def spread_slices(n_stack: int, n_wanted: int) -> np.ndarray:
    """Indices of ``n_wanted`` slices spread from base to apex over a stack of ``n_stack`` sorted slices.

    The rule (documented choice): cut the stack into ``n_wanted`` equal runs of slices and take the
    slice at the centre of each run, ``floor((k + 0.5) * n_stack / n_wanted)``. One slice is the
    stack's middle (``pick_slice``'s default); 3 of a 10-slice UKB stack are slices 1, 5 and 8: basal,
    mid and apical, clear of the outflow tract at slice 0 and of the apex cap at slice 9.
    """
    if n_wanted < 1 or n_wanted > n_stack:
        raise ValueError(f"{n_wanted} slices requested, the stack has {n_stack}")
    return np.floor((np.arange(n_wanted) + 0.5) * n_stack / n_wanted).astype(np.int64)


def chosen_slices(n_stack: int, n_wanted: int, slice_index: int | None, source: str | Path) -> list[int]:
    """The stack positions to read: ``slice_index`` alone (one slice only; negative counts from the end), else
    ``n_wanted`` slices by ``spread_slices`` (one slice: the middle of the stack)."""
    if slice_index is not None:
        if n_wanted != 1:
            raise ValueError("slice_index picks one slice; it cannot be combined with several slices")
        return [pick_slice(n_stack, slice_index, source)]
    if n_wanted > n_stack:
        raise ReaderError(source, "bad_metadata", f"{n_wanted} slices requested, stack has {n_stack} slices")
    return [int(i) for i in spread_slices(n_stack, n_wanted)]


def heart_centre(frames: np.ndarray, pixel_spacing: tuple[float, float], sigma_mm: float = 15.0) -> tuple[int, int]:
    """(row, column) of the largest smoothed temporal intensity variation of [T, H, W] frames."""
    motion = frames.std(axis=0, dtype=np.float64)
    smooth = gaussian_filter(motion, sigma=(sigma_mm / pixel_spacing[0], sigma_mm / pixel_spacing[1]))
    row, col = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return int(row), int(col)


def crop_heart(record: CineRecord, image_size: int, crop_mm: float = 140.0, sigma_mm: float = 15.0,
               centre: tuple[int, int] | None = None) -> CineRecord:
    """A ``crop_mm`` square around the heart (module rule, or the given (row, column) ``centre``),
    resampled to ``image_size`` x ``image_size``."""
    frames = record.frames
    row, col = centre if centre is not None else heart_centre(frames, record.pixel_spacing, sigma_mm)
    half = [max(1, int(round(crop_mm / 2 / spacing))) for spacing in record.pixel_spacing]
    fill = float(frames.min())
    padded = np.pad(frames, ((0, 0), (half[0], half[0]), (half[1], half[1])), constant_values=fill)
    box = padded[:, row:row + 2 * half[0], col:col + 2 * half[1]]  # centred on (row, col) after padding
    scale = (1.0, image_size / box.shape[1], image_size / box.shape[2])
    resized = zoom(box, scale, order=1, grid_mode=True, mode="nearest").astype(np.float32)
    meta = {**record.meta, "crop_centre": (row, col), "crop_mm": crop_mm}
    return replace(record, frames=resized, pixel_spacing=(2 * half[0] * record.pixel_spacing[0] / image_size,
                                                          2 * half[1] * record.pixel_spacing[1] / image_size),
                   meta=meta)


def resample_cycle(record: CineRecord, n_frames: int) -> CineRecord:
    """``n_frames`` frames evenly spaced over the cycle from the first trigger time (periodic linear interpolation).

    The cycle wraps: the frame after the last one is the first frame one RR interval later.
    With as many evenly spaced input frames as requested, the frames come back unchanged.
    """
    times = np.asarray(record.frame_times, dtype=np.float64)
    start = times[0]
    knots = np.append(times - start, record.cycle_ms)
    values = np.concatenate([record.frames, record.frames[:1]], axis=0)
    grid = np.arange(n_frames) * (record.cycle_ms / n_frames)
    frames = interp1d(knots, values, axis=0, assume_sorted=True)(grid).astype(np.float32)
    return replace(record, frames=frames, frame_times=grid + start)


def to_unit_range(frames: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Intensities scaled to [0, 1]: the minimum maps to 0, the ``percentile`` to 1, brighter pixels clip."""
    low = float(frames.min())
    high = float(np.percentile(frames, percentile))
    if high <= low:
        raise ValueError("cine has constant intensity")
    return np.clip((frames - low) / (high - low), 0.0, 1.0).astype(np.float32)


def standardise_stack(records: list[CineRecord], n_frames: int, image_size: int,
                      crop_mm: float = 140.0) -> np.ndarray:
    """float32 [S, n_frames, image_size, image_size] in [0, 1] from S slices of one stack (base to apex).

    Every slice is cropped round the heart centre found on the middle slice (same pixel grid: a
    short-axis stack shares its in-plane geometry), resampled over its own cycle, and the stack is
    scaled to [0, 1] as a whole, so that slices keep their relative brightness.
    """
    middle = records[len(records) // 2]
    if float(middle.frames.max()) <= float(middle.frames.min()):
        raise ReaderError(middle.source, "corrupt_file", "cine has constant intensity")
    centre = heart_centre(middle.frames, middle.pixel_spacing)
    stack = np.stack([resample_cycle(crop_heart(r, image_size, crop_mm, centre=centre), n_frames).frames
                      for r in records])
    return to_unit_range(stack)
