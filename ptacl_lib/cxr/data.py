"""Real chest X-ray data for training: load a data set, clean its reports, split by study, stream images.

- ``load_samples(dataset, root)`` reads one of ``DATASETS`` into ``CXRSample`` records (one per image).
- ``report_targets`` gives a sample's cleaned references: ``clean_report`` is the rule every report goes
  through, ``clean_caption`` the one for general-image captions (documented there).
- ``split_studies`` assigns whole studies (whole patients where the data set has patient ids) to
  train/val/test, so no study and no patient is in two splits; ``splits_from_table`` takes a given split and
  ``splits_of_samples`` the data set's own (coco, karpathy).
- ``ImageStore`` decodes an image on demand (in DataLoader workers), resized to the model's size,
  optionally through a cache of resized uint8 arrays, so memory holds only a batch, never the data set.
- ``scan_images`` decodes every image once in a worker pool, fills the cache and reports unreadable or
  truncated images; the training and evaluation loaders then skip them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .images import decode_image, resize_grey
from .readers import CXRReadError, CXRSample, read_mimic_cxr, read_openi, read_openi_kaggle
from .vocab import Vocabulary, detokenize, tokenize

DATASETS: tuple[str, ...] = ("openi", "openi-kaggle", "mimic-cxr", "covid-cxr", "phantoms", "coco", "karpathy")
#: General-image caption data sets: several captions per image, their own split, no findings and no lung boxes.
CAPTION_DATASETS: tuple[str, ...] = ("coco", "karpathy")
TARGETS: tuple[str, ...] = ("findings", "findings+impression", "impression")
ERROR_COLUMNS: tuple[str, ...] = ("file", "study_id", "reason", "stage")
_PLACEHOLDER = re.compile(r"x{2,}")
_PUNCT = frozenset(".,;:")


def clean_report(text: str) -> str:
    """Lower-case tokens of a report with de-identification and numbers removed.

    The rule: tokenise (``vocab.tokenize``: words, numbers and ``.,;:``); drop ``XXXX`` placeholders (any
    token of two or more x's, Open-I's de-identification mark) and every token holding a digit (sizes,
    dates, list numbering "1."); collapse runs of punctuation to their first mark and drop leading ones;
    end with ``.``. Sizes such as "3 cm" are lost by design: the captioner cannot measure them.
    """
    out: list[str] = []
    for token in tokenize(text):
        if _PLACEHOLDER.fullmatch(token) or any(c.isdigit() for c in token):
            continue
        if token in _PUNCT and (not out or out[-1] in _PUNCT):
            continue
        out.append(token)
    if out and out[-1] in _PUNCT:
        out[-1] = "."
    elif out:
        out.append(".")
    return detokenize(out)


def clean_caption(text: str) -> str:
    """A general-image caption as its reference: lower-case words and numbers, punctuation dropped (as Karpathy's
    tokens and the COCO evaluation's tokenizer give them), single spaces."""
    return detokenize([t for t in tokenize(text) if t not in _PUNCT])


def report_targets(sample: CXRSample, target: str = "findings") -> tuple[str, ...]:
    """Every cleaned reference text of ``sample``, empty ones left out.

    A sample with ``captions`` (coco, karpathy) has one per caption (``clean_caption``); a report has one: the
    ``target`` sections (see ``TARGETS``) joined and cleaned by ``clean_report``.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if sample.captions:
        texts = [clean_caption(c) for c in sample.captions]
    else:
        parts = {"findings": [sample.findings], "impression": [sample.impression],
                 "findings+impression": [sample.findings, sample.impression]}[target]
        texts = [clean_report(" . ".join(p for p in parts if p))]
    return tuple(t for t in texts if t)


def report_target(sample: CXRSample, target: str = "findings") -> str:
    """The first of ``report_targets`` ("" when none): a report's one target text."""
    return next(iter(report_targets(sample, target)), "")


def load_samples(dataset: str, root: str | Path, errors: list[dict[str, str]] | None = None,
                 target: str = "findings", frontal_only: bool = False, n_phantoms: int = 200,
                 image_size: int = 128, seed: int = 0, karpathy_json: str | Path | None = None,
                 coco_test_captions: str | Path | None = None) -> list[CXRSample]:
    """Every usable image of ``dataset`` under ``root``; samples without a non-empty cleaned target are dropped.

    Layouts: ``openi`` = ``root/ecgen-radiology/*.xml`` + ``root/images/*.png`` (+ optional
    ``root/indiana_projections.csv`` for views); ``openi-kaggle`` = ``read_openi_kaggle``; ``mimic-cxr`` =
    ``root/mimic-cxr-2.0.0-metadata.csv`` + ``root/files/``; ``covid-cxr`` = ``root/metadata.csv`` +
    ``root/images/`` (``covid.read_covid_cxr``: the notes' radiograph sentences are its findings, it has no
    impression); ``phantoms`` writes ``n_phantoms`` synthetic radiographs as PNGs under ``root`` (once) and
    reads them back; ``coco`` = ``coco.read_coco`` (``coco_test_captions``: a captions file of the test split) and
    ``karpathy`` = ``coco.read_karpathy`` (``karpathy_json``: the split file, else the one ``dataset_*.json`` in
    ``root``), whose samples carry several captions and their own split.
    """
    root = Path(root)
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset != "phantoms" and not root.is_dir():
        raise FileNotFoundError(f"{dataset} root folder not found: {root}")
    if dataset in CAPTION_DATASETS and (target != "findings" or frontal_only):
        raise ValueError(f"{dataset} has captions only, no report sections or views: its target is every caption "
                         "(leave --target and --frontal-only out)")
    if (karpathy_json and dataset != "karpathy") or (coco_test_captions and dataset != "coco"):
        raise ValueError("a Karpathy split file (--json) is for --dataset karpathy, a test captions file "
                         "(--test-json) for --dataset coco")
    if dataset == "openi":
        projections = root / "indiana_projections.csv"
        samples = read_openi(root / "ecgen-radiology", root / "images",
                             projections if projections.exists() else None, frontal_only, errors=errors)
    elif dataset == "openi-kaggle":
        samples = read_openi_kaggle(root, frontal_only, errors=errors)
    elif dataset == "mimic-cxr":
        samples = read_mimic_cxr(root, views=("PA", "AP") if frontal_only else None, errors=errors)
    elif dataset == "covid-cxr":
        from .covid import read_covid_cxr

        if target == "impression":
            raise ValueError("covid-cxr has no impression: its target is the notes' radiograph sentences (findings)")
        samples = read_covid_cxr(root, frontal_only, errors=errors)
    elif dataset == "coco":
        from .coco import read_coco

        samples = read_coco(root, coco_test_captions, errors=errors)
    elif dataset == "karpathy":
        from .coco import read_karpathy

        samples = read_karpathy(root, karpathy_json, errors=errors)
    else:
        samples = write_phantom_images(root, n_phantoms, image_size, seed)
    return [s for s in samples if report_targets(s, target)]


def write_phantom_images(folder: str | Path, n: int, image_size: int, seed: int) -> list[CXRSample]:
    """Phantoms as 8-bit PNGs plus ``phantoms.csv`` in ``folder`` (reused when already there); one study each."""
    from .phantoms import PhantomConfig, generate_phantoms

    folder = Path(folder)
    table_path = folder / "phantoms.csv"
    if not table_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        phantoms = generate_phantoms(n, seed, PhantomConfig(image_size=image_size))
        names = [f"phantom_{i:05d}.png" for i in range(n)]
        for name, image in zip(names, phantoms.images):
            Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / name)
        pd.DataFrame({"file": names, "caption": phantoms.captions}).to_csv(table_path, index=False)
    table = pd.read_csv(table_path, dtype=str)
    return [CXRSample("phantoms", Path(f).stem, Path(f).stem, None, folder / f, "PA", c, "")
            for f, c in zip(table["file"], table["caption"])]


def split_studies(samples: Sequence[CXRSample], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  seed: int = 0) -> pd.DataFrame:
    """``study_id, subject_id, split`` with whole groups per split (patients if known, else studies).

    Groups are shuffled with ``seed`` and cut at the cumulative ``fractions`` of groups (train, val, test).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    studies = _studies(samples)
    if studies.empty:
        raise ValueError("no studies to split")
    group = np.where(studies["subject_id"] != "", "p" + studies["subject_id"], "s" + studies["study_id"])
    groups = np.array(sorted(set(group)))
    order = np.random.default_rng(seed).permutation(len(groups))
    cuts = np.round(np.cumsum(fractions)[:2] * len(groups)).astype(int)
    names = np.empty(len(groups), dtype=object)
    names[order[: cuts[0]]], names[order[cuts[0]: cuts[1]]], names[order[cuts[1]:]] = "train", "val", "test"
    studies["split"] = pd.Series(group).map(dict(zip(groups, names))).to_numpy()
    return studies


_SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}


def splits_from_table(samples: Sequence[CXRSample], path: str | Path) -> pd.DataFrame:
    """``study_id, subject_id, split`` from a given split table, e.g. MIMIC-CXR's ``mimic-cxr-2.0.0-split.csv``.

    The table needs ``study_id`` and ``split`` (``train``, ``val``/``validate``, ``test``); one row per image is
    fine. Studies of ``samples`` that the table does not list are left out; a study listed in two splits is an
    error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"split table not found: {path}")
    table = pd.read_csv(path, dtype=str)
    if not {"study_id", "split"} <= set(table.columns):
        raise ValueError(f"{path}: needs columns study_id and split, has {list(table.columns)}")
    table["split"] = table["split"].str.strip().str.lower().map(_SPLIT_NAMES)
    if table["split"].isna().any():
        raise ValueError(f"{path}: split values must be train, val/validate or test")
    per_study = table.drop_duplicates(["study_id", "split"])
    twice = per_study["study_id"][per_study["study_id"].duplicated()]
    if len(twice):
        raise ValueError(f"{path}: study {twice.iloc[0]} is in two splits")
    studies = _studies(samples)
    studies["split"] = studies["study_id"].map(dict(zip(per_study["study_id"], per_study["split"])))
    return studies.dropna(subset=["split"]).reset_index(drop=True)


def splits_of_samples(samples: Sequence[CXRSample]) -> pd.DataFrame:
    """``study_id, subject_id, split`` from the samples' own ``split`` (coco, karpathy); every sample needs one."""
    unsplit = [s.sample_id for s in samples if s.split not in ("train", "val", "test")]
    if unsplit:
        raise ValueError(f"{len(unsplit)} samples have no split of their own (first: {unsplit[0]})")
    studies = _studies(samples)
    studies["split"] = studies["study_id"].map({s.study_id: s.split for s in samples})
    return studies


def _studies(samples: Sequence[CXRSample]) -> pd.DataFrame:
    """``study_id, subject_id`` (``""`` where unknown), one row per study in order of first appearance."""
    studies = pd.DataFrame([(s.study_id, s.subject_id or "") for s in samples], columns=["study_id", "subject_id"])
    return studies.drop_duplicates("study_id").reset_index(drop=True)


class ImageStore:
    """Decode one sample's image as grey uint8 ``[size, size]``; with ``cache_dir``, through a resized cache.

    Decoding is ``images.decode_image`` (DICOM, 8/16-bit PNG, JPEG with EXIF orientation, colour -> grey,
    percentile normalisation), then ``images.resize_grey``.

    The cache holds one ``.npy`` per image (``size**2`` bytes; 256 px -> 64 KiB, so MIMIC-CXR's ~370k
    images take about 24 GiB), named by a hash of the source path, written atomically.
    """

    def __init__(self, size: int, cache_dir: str | Path | None = None) -> None:
        self.size = size
        # "-v2": decoded by images.decode_image (percentile-normalised); caches of the older clipping decoder differ
        self.cache_dir = Path(cache_dir) / f"{size}px-v2" if cache_dir else None

    def cache_path(self, sample: CXRSample) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha1(str(sample.image_path).encode()).hexdigest()[:24] + ".npy")

    def load(self, sample: CXRSample) -> np.ndarray:
        """The resized image; raises ``CXRReadError`` naming the file when it is missing, corrupt or truncated."""
        cached = self.cache_path(sample)
        if cached is not None and cached.exists():
            return np.load(cached)
        grey = resize_grey(decode_image(sample.image_path), self.size)  # ImageDecodeError is a CXRReadError
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, grey)
            os.replace(tmp, cached)
        return grey

    def load_file(self, path: str | Path) -> np.ndarray:
        """One image file as float32 ``[size, size]`` in [0, 1] (no cache), for captioning single files."""
        path = Path(path)
        return self.load(CXRSample("file", path.stem, path.stem, None, path, None, "", "")).astype(np.float32) / 255.0


class _ScanDataset(Dataset):
    def __init__(self, samples: Sequence[CXRSample], store: ImageStore) -> None:
        self.samples, self.store = list(samples), store

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, str | None]:
        try:
            self.store.load(self.samples[i])
            return i, None
        except CXRReadError as err:
            return i, str(err)


def scan_images(samples: Sequence[CXRSample], store: ImageStore, workers: int = 0, stage: str = "scan"
                ) -> tuple[list[CXRSample], list[dict[str, str]]]:
    """(readable samples, one error row per unreadable image); decodes in ``workers`` processes, fills the cache."""
    loader = DataLoader(_ScanDataset(samples, store), batch_size=None, num_workers=workers)
    bad: dict[int, str] = {i: reason for i, reason in loader if reason is not None}
    errors = [{"file": str(samples[i].image_path), "study_id": samples[i].study_id, "reason": r, "stage": stage}
              for i, r in sorted(bad.items())]
    return [s for i, s in enumerate(samples) if i not in bad], errors


def write_errors(path: str | Path, errors: Sequence[dict[str, str]]) -> Path:
    """``errors.csv`` (``file, study_id, reason, stage``), header only when there is nothing to report."""
    path = Path(path)
    pd.DataFrame(list(errors), columns=list(ERROR_COLUMNS)).to_csv(path, index=False)
    return path


class CaptionDataset(Dataset):
    """``(image float32 [S, S] in [0, 1], token ids)`` per sample; an unreadable image yields ``None``."""

    def __init__(self, samples: Sequence[CXRSample], captions: Sequence[str], vocab: Vocabulary,
                 store: ImageStore, max_len: int) -> None:
        if len(samples) != len(captions):
            raise ValueError(f"{len(samples)} samples but {len(captions)} captions")
        self.samples, self.captions, self.vocab, self.store, self.max_len = list(samples), list(captions), vocab, \
            store, max_len

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[int], int] | None:
        try:
            image = self.store.load(self.samples[i])
        except CXRReadError:
            return None  # already listed by scan_images; a file that breaks mid-run is skipped too
        return torch.from_numpy(image.astype(np.float32) / 255.0), self.vocab.encode(self.captions[i], self.max_len), i


def collate_captions(items: Sequence[Any], pad: int = 0) -> dict[str, torch.Tensor] | None:
    """Stack images, pad token ids with ``pad``; ``None`` items (unreadable images) are dropped."""
    items = [x for x in items if x is not None]
    if not items:
        return None
    length = max(len(ids) for _, ids, _ in items)
    captions = torch.full((len(items), length), pad, dtype=torch.long)
    for row, (_, ids, _) in enumerate(items):
        captions[row, : len(ids)] = torch.tensor(ids)
    return {"images": torch.stack([im for im, _, _ in items]), "captions": captions,
            "index": torch.tensor([i for _, _, i in items])}

