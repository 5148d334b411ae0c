"""Decode one radiograph file, of any format archives hold, into grey float32 in [0, 1]; the one image path.

``decode_image(path)`` is what training, evaluation and captioning read (through ``data.ImageStore``). Rules:

- **DICOM** (``.dcm``/``.dicom`` or the ``DICM`` preamble; CR, DX and any single-frame grey image):
  stored values -> ``pydicom.pixels.apply_modality_lut`` (Rescale Slope/Intercept or a Modality LUT)
  -> ``apply_voi_lut`` (the first VOI LUT, else the first Window Center/Width; neither: the values as they
  are) -> ``MONOCHROME1`` inverted (high values are dark there), so bone is always bright.
  Multi-frame and colour DICOMs are rejected with a clear reason.
- **16-bit and 32-bit PNG/TIFF** (PIL modes ``I;16``, ``I;16B``, ``I``, ``F``): the integer values as they are,
  rescaled by the percentile rule below (PIL's ``convert("L")`` would clip them at 255: mostly white).
- **JPEG**: EXIF orientation applied first (``PIL.ImageOps.exif_transpose``), for every PIL format.
- **RGB, RGBA, palette, grey+alpha**: to grey by PIL's ``convert("L")`` (ITU-R 601 luma) after the palette
  is expanded; alpha is dropped (composited on nothing).
- **Intensity normalisation** (every format, ``normalise_percentiles``): the 0.5th and 99.5th percentiles of
  the image map to 0 and 1, values outside are clipped. This removes burned-in labels' and collimator
  edges' extremes and the archive's bit depth, so a 12-bit DX, a 15-bit CR and an 8-bit PNG look alike. A
  constant image maps to all zeros.

Any failure (missing file, truncated or corrupt data, unsupported layout) raises ``ImageDecodeError``
naming the file and the reason; ``data.scan_images`` lists those in ``errors.csv`` and the run goes on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .readers import CXRReadError

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom", ".dic"})


class ImageDecodeError(CXRReadError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def normalise_percentiles(values: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
                          ) -> np.ndarray:
    """float32 in [0, 1]: the ``low``-th percentile -> 0, the ``high``-th -> 1, clipped (constant -> zeros)."""
    x = np.asarray(values, np.float64)
    lo, hi = np.percentile(x, [low, high])
    if not np.isfinite([lo, hi]).all():
        raise ValueError("image holds non-finite values")
    if hi <= lo:
        return np.zeros(x.shape, np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def is_dicom(path: str | Path) -> bool:
    """By suffix, or by the ``DICM`` magic at byte 128 (DICOM files often have no suffix)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with path.open("rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def dicom_pixels(path: str | Path) -> np.ndarray:
    """Display values of a grey single-frame DICOM (modality LUT, VOI LUT/window, MONOCHROME1 inverted)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageDecodeError(f"{path}: colour DICOM ({photometric}) is not a radiograph")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageDecodeError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames)")
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float64)
    if photometric == "MONOCHROME1":
        values = values.max() + values.min() - values  # invert within the displayed range
    return values


def pil_pixels(path: str | Path) -> np.ndarray:
    """Grey values of a PIL-readable image: EXIF orientation applied; 16/32-bit kept as integers; colour -> luma."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return np.asarray(im, np.float64)
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            im = im.convert("RGB") if im.mode == "RGBA" else im.convert("L")
        return np.asarray(im.convert("L"), np.float64)


def decode_image(path: str | Path) -> np.ndarray:
    """The file's image as grey float32 ``[H, W]`` in [0, 1], normalised by percentiles (module rules)."""
    path = Path(path)
    if not path.exists():
        raise ImageDecodeError(f"{path}: image not found")
    try:
        values = dicom_pixels(path) if is_dicom(path) else pil_pixels(path)
        if values.ndim != 2 or min(values.shape) < 2:
            raise ImageDecodeError(f"{path}: not a 2-D image (shape {values.shape})")
        return normalise_percentiles(values)
    except ImageDecodeError:
        raise
    except Exception as err:  # noqa: BLE001 - PIL and pydicom raise many types for bad files; all mean "unreadable"
        raise ImageDecodeError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err


def resize_grey(image: np.ndarray, size: int) -> np.ndarray:
    """A [0, 1] float image resized to ``size x size`` (bilinear, aspect not kept) as uint8."""
    pil = Image.fromarray(np.asarray(image, np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.round(np.clip(np.asarray(pil), 0.0, 1.0) * 255).astype(np.uint8)
