"""Tiny data sets drawn from phantoms, for tests, the notebook and trying the CLI: Open-I (Kaggle layout), the
COVID-19 collection's layout (``write_covid_fixture``), and single CR/DX DICOMs (``write_dicom``); and two tiny
general-image caption sets of drawn shapes, in the MS-COCO layout (``write_coco_fixture``) and as a Karpathy
split file (``write_karpathy_fixture``).

The Open-I one:

It follows the real Kaggle conventions (``indiana_reports.csv``, ``indiana_projections.csv``,
``images/images_normalized/<uid>_IM-<nnnn>-<nnnn>.dcm.png``, Frontal/Lateral views, ``XXXX`` placeholders)
but every image and report is synthetic (``phantoms``), so nothing of Open-I's CC BY-NC-ND data is copied.
Optionally one listed image is missing and one is a truncated PNG, as in damaged real downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .phantoms import PhantomConfig, generate_phantoms
from .readers import KAGGLE_IMAGES, KAGGLE_PROJECTIONS, KAGGLE_REPORTS


def _sentence_case(caption: str) -> str:
    sentences = [s.strip() for s in caption.split(" . ") if s.strip(" .")]
    return " ".join(s[0].upper() + s[1:].rstrip(" .") + "." for s in sentences)


def write_kaggle_fixture(root: str | Path, n_studies: int = 12, image_size: int = 64, seed: int = 0,
                         damaged: bool = True) -> dict[str, Path]:
    """Write the fixture under ``root``; returns the paths of the missing and truncated images (if ``damaged``).

    Study ``uid`` (1-based) has a frontal image ``<uid>_IM-<uid+1000>-1001.dcm.png`` and, for odd uids, a
    lateral ``...-2001.dcm.png``. The last study has no findings text (readers skip it).
    """
    root = Path(root)
    images = root / KAGGLE_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    phantoms = generate_phantoms(2 * n_studies, seed, PhantomConfig(image_size=image_size))
    reports, projections = [], []
    for k in range(n_studies):
        uid = k + 1
        findings = _sentence_case(phantoms.captions[k]) + " The XXXX are intact."
        if uid == n_studies:
            findings = ""
        reports.append({"uid": uid, "MeSH": "normal", "Problems": "normal", "image": "Xray Chest PA and Lateral",
                        "indication": "XXXX-year-old with chest pain.", "comparison": "None.", "findings": findings,
                        "impression": "No acute cardiopulmonary process."})
        views = [("Frontal", phantoms.images[k], 1001)]
        if uid % 2:
            views.append(("Lateral", phantoms.images[n_studies + k][:, ::-1], 2001))
        for view, pixels, number in views:
            name = f"{uid}_IM-{1000 + uid:04d}-{number}.dcm.png"
            Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(images / name)
            projections.append({"uid": uid, "filename": name, "projection": view})
    pd.DataFrame(reports).to_csv(root / KAGGLE_REPORTS, index=False)
    pd.DataFrame(projections).to_csv(root / KAGGLE_PROJECTIONS, index=False)
    out: dict[str, Path] = {}
    if damaged:
        missing, truncated = images / projections[0]["filename"], images / projections[2]["filename"]
        missing.unlink()
        data = truncated.read_bytes()
        truncated.write_bytes(data[: len(data) // 2])
        out = {"missing": missing, "truncated": truncated}
    return out


CR_SOP_CLASS, DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"


def synthetic_radiograph(height: int, width: int | None = None, seed: int = 0) -> np.ndarray:
    """One phantom radiograph (float [0, 1], dark lungs, bright mediastinum), resized to ``height x width``."""
    image = generate_phantoms(1, seed, PhantomConfig(image_size=max(height, width or height), noise=0.0)).images[0]
    if width is not None and width != height:
        image = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((width, height)))
    return np.clip(image, 0.0, 1.0)


def write_dicom(path: str | Path, image: np.ndarray, modality: str = "CR", monochrome1: bool = False,
                bits_stored: int = 12, slope: float = 1.0, intercept: float = 0.0,
                window: tuple[float, float] | None = None) -> Path:
    """A single-frame CR/DX DICOM of ``image`` (float [0, 1], bright = dense) with real-shaped tags.

    The displayed value ``image * (2**bits_stored - 1)`` is what Rescale Slope/Intercept must give back, stored
    inverted for ``MONOCHROME1`` (high = dark, as many CR plates write it); ``window`` = (centre, width) in those
    units, as Window Center/Width.
    """
    from ..data.readers.writers import file_dataset

    top = 2 ** bits_stored - 1
    shown = np.asarray(image, np.float64) * top
    value = top - shown if monochrome1 else shown
    stored = np.round((value - intercept) / slope)
    if stored.min() < 0 or stored.max() > top:
        raise ValueError("slope/intercept put stored values outside the stored bits")
    ds = file_dataset(CR_SOP_CLASS if modality == "CR" else DX_SOP_CLASS, modality)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


_STORY = ("A {age}-year-old {sex} presented with fever and dry cough for {days} days.",
          "RT-PCR of a nasopharyngeal swab was positive.")


def write_covid_fixture(root: str | Path, n_patients: int = 14, image_size: int = 64, seed: int = 0
                        ) -> dict[str, Path]:
    """A tiny folder in the covid-chestxray-dataset layout, drawn from phantoms (nothing of the collection copied).

    ``metadata.csv`` (the real columns that matter), ``images/`` and ``annotations/annotations.json`` (COCO boxes
    of both lungs, from the phantom geometry). Patient ``k`` has one PA image, even patients a second (AP,
    later offset). Its notes tell a clinical story, then "Chest x-ray showed <the phantom's findings>", then a CT
    sentence. Special files: patient 1's first image is a 16-bit PNG, patient 2's a MONOCHROME1 CR DICOM;
    patient 3's second image is truncated; one CT row and one row whose image is missing. Returns their paths.
    """
    from .phantoms import lung_boxes

    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    phantoms = generate_phantoms(2 * n_patients, seed, PhantomConfig(image_size=image_size))
    rows, coco_images, coco_boxes, out = [], [], [], {}
    for k in range(1, n_patients + 1):
        for shot in range(1 + (k % 2 == 0 or k == 3)):
            i = (k - 1) * 2 + shot
            name = f"patient{k:03d}-{shot}.png"
            pixels = phantoms.images[i]
            if k == 1 and shot == 0:
                name = f"patient{k:03d}-{shot}-16bit.png"
                Image.fromarray(np.round(800 + np.clip(pixels, 0, 1) * 3000).astype(np.uint16)).save(images / name)
                out["png16"] = images / name
            elif k == 2 and shot == 0:
                name = f"patient{k:03d}-{shot}.dcm"
                out["dicom"] = write_dicom(images / name, pixels, monochrome1=True, bits_stored=15, slope=2.0,
                                           intercept=-1024.0, window=(15000.0, 30000.0))
            else:
                Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(images / name)
            if k == 3 and shot == 1:
                out["truncated"] = _truncate(images / name)
            caption = _sentence_case(phantoms.captions[i]).rstrip(".").replace(". ", "; ").lower()
            notes = " ".join([_STORY[0].format(age=40 + k, sex="man" if k % 2 else "woman", days=k % 6 + 2),
                              _STORY[1], f"Chest x-ray showed: {caption}.",
                              "CT showed bilateral ground-glass opacities."])
            rows.append({"patientid": str(k), "offset": str(3 * shot), "sex": "M" if k % 2 else "F",
                         "age": str(40 + k), "finding": "No Finding" if "clear" in caption and k % 5 == 0
                         else "COVID-19", "view": "PA" if shot == 0 else "AP",
                         "modality": "X-ray", "date": "2020", "folder": "images", "filename": name,
                         "license": "CC BY", "clinical_notes": notes, "other_notes": ""})
            coco_images.append({"id": len(coco_images) + 1, "file_name": name, "width": image_size,
                                "height": image_size})
            for c, (x, y, w, h) in enumerate(lung_boxes(image_size).values(), start=1):
                coco_boxes.append({"id": len(coco_boxes) + 1, "image_id": len(coco_images), "category_id": c,
                                   "bbox": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)], "iscrowd": 0})
    rows.append({**rows[0], "filename": "ct-slice.png", "view": "Axial", "modality": "CT"})
    rows.append({**rows[0], "patientid": str(n_patients + 1), "filename": "not-downloaded.jpg"})
    out["missing"] = images / "not-downloaded.jpg"
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / "annotations.json").write_text(json.dumps(
        {"images": coco_images, "annotations": coco_boxes,
         "categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}]}))
    return out


_TONES = {"white": 235, "black": 20}
_PLACES = {"left": (0.3, 0.5), "right": (0.7, 0.5), "top": (0.5, 0.3), "bottom": (0.5, 0.7)}


def shape_picture(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[str]]:
    """An RGB picture of one white or black circle or square on grey, and two or three captions saying so."""
    tone, shape, place = (str(rng.choice(list(options))) for options in (_TONES, ("circle", "square"), _PLACES))
    image = Image.new("RGB", (size, size), (120, 128 + int(rng.integers(-8, 9)), 136))
    cx, cy = (v * size for v in _PLACES[place])
    r = size * 0.18
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((cx - r, cy - r, cx + r, cy + r), fill=(_TONES[tone],) * 3)
    captions = [f"A {tone} {shape} on the {place}.", f"There is a {shape} at the {place} of the picture",
                f"a {tone} {shape} near the {place} edge"]
    return image, captions[: 2 + int(rng.integers(0, 2))]


def _save_picture(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def _truncate(path: Path) -> Path:
    """Cut the file at ``path`` to its first third, in place (a truncated image); returns ``path``."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_coco_fixture(root: str | Path, n_train: int = 12, n_val: int = 8, image_size: int = 32, seed: int = 0,
                       year: str = "2017", damaged: bool = True) -> dict[str, Path]:
    """The MS-COCO layout under ``root``: ``annotations/captions_{train,val}<year>.json`` and ``train<year>/``,
    ``val<year>/`` with drawn shapes (``shape_picture``; every third image a PNG, the rest JPEG), file names as
    COCO spells them for ``year``. Train ids are 1.., val ids 1001...

    With ``damaged``: train image 2 is truncated, train image 3 is listed without a caption, and val image 1001
    is listed but its file is missing. Returns their paths (``broken``, ``no_caption``, ``missing``).
    """
    root, rng = Path(root), np.random.default_rng(seed)
    out: dict[str, Path] = {}
    for part, ids in (("train", range(1, n_train + 1)), ("val", range(1001, 1001 + n_val))):
        folder = root / f"{part}{year}"
        images, annotations = [], []
        for image_id in ids:
            stem = f"{image_id:012d}" if year != "2014" else f"COCO_{part}{year}_{image_id:012d}"
            name = f"{stem}.png" if image_id % 3 == 0 else f"{stem}.jpg"
            picture, captions = shape_picture(rng, image_size)
            _save_picture(picture, folder / name)
            images.append({"id": image_id, "file_name": name, "width": image_size, "height": image_size,
                           "license": 1})
            if damaged and image_id == 3:
                out["no_caption"] = folder / name
                continue
            annotations += [{"id": 10 * image_id + k, "image_id": image_id, "caption": c}
                            for k, c in enumerate(captions)]
        if damaged:
            if part == "train":
                out["broken"] = _truncate(folder / images[1]["file_name"])
            else:
                out["missing"] = folder / images[0]["file_name"]
                out["missing"].unlink()
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{part}{year}.json").write_text(json.dumps(
            {"info": {"description": "drawn shapes"}, "licenses": [{"id": 1, "name": "CC0"}], "images": images,
             "annotations": annotations}))
    return out


_KARPATHY_SPLITS = ("train", "train", "restval", "val", "test")


def write_karpathy_fixture(root: str | Path, n_images: int = 20, image_size: int = 32, seed: int = 0,
                           name: str = "dataset_coco.json", filepath: bool = True, damaged: bool = True
                           ) -> dict[str, Path]:
    """A Karpathy split file ``root/<name>`` of drawn shapes (``shape_picture``): image ``i`` is in split
    ``train, train, restval, val, test`` by ``i % 5``, with its tokenised captions. With ``filepath`` the images lie
    in ``root/train2014/`` or ``root/val2014/`` (as in ``dataset_coco.json``), else in ``root`` (the Flickr files).

    With ``damaged``: image 1 is truncated and image 2 has no sentences. Returns their paths (``broken``,
    ``no_caption``).
    """
    root, rng = Path(root), np.random.default_rng(seed)
    images, out = [], {}
    for i in range(n_images):
        split = _KARPATHY_SPLITS[i % 5]
        folder = ("val2014" if split in ("val", "test") else "train2014") if filepath else ""
        filename = f"{i:06d}.jpg"
        picture, captions = shape_picture(rng, image_size)
        _save_picture(picture, root / folder / filename)
        sentences = [{"tokens": caption.lower().rstrip(".").split(), "raw": caption, "imgid": i,
                      "sentid": 10 * i + k} for k, caption in enumerate(captions)]
        if damaged and i == 2:
            sentences, out["no_caption"] = [], root / folder / filename
        entry = {"filename": filename, "imgid": i, "split": split, "sentids": [s["sentid"] for s in sentences],
                 "sentences": sentences, "cocoid": 100 + i}
        images.append({"filepath": folder, **entry} if filepath else entry)
    if damaged:
        out["broken"] = _truncate(root / (images[1].get("filepath") or "") / images[1]["filename"])
    (root / name).write_text(json.dumps({"images": images, "dataset": name.removeprefix("dataset_")[:-5]}))
    return out
