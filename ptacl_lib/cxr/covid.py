"""The public COVID-19 chest X-ray collection (``ieee8023/covid-chestxray-dataset`` layout) as ``CXRSample`` records.

Layout under ``root``: ``metadata.csv`` (one row per image: ``patientid, offset, sex, age, finding, view,
modality, date, folder, filename, license, clinical_notes, ...``), the images in ``root/<folder>/<filename>``
(PNG 8/16-bit, JPEG, DICOM), and optionally ``annotations/annotations.json``: COCO boxes of the right and left
lung per image (``images[].file_name, width, height``; ``annotations[].bbox = [x, y, w, h]``, categories
"Right Lung"/"Left Lung"), as the lung-bounding-box mirror of the collection ships it.

Only X-ray rows are read (CT rows and CT views are skipped). Each image is its own study (notes and finding
differ from one date to the next), its patient is ``patientid``, so splits keep every patient whole.
Licences are per image (the ``license`` column); the collection is read where it lies, never copied.

The caption target (``radiograph_sentences``, stored as the sample's ``findings``): the sentences of
``clinical_notes`` that describe a radiograph. Rule: split the notes into sentences at ``.``, ``!`` or ``?``
followed by a space (decimals stay whole); then, in order:

1. drop it when it names another modality or a test (``OTHER_MODALITY``: CT, tomography, ultrasound, MRI, PET,
   scan, PCR, swab) -- reason ``dropped_other_modality``;
2. keep it when it names the radiograph (``RADIOGRAPH_WORDS``: radiograph, x-ray, cxr, film, imaging, ...) --
   ``kept_radiograph``;
3. drop it when it tells the clinical story (``CLINICAL_WORDS``: presented, admitted, history, fever, cough,
   examination, treatment, oxygen, ...) -- ``dropped_clinical``;
4. keep it when it names a radiographic pattern or region (``PATTERN_WORDS``: ground-glass, interstitial,
   reticular, hilar, lobe, zone, ...) or a finding the CheXpert rule labeller knows (``mentions.find_mentions``,
   asserted or denied) other than pneumonia, lesion/mass and devices, which the notes also say of the patient --
   ``kept_pattern``;
5. drop the rest -- ``dropped_no_radiograph_content``.

A kept sentence then loses its heading (``cut_heading``): one to four words and a colon at its start, as the
notes label their parts ("Imaging Notes:", "CXR:", "Chest X-ray:", "Discussion:", "Patient 6 - CXR:"). The rule
has read the heading before it is cut ("CT findings: ..." is dropped as CT, "Imaging Notes: ..." kept as
imaging), but it is a label of the notes, not words of a report, so no caption target carries one.

``sentence_reason`` returns the reason of the step that decides a sentence (a ``SentenceReason``, whose value is
the word above); ``caption_rule_counts`` counts those returned reasons over the collection, so every count is
the rule's own.

Finding labels (``finding_labels``, the sample's ``labels``): the ``finding`` column mapped to CheXpert
observations (``FINDING_TO_CHEXPERT``: every infectious or inflammatory pneumonia -> Pneumonia, "No Finding" ->
No Finding; ARDS -> Edema and Lung Opacity; "todo"/"Unknown" add nothing), joined with the observations the
CheXpert rule labeller finds asserted or uncertain in the caption target.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from .mentions import find_mentions, observations_present
from .readers import CXRReadError, CXRSample, _missing, _read_csv
from .vocab import tokenize

METADATA = "metadata.csv"
ANNOTATIONS = Path("annotations") / "annotations.json"
XRAY_MODALITIES = frozenset({"x-ray", "xray", "cr", "dx"})
NON_XRAY_VIEWS = frozenset({"axial", "coronal", "sagittal"})
RADIOGRAPH_WORDS = frozenset({"radiograph", "radiographs", "radiography", "radiographic", "radiological",
                              "radiologic", "radiologically", "x", "xray", "xrays", "cxr", "cxrs", "film", "films",
                              "roentgenogram", "imaging", "image", "images"})
PATTERN_WORDS = frozenset({"ground", "glass", "interstitial", "interstitium", "reticular", "reticulonodular",
                           "patchy", "airspace", "hilar", "hilum", "hila", "perihilar", "costophrenic",
                           "hemidiaphragm", "hemidiaphragms", "mediastinum", "mediastinal", "cardiomediastinal",
                           "shadow", "shadows", "shadowing", "markings", "cavitation", "parenchymal", "lobe", "lobes",
                           "zone", "zones", "pattern"})
CLINICAL_WORDS = frozenset({"presented", "presenting", "admitted", "history", "fever", "cough", "dyspnoea", "dyspnea",
                            "examination", "auscultation", "crackles", "treatment", "treated", "started", "prescribed",
                            "discharged", "symptoms", "saturation", "oxygen", "intubated", "ventilation", "icu",
                            "temperature", "diagnosed", "tested", "died", "year", "old"})
_CLINICAL_DIAGNOSES = frozenset({"pneumonia", "nodule", "support_devices"})  # also said of the patient, not the image
OTHER_MODALITY = frozenset({"ct", "hrct", "cta", "tomography", "ultrasound", "ultrasonography", "sonography",
                            "mri", "pet", "scan", "scans", "pcr", "swab", "swabs", "rt"})
FINDING_TO_CHEXPERT: dict[str, tuple[str, ...]] = {"no finding": ("no_finding",), "ards": ("edema", "lung_opacity")}
_NO_LABEL = frozenset({"todo", "unknown", ""})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^[A-Za-z0-9][\w/.-]*(?:[ \t]+[\w/.-]+){0,3}[ \t]*:(?:\s+|$)")


def note_sentences(notes: str) -> list[str]:
    """``notes`` split at ``.``/``!``/``?`` followed by white space (so "3.5" stays whole), stripped, non-empty."""
    return [s.strip() for s in _SENTENCE_END.split(notes or "") if s.strip(" .!?")]


def cut_heading(sentence: str) -> str:
    """``sentence`` without a leading heading: one to four words followed by a colon and white space
    ("Imaging Notes: Patchy opacities." -> "Patchy opacities."); a time such as "10:30" is not a heading."""
    return _HEADING.sub("", sentence, count=1)


class SentenceReason(str, Enum):
    """Why the caption rule keeps or drops a sentence (module docstring, steps 1-5). The value is a word; the
    numbers are counts of these values (``caption_rule_counts``)."""

    OTHER_MODALITY = "dropped_other_modality"
    RADIOGRAPH = "kept_radiograph"
    CLINICAL = "dropped_clinical"
    PATTERN = "kept_pattern"
    NO_CONTENT = "dropped_no_radiograph_content"

    @property
    def kept(self) -> bool:
        return self.value.startswith("kept")


def sentence_reason(sentence: str) -> SentenceReason:
    """The caption rule for one sentence: the first of steps 1-5 (module docstring) that decides it."""
    words = set(tokenize(sentence))
    if words & OTHER_MODALITY:
        return SentenceReason.OTHER_MODALITY
    if words & RADIOGRAPH_WORDS:
        return SentenceReason.RADIOGRAPH
    if words & CLINICAL_WORDS:
        return SentenceReason.CLINICAL
    if words & PATTERN_WORDS or any(m.pathology not in _CLINICAL_DIAGNOSES for m in find_mentions(sentence)):
        return SentenceReason.PATTERN
    return SentenceReason.NO_CONTENT


class JudgedSentence(NamedTuple):
    """One sentence of the notes, the caption rule's reason, and its caption text (``cut_heading``)."""

    sentence: str
    reason: SentenceReason
    text: str


def judge_notes(notes: str) -> list[JudgedSentence]:
    """Every sentence of ``notes`` in order, judged by ``sentence_reason`` (heading included) and with its text."""
    return [JudgedSentence(s, sentence_reason(s), cut_heading(s)) for s in note_sentences(notes)]


def caption_of(judged: Sequence[JudgedSentence]) -> str:
    """The text of the kept sentences of ``judge_notes``' output, joined by spaces ("" when none)."""
    return " ".join(j.text for j in judged if j.reason.kept and j.text)


def radiograph_sentences(notes: str) -> str:
    """The caption target of ``notes``: the sentences that describe the radiograph, headings cut
    (``caption_of(judge_notes(notes))``)."""
    return caption_of(judge_notes(notes))


def finding_labels(finding: str, caption: str) -> tuple[str, ...]:
    """Sorted CheXpert observation keys from the ``finding`` column and the caption target (module docstring)."""
    labels: set[str] = set()
    for part in (p.strip().lower() for p in (finding or "").split(",")):
        if part in _NO_LABEL:
            continue
        labels.update(FINDING_TO_CHEXPERT.get(part, ("pneumonia",)))
    labels |= observations_present(caption) if caption else set()
    if len(labels) > 1:
        labels.discard("no_finding")
    return tuple(sorted(labels))


def _is_xray(row: pd.Series) -> bool:
    modality = str(row.get("modality", "") or "").strip().lower()
    view = str(row.get("view", "") or "").strip().lower()
    return modality in XRAY_MODALITIES and view not in NON_XRAY_VIEWS


def _text(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def read_covid_cxr(root: str | Path, frontal_only: bool = False, errors: list[dict[str, str]] | None = None
                   ) -> list[CXRSample]:
    """Every X-ray image listed in ``root/metadata.csv`` (``frontal_only``: PA/AP views only); missing files
    go to ``errors`` (or raise without it). Images whose notes describe no radiograph have empty findings."""
    root = Path(root)
    table = _read_csv(root / METADATA, ("patientid", "finding", "view", "modality", "filename"))
    if "folder" not in table.columns:
        table["folder"] = "images"
    samples = []
    for _, row in table.iterrows():
        if not _is_xray(row):
            continue
        view = _text(row["view"]) or None
        if frontal_only and not (view or "").upper().startswith(("PA", "AP")):
            continue
        filename = str(row["filename"])
        path = root / (_text(row["folder"]) or "images") / filename
        patient = _text(row["patientid"])
        if not path.exists():
            _missing(errors, path, filename, f"patient {patient}: image not found")
            continue
        caption = radiograph_sentences(_text(row.get("clinical_notes")))
        samples.append(CXRSample("covid-cxr", filename, filename, patient, path, view, caption, "",
                                 labels=finding_labels(_text(row["finding"]), caption)))
    return samples


def caption_rule_counts(root: str | Path) -> dict[str, int]:
    """What the caption rule keeps and drops over the X-ray rows of ``root/metadata.csv``, counted from its reasons.

    ``xray_rows``, ``rows_with_notes``, ``rows_with_caption``, ``sentences``, ``sentences_kept``,
    ``kept_headings_cut`` (kept sentences that lost a heading) and one count per ``SentenceReason``
    (``sentences_<value>``); the reasons' counts sum to ``sentences``.
    """
    table = _read_csv(Path(root) / METADATA, ("patientid", "finding", "view", "modality", "filename"))
    notes = [_text(row.get("clinical_notes")) for _, row in table.iterrows() if _is_xray(row)]
    judged = [judge_notes(n) for n in notes]
    reasons = Counter(j.reason for sentences in judged for j in sentences)
    return {"xray_rows": len(notes), "rows_with_notes": sum(bool(n) for n in notes),
            "rows_with_caption": sum(bool(caption_of(j)) for j in judged), "sentences": sum(reasons.values()),
            "sentences_kept": sum(n for reason, n in reasons.items() if reason.kept),
            "kept_headings_cut": sum(j.reason.kept and j.text != j.sentence for sentences in judged for j in sentences),
            **{f"sentences_{reason.value}": reasons[reason] for reason in SentenceReason}}


LungBoxes = dict[str, tuple[int, int, list[tuple[float, float, float, float]]]]


def read_lung_boxes(path: str | Path) -> LungBoxes:
    """``file_name -> (width, height, [(x, y, w, h), ...])`` from a COCO ``annotations.json`` (lung boxes)."""
    path = Path(path)
    try:
        coco = json.loads(path.read_text())
        images = {im["id"]: im for im in coco["images"]}
        out: LungBoxes = {}
        for ann in coco["annotations"]:
            im = images[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w > 0 and h > 0:
                out.setdefault(im["file_name"], (int(im["width"]), int(im["height"]), []))[2].append((x, y, w, h))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CXRReadError(f"{path}: not a COCO annotations file ({type(err).__name__}: {err})") from err
    return out
