"""General-image caption data sets, the layouts Show-Attend-Tell was scored on, as ``CXRSample`` records.

- **MS-COCO** (``read_coco``): ``root/annotations/captions_train2017.json`` and ``captions_val2017.json`` (or the
  2014 names), with the images in ``root/train2017/`` and ``root/val2017/``: the folder is named after the file
  (``captions_<name>.json`` -> ``<name>/``). A captions file holds ``images[] {id, file_name}`` and
  ``annotations[] {image_id, caption}``. The train file is the train split. The val file's images are split into
  val and test by their id (``hash_split``: about half each, the same on every machine), unless a test captions
  file is given: its images are then the test split and leave train and val (matched by image id). They are
  looked up by file name in the folder named after that file, then in the val and train folders.
- **Karpathy's splits** (``read_karpathy``): ``dataset_coco.json``, ``dataset_flickr8k.json`` or
  ``dataset_flickr30k.json``: ``images[] {filepath, filename, split, sentences[] {tokens}}``. The image is
  ``root/<filepath>/<filename>`` (the Flickr files have no ``filepath``: ``root/<filename>``); ``restval`` joins
  train.

Every caption of an image is one of its references (``CXRSample.captions``; ``findings`` stays empty) and the
data set's split is the sample's ``split``. Each image is its own study, with no patient. An image without a
caption, an image file that is missing and a caption of an image the file does not list go to ``errors`` (or
raise without it, as in ``readers``). A file in neither format raises ``CXRReadError`` naming what it lacks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .readers import CXRReadError, CXRSample, _missing

COCO_YEARS: tuple[str, ...] = ("2017", "2014")
KARPATHY_SPLITS: dict[str, str] = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def hash_split(image_id: int | str) -> str:
    """``val`` or ``test`` for an image of the COCO val file: the parity of the first byte of SHA-1(id)."""
    return "test" if hashlib.sha1(str(image_id).encode()).digest()[0] % 2 else "val"


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"captions file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CXRReadError(f"{path}: not valid JSON ({err})") from err


def _require(item: Any, keys: Sequence[str], where: str, path: Path, kind: str, hint: str = "",
             lists: Sequence[str] = ()) -> None:
    """Raise ``CXRReadError`` naming the first of ``keys`` that ``item`` (a JSON object) lacks, or the first of
    ``lists`` that is not a list."""
    missing = [k for k in keys if not isinstance(item, dict) or k not in item]
    if missing:
        raise CXRReadError(f"{path}: not a {kind} file: {where} has no {missing[0]!r}{hint}")
    for key in lists:
        if not isinstance(item[key], list):
            raise CXRReadError(f"{path}: not a {kind} file: in {where}, {key!r} is not a list")


def _check_coco(data: Any, path: Path) -> None:
    """The keys a COCO captions file needs; says so when it looks like a Karpathy split file instead."""
    images = data.get("images") if isinstance(data, dict) else None
    looks_karpathy = isinstance(images, list) and "annotations" not in data and any(
        isinstance(im, dict) and "sentences" in im for im in images[:1])
    hint = " (its images have 'sentences': a Karpathy split file, read it with --dataset karpathy)" \
        if looks_karpathy else ""
    _require(data, ("images", "annotations"), "the top level", path, "COCO captions", hint, ("images", "annotations"))
    for i, image in enumerate(data["images"]):
        _require(image, ("id", "file_name"), f"images[{i}]", path, "COCO captions")
    for i, ann in enumerate(data["annotations"]):
        _require(ann, ("image_id", "caption"), f"annotations[{i}]", path, "COCO captions",
                 " (an instances or keypoints file?)" if isinstance(ann, dict) and "bbox" in ann else "")


def _first_existing(name: str, folders: Sequence[Path]) -> Path:
    """``folder/name`` in the first folder that has it; else in the first folder (reported as missing)."""
    return next((f / name for f in folders if (f / name).exists()), folders[0] / name)


def _captioned_image(source: str, key: str, file: Path, captions: tuple[str, ...], split: str, listing: Path,
                     errors: list[dict[str, str]] | None) -> list[CXRSample]:
    """The one sample of a listed image; none, with the problem recorded (``readers._missing``), when it has no
    caption or its file is missing."""
    if not captions:
        _missing(errors, file, key, f"{listing.name}: image {key} has no caption")
    elif not file.exists():
        _missing(errors, file, key, f"{listing.name}: image {key} not found")
    else:
        return [CXRSample(source, key, key, None, file, None, "", "", captions=captions, split=split)]
    return []


def read_coco_captions(path: str | Path, folders: Sequence[Path], split_of: Callable[[int], str],
                       errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """The captioned images of one COCO captions file, looked up by file name in ``folders`` (in order)."""
    path = Path(path)
    data = _load_json(path)
    _check_coco(data, path)
    captions: dict[Any, list[str]] = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(" ".join(str(ann["caption"]).split()))
    samples, listed = [], set()
    for image in data["images"]:
        image_id, study = image["id"], str(image["id"])
        listed.add(image_id)
        file = _first_existing(str(image["file_name"]), folders)
        texts = tuple(c for c in captions.get(image_id, []) if c)
        samples += _captioned_image("coco", study, file, texts, split_of(image_id), path, errors)
    for image_id in sorted(captions.keys() - listed, key=str):
        _missing(errors, path, str(image_id), f"captions of image id {image_id}, which 'images' does not list")
    return samples


def coco_files(root: str | Path) -> tuple[Path, Path]:
    """The train and val captions files of the first year of ``COCO_YEARS`` that ``root/annotations`` has."""
    folder = Path(root) / "annotations"
    for year in COCO_YEARS:
        train, val = folder / f"captions_train{year}.json", folder / f"captions_val{year}.json"
        if train.exists() or val.exists():
            for file in (train, val):
                if not file.exists():
                    raise FileNotFoundError(f"COCO captions file not found: {file}")
            return train, val
    names = " or ".join(f"captions_train{y}.json + captions_val{y}.json" for y in COCO_YEARS)
    raise FileNotFoundError(f"no COCO captions in {folder} (expected {names})")


def image_folder(captions_file: Path, root: Path) -> Path:
    """``root/<name>`` for ``captions_<name>.json`` (``captions_val2017.json`` -> ``root/val2017``)."""
    return root / captions_file.stem.removeprefix("captions_")


def read_coco(root: str | Path, test_captions: str | Path | None = None,
              errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """Every captioned image of the COCO layout under ``root``, with its split (module docstring)."""
    root = Path(root)
    train_file, val_file = coco_files(root)
    train_dir, val_dir = image_folder(train_file, root), image_folder(val_file, root)
    samples = (read_coco_captions(train_file, [train_dir], lambda _: "train", errors)
               + read_coco_captions(val_file, [val_dir], hash_split if test_captions is None else lambda _: "val",
                                    errors))
    if test_captions is None:
        return samples
    test_file = Path(test_captions)
    test = read_coco_captions(test_file, [image_folder(test_file, root), val_dir, train_dir], lambda _: "test",
                              errors)
    in_test = {s.sample_id for s in test}
    return [s for s in samples if s.sample_id not in in_test] + test


def karpathy_file(root: str | Path, name: str | Path | None = None) -> Path:
    """``name`` as given, or inside ``root``; without it the one ``dataset_*.json`` in ``root``."""
    root = Path(root)
    if name is not None:
        path = Path(name)
        path = path if path.exists() or path.is_absolute() else root / path
        if not path.exists():
            raise FileNotFoundError(f"Karpathy split file not found: {name}")
        return path
    found = sorted(root.glob("dataset_*.json"))
    if len(found) != 1:
        raise FileNotFoundError(f"{len(found)} dataset_*.json files in {root}: name the Karpathy split file with "
                                "--json")
    return found[0]


def read_karpathy(root: str | Path, json_file: str | Path | None = None,
                  errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """Every captioned image of a Karpathy split file, with its split (``restval`` -> train; module docstring)."""
    root = Path(root)
    path = karpathy_file(root, json_file)
    data = _load_json(path)
    hint = " (it has 'annotations': a COCO captions file, read it with --dataset coco)" \
        if isinstance(data, dict) and "annotations" in data else ""
    _require(data, ("images",), "the top level", path, "Karpathy split", hint, ("images",))
    samples = []
    for i, image in enumerate(data["images"]):
        _require(image, ("filename", "split", "sentences"), f"images[{i}]", path, "Karpathy split", hint,
                 ("sentences",))
        for k, sentence in enumerate(image["sentences"]):
            _require(sentence, ("tokens",), f"images[{i}].sentences[{k}]", path, "Karpathy split", lists=("tokens",))
        if image["split"] not in KARPATHY_SPLITS:
            raise CXRReadError(f"{path}: images[{i}] has split {image['split']!r}, not one of "
                               f"{sorted(KARPATHY_SPLITS)}")
        relative = (Path(image.get("filepath") or "") / image["filename"]).as_posix()
        file = root / relative
        texts = tuple(" ".join(map(str, s["tokens"])) for s in image["sentences"] if s["tokens"])
        samples += _captioned_image("karpathy", relative, file, texts, KARPATHY_SPLITS[image["split"]], path, errors)
    return samples
