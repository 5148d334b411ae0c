"""Readers for public chest X-ray report data sets, all producing the same ``CXRSample`` record.

- **Open-I, NLM layout** (Indiana University, ``ecgen-radiology/*.xml`` + PNG images): one XML per report,
  with ``<AbstractText Label="FINDINGS|IMPRESSION|INDICATION|COMPARISON">`` and one
  ``<parentImage id="CXR1_1_IM-0001-4001">`` per image (``<id>.png`` in the image folder). Open-I does not
  label views; pass the Kaggle ``indiana_projections.csv`` to fill them in.
- **Open-I, Kaggle layout** (``indiana_reports.csv``: ``uid, MeSH, Problems, image, indication, comparison,
  findings, impression``; ``indiana_projections.csv``: ``uid, filename, projection``;
  ``images/images_normalized/1_IM-0001-4001.dcm.png``). Kaggle file ``1_IM-0001-4001.dcm.png`` is NLM image
  ``CXR1_1_IM-0001-4001`` (``openi_image_id``); study ids are ``CXR<uid>`` in both layouts.
- **MIMIC-CXR** (``mimic-cxr-2.0.0-metadata.csv`` + ``files/pXX/pSUBJECT/sSTUDY.txt`` reports +
  ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`` images): one record per image with the study's report.

Malformed files raise ``CXRReadError`` naming the file. A missing image or report raises too, unless the
reader is given an ``errors`` list: then it is appended there (``file, study_id, reason``) and skipped.
Unreadable or truncated images are found later, when the images are decoded (``cxr.data``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from lxml import etree

FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")


class CXRReadError(ValueError):
    """A report, metadata table or image that cannot be read; the message names the file."""


@dataclass(frozen=True)
class CXRSample:
    """One image with its report sections, the same for every source."""

    source: str  # "openi" | "mimic-cxr" | "covid-cxr" | "phantoms" | "coco" | "karpathy"
    sample_id: str  # image id (Open-I parentImage id, MIMIC dicom_id, COCO image id)
    study_id: str
    subject_id: str | None
    image_path: Path
    view: str | None
    findings: str
    impression: str
    indication: str = ""
    comparison: str = ""
    labels: tuple[str, ...] = ()  # reference CheXpert observation keys, where the data set gives them (covid-cxr)
    captions: tuple[str, ...] = ()  # every reference caption, where a data set gives several per image (coco, karpathy)
    split: str | None = None  # the data set's own split, where it has one (coco, karpathy): train | val | test


def _clean(text: str | None) -> str:
    return " ".join((text or "").split()) if isinstance(text, str) else ""


_OPENI_NAME = re.compile(r"^(?:CXR)?(\d+)(?:_\d+)?_(IM-[\w-]+)$")


def openi_image_id(filename: str) -> str:
    """The layout-independent key of an Open-I image: ``CXR<uid>_IM-<nnnn>-<nnnn>``.

    NLM ids are ``CXR10_IM-0002-1001`` (and, for study 1 only, ``CXR1_1_IM-0001-4001``); Kaggle file names
    are ``10_IM-0002-1001.dcm.png`` and ``1_IM-0001-4001.dcm.png``. Both map to the same key. Names that
    follow neither pattern keep their stem.
    """
    stem = Path(filename).name.removesuffix(".png").removesuffix(".dcm")
    m = _OPENI_NAME.match(stem)
    return f"CXR{m.group(1)}_{m.group(2)}" if m else stem


def _missing(errors: list[dict[str, str]] | None, file: Path, study: str, reason: str) -> None:
    """Raise ``CXRReadError`` or, with an ``errors`` list, record the problem there."""
    if errors is None:
        raise CXRReadError(f"{reason}: {file}")
    errors.append({"file": str(file), "study_id": study, "reason": reason, "stage": "read"})


def _openi_views(projections_csv: str | Path | None) -> dict[str, str]:
    if projections_csv is None:
        return {}
    table = _read_csv(projections_csv, ("filename", "projection"))
    return {openi_image_id(f): str(p) for f, p in zip(table["filename"], table["projection"])}


def _openi_image_path(image_dir: Path, image_id: str) -> Path:
    """``<id>.png`` (NLM names) or, failing that, the Kaggle name ``<uid>_IM-....dcm.png``."""
    nlm = image_dir / f"{image_id}.png"
    kaggle = image_dir / f"{openi_image_id(image_id).removeprefix('CXR')}.dcm.png"
    return kaggle if not nlm.exists() and kaggle.exists() else nlm


def read_openi(report_dir: str | Path, image_dir: str | Path, projections_csv: str | Path | None = None,
               frontal_only: bool = True, require_findings: bool = True,
               errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """Every image of every Open-I XML report in ``report_dir`` (sorted by file name).

    With ``projections_csv`` the view is filled in (``Frontal``/``Lateral``) and, with ``frontal_only``,
    lateral images are dropped. Reports without a FINDINGS section are skipped if ``require_findings``.
    """
    report_dir, image_dir = Path(report_dir), Path(image_dir)
    xmls = sorted(report_dir.glob("*.xml"))
    if not xmls:
        raise CXRReadError(f"no Open-I XML reports in {report_dir}")
    views = _openi_views(projections_csv)
    samples = []
    for xml in xmls:
        try:
            root = etree.parse(str(xml)).getroot()
        except etree.XMLSyntaxError as err:
            raise CXRReadError(f"{xml}: not well-formed XML ({err})") from err
        sections = {el.get("Label", "").upper(): _clean(el.text) for el in root.iter("AbstractText")}
        if require_findings and not sections.get("FINDINGS"):
            continue
        uid = root.find("uId")
        study = uid.get("id") if uid is not None else xml.stem
        for image in root.iter("parentImage"):
            image_id = image.get("id")
            if not image_id:
                raise CXRReadError(f"{xml}: <parentImage> without an id")
            view = views.get(openi_image_id(image_id))
            if projections_csv is not None and frontal_only and view != "Frontal":
                continue
            path = _openi_image_path(image_dir, image_id)
            if not path.exists():
                _missing(errors, path, study, f"{xml}: image {image_id} not found")
                continue
            samples.append(CXRSample("openi", image_id, study, None, path, view, sections.get("FINDINGS", ""),
                                     sections.get("IMPRESSION", ""), sections.get("INDICATION", ""),
                                     sections.get("COMPARISON", "")))
    return samples


KAGGLE_REPORTS, KAGGLE_PROJECTIONS = "indiana_reports.csv", "indiana_projections.csv"
KAGGLE_IMAGES = Path("images") / "images_normalized"


def read_openi_kaggle(root: str | Path, frontal_only: bool = False, require_findings: bool = True,
                      errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """Every image of the Kaggle Open-I layout under ``root`` (reports and projections CSVs + PNGs).

    Images are listed by ``indiana_projections.csv`` and named by ``openi_image_id``; views are ``Frontal`` or
    ``Lateral``. Studies without findings text are skipped if ``require_findings``.
    """
    root = Path(root)
    reports = _read_csv(root / KAGGLE_REPORTS, ("uid", "findings", "impression", "indication", "comparison"))
    projections = _read_csv(root / KAGGLE_PROJECTIONS, ("uid", "filename", "projection"))
    text = {str(r.uid): r for r in reports.itertuples(index=False)}
    samples = []
    for row in projections.itertuples(index=False):
        uid, view = str(row.uid), str(row.projection)
        study = f"CXR{uid}"
        report = text.get(uid)
        if report is None:
            _missing(errors, root / KAGGLE_REPORTS, study, f"uid {uid} of {row.filename} has no report row")
            continue
        findings = _clean(report.findings)
        if (require_findings and not findings) or (frontal_only and view != "Frontal"):
            continue
        path = root / KAGGLE_IMAGES / str(row.filename)
        if not path.exists():
            _missing(errors, path, study, "image not found")
            continue
        samples.append(CXRSample("openi", openi_image_id(str(row.filename)), study, None, path, view, findings,
                                 _clean(report.impression), _clean(report.indication), _clean(report.comparison)))
    return samples


_SECTION = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)


def report_sections(text: str) -> dict[str, str]:
    """Split a free-text report into ``{HEADING: text}`` at lines starting with ``UPPER CASE:``."""
    heads = list(_SECTION.finditer(text))
    return {m.group(1).strip(): _clean(text[m.end(): nxt.start() if nxt else len(text)])
            for m, nxt in zip(heads, heads[1:] + [None])}


def read_mimic_cxr(root: str | Path, metadata_csv: str | Path | None = None,
                   views: tuple[str, ...] | None = FRONTAL_VIEWS, require_findings: bool = True,
                   errors: list[dict[str, str]] | None = None) -> list[CXRSample]:
    """Every image listed in the MIMIC-CXR metadata table (restricted to ``views``; ``None`` keeps all).

    ``root`` holds ``files/``; ``metadata_csv`` defaults to ``root/mimic-cxr-2.0.0-metadata.csv``.
    Images whose report lacks FINDINGS are skipped if ``require_findings``.
    """
    root = Path(root)
    meta = _read_csv(metadata_csv or root / "mimic-cxr-2.0.0-metadata.csv",
                     ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    if views is not None:
        meta = meta[meta["ViewPosition"].isin(views)]
    samples, reports = [], {}
    for row in meta.itertuples(index=False):
        subject, study = str(row.subject_id), str(row.study_id)
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        report = folder / f"s{study}.txt"
        if report not in reports:
            if not report.exists():
                reports[report] = {}
                _missing(errors, report, study, f"subject {subject}: report not found")
                continue
            reports[report] = report_sections(report.read_text(errors="replace"))
        sections = reports[report]
        if require_findings and not sections.get("FINDINGS"):
            continue
        image = folder / f"s{study}" / f"{row.dicom_id}.jpg"
        if not image.exists():
            _missing(errors, image, study, f"subject {subject}: image not found")
            continue
        view = row.ViewPosition if isinstance(row.ViewPosition, str) else None
        samples.append(CXRSample("mimic-cxr", str(row.dicom_id), study, subject, image, view,
                                 sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""),
                                 sections.get("INDICATION", ""), sections.get("COMPARISON", "")))
    return samples


def _read_csv(path: str | Path, required: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise CXRReadError(f"table not found: {path}")
    table = pd.read_csv(path, dtype=str)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CXRReadError(f"{path}: missing columns {missing}")
    return table

