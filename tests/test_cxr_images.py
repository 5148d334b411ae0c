"""Every image format archives hold decodes to sensible grey levels through the one decoder (cxr.images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptacl_lib.cxr.fixtures import synthetic_radiograph, write_dicom
from ptacl_lib.cxr.images import ImageDecodeError, decode_image, normalise_percentiles
from ptacl_lib.cxr.readers import CXRReadError


def _lungs_darker(image: np.ndarray) -> bool:
    """Lungs (left and right thirds of the middle band) darker than the mediastinum (the centre)."""
    h, w = image.shape
    band = image[h // 4: 3 * h // 4]
    lungs = np.concatenate([band[:, w // 8: 3 * w // 8], band[:, 5 * w // 8: 7 * w // 8]], axis=1)
    return float(lungs.mean()) + 0.2 < float(band[:, 7 * w // 16: 9 * w // 16].mean())


def test_normalise_percentiles_maps_and_clips() -> None:
    x = np.arange(1000, dtype=np.float64)
    y = normalise_percentiles(x)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0
    assert y[500] == pytest.approx((500 - 4.995) / (994.005 - 4.995), abs=1e-6)
    assert (normalise_percentiles(np.full((4, 4), 7.0)) == 0).all()


def test_16_bit_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    # a 12-bit radiograph stored in a 16-bit PNG: every value is above 255, so convert("L") saturates it
    values = np.round(600 + synthetic_radiograph(96) * 3000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "x16.png")
    with Image.open(tmp_path / "x16.png") as im:
        assert im.mode == "I;16" and (np.asarray(im.convert("L")) == 255).mean() > 0.9  # the old decoder's white
    image = decode_image(tmp_path / "x16.png")
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert np.percentile(image, 5) < 0.15 and np.percentile(image, 95) > 0.85 and _lungs_darker(image)


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    upright = (synthetic_radiograph(64, 48) * 255).astype(np.uint8)  # 64 rows x 48 columns
    stored = np.rot90(upright, 1)  # the camera stored it turned; EXIF Orientation 6 = "rotate 90 CW to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "r.jpg", quality=95, exif=exif)
    image = decode_image(tmp_path / "r.jpg")
    assert image.shape == (64, 48)
    expected = normalise_percentiles(upright)
    assert np.abs(image - expected).mean() < 0.05


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_alpha_and_palette_images_become_grey(tmp_path: Path, mode: str) -> None:
    grey = (synthetic_radiograph(64) * 255).astype(np.uint8)
    im = Image.fromarray(grey).convert(mode)
    im.save(tmp_path / "c.png")
    image = decode_image(tmp_path / "c.png")
    assert image.shape == (64, 64) and np.abs(image - normalise_percentiles(grey)).max() < 0.03
    assert _lungs_darker(image)


def test_dicom_cr_monochrome1_window_and_rescale(tmp_path: Path) -> None:
    # a CR with real-shaped tags: MONOCHROME1 (high = dark), 15 bits stored, slope/intercept, a window
    path = write_dicom(tmp_path / "cr.dcm", synthetic_radiograph(80), modality="CR", monochrome1=True,
                       bits_stored=15, slope=2.0, intercept=-1024.0, window=(15000.0, 30000.0))
    image = decode_image(path)
    assert image.shape == (80, 80) and _lungs_darker(image)
    assert np.percentile(image, 95) - np.percentile(image, 5) > 0.6  # spread, not all white or black
    mono2 = decode_image(write_dicom(tmp_path / "dx.dcm", synthetic_radiograph(80), modality="DX",
                                     monochrome1=False, bits_stored=12, window=None))
    assert _lungs_darker(mono2) and np.abs(mono2 - image).mean() < 0.05


def test_dicom_window_narrower_than_the_data_clips_to_it(tmp_path: Path) -> None:
    radiograph = synthetic_radiograph(64)
    wide = decode_image(write_dicom(tmp_path / "w.dcm", radiograph, bits_stored=12, window=None))
    # a window on the lower half of the 12-bit range: everything brighter saturates
    narrow = decode_image(write_dicom(tmp_path / "n.dcm", radiograph, bits_stored=12, window=(1024.0, 2048.0)))
    assert (narrow >= 0.999).mean() > (wide >= 0.999).mean() + 0.2


def test_colour_and_broken_files_raise_named_errors(tmp_path: Path) -> None:
    good = write_dicom(tmp_path / "g.dcm", synthetic_radiograph(32))
    (tmp_path / "t.dcm").write_bytes(good.read_bytes()[:300])
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for name in ("t.dcm", "t.png", "gone.png"):
        with pytest.raises(ImageDecodeError, match=name):
            decode_image(tmp_path / name)
    assert issubclass(ImageDecodeError, CXRReadError)  # so the data loaders list it in errors.csv


def test_real_chest_cr_from_pydicom_data() -> None:
    """pydicom-data's RG1_UNCR.dcm: a real chest CR, MONOCHROME1, 15 bits, window 15000/30000 (optional)."""
    pytest.importorskip("data_store", reason="pydicom-data is not installed")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("RG1_UNCR.dcm not available")
    image = decode_image(path)
    assert image.shape == (1955, 1841)
    assert np.percentile(image, 95) - np.percentile(image, 5) > 0.5 and 0.2 < image.mean() < 0.8
    assert _lungs_darker(image)  # MONOCHROME1 inverted: bone and mediastinum bright, lungs dark
