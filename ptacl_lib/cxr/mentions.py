"""Find which of the 14 CheXpert observations a report text asserts, denies or leaves uncertain.

One rule set serves three jobs: per-pathology heatmaps (which generated words name a finding),
the report writer's post-check (every caption finding is in the report, none invented) and
finding-level precision/recall/F1 of generated captions.

Rules (rule-based, in the spirit of the CheXpert labeller, not a copy of it):

- A finding is named by one of its ``TERMS`` ("atelectasis", "opacities", "congestion", ...) or by an
  anchor word together with a modifier in the same clause (``COMPOUNDS``: "heart" + "enlarged",
  "mediastinum" + "widened", "pleural" + "thickening", "blunting" + "costophrenic").
- Negation: a cue (``no``, ``without``, ``not``, ``negative``, ``free``, ``absent``, ``nor``, ``clear of``)
  negates the terms after it up to the end of the clause (``.``, ``;``, ``but``, ``however``, ``although``).
- Uncertainty: a hedge anywhere in the clause ("may", "possible", "likely", "cannot be excluded",
  "versus", ...) marks a non-negated mention ``uncertain``. Uncertain mentions count as asserted
  (the "U-Ones" policy) in ``positive_findings``, heatmaps, finding F1 and the post-check.
- Side and zone are the nearest such words within the same comma-delimited part of the clause.

Pathology keys are short names; ``CHEXPERT`` maps them to the CheXpert labels. The five that the
phantoms draw keep their names (``nodule`` is CheXpert's Lung Lesion, ``effusion`` its Pleural Effusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .vocab import tokenize

CHEXPERT: dict[str, str] = {
    "no_finding": "No Finding", "enlarged_cardiomediastinum": "Enlarged Cardiomediastinum",
    "cardiomegaly": "Cardiomegaly", "nodule": "Lung Lesion", "lung_opacity": "Lung Opacity", "edema": "Edema",
    "consolidation": "Consolidation", "pneumonia": "Pneumonia", "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax", "effusion": "Pleural Effusion", "pleural_other": "Pleural Other",
    "fracture": "Fracture", "support_devices": "Support Devices",
}
TERMS: dict[str, frozenset[str]] = {
    "cardiomegaly": frozenset({"cardiomegaly"}),
    "effusion": frozenset({"effusion", "effusions"}),
    "nodule": frozenset({"nodule", "nodules", "nodular", "mass", "masses", "lesion", "lesions", "tumor", "neoplasm",
                         "carcinoma", "metastasis", "metastases", "metastatic"}),
    "consolidation": frozenset({"consolidation", "consolidations", "consolidative", "consolidated", "airspace"}),
    "pneumothorax": frozenset({"pneumothorax", "pneumothoraces"}),
    "enlarged_cardiomediastinum": frozenset({"cardiomediastinomegaly"}),
    "lung_opacity": frozenset({"opacity", "opacities", "opacification", "opacified", "infiltrate", "infiltrates",
                               "infiltration", "density", "densities", "haziness"}),
    "edema": frozenset({"edema", "congestion", "chf"}),
    "pneumonia": frozenset({"pneumonia", "pneumonias", "bronchopneumonia", "infection", "infectious"}),
    "atelectasis": frozenset({"atelectasis", "atelectatic", "atelectases", "collapse", "collapsed"}),
    "pleural_other": frozenset({"fibrothorax"}),
    "fracture": frozenset({"fracture", "fractures", "fractured"}),
    "support_devices": frozenset({"tube", "tubes", "catheter", "catheters", "pacemaker", "pacer", "picc", "stent",
                                  "stents", "sternotomy", "wires", "clips", "defibrillator", "icd", "prosthesis",
                                  "hardware", "device", "devices"}),
}
# An anchor word and a modifier word in the same clause name the finding ("the heart is enlarged").
_ENLARGED = frozenset({"enlarged", "enlargement"})
COMPOUNDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "cardiomegaly": (frozenset({"heart", "cardiac"}), _ENLARGED),
    "enlarged_cardiomediastinum": (frozenset({"mediastinum", "mediastinal", "cardiomediastinal"}),
                                   _ENLARGED | {"widened", "widening", "prominent", "prominence"}),
    "pleural_other": (frozenset({"pleural"}), frozenset({"thickening", "thickened", "plaque", "plaques",
                                                         "scarring", "calcification", "calcifications"})),
    "effusion": (frozenset({"blunting", "blunted"}), frozenset({"costophrenic"})),
}
_NO_SIDE = frozenset({"cardiomegaly", "enlarged_cardiomediastinum", "edema", "support_devices"})
_NEGATIONS = frozenset({"no", "without", "not", "negative", "free", "absent", "nor"})
_HEDGES = frozenset({"may", "might", "possible", "possibly", "probable", "probably", "likely", "questionable",
                     "question", "suspicious", "suspected", "suspect", "concern", "concerning", "versus", "vs",
                     "suggest", "suggests", "suggestive", "suggesting", "cannot", "equivocal", "borderline",
                     "differential", "underlying"})
_FUNCTION_WORDS = frozenset({"the", "a", "an", "there", "is", "are", "in", "at", "of", "with", "and", "or", ",", ":",
                             "present", "seen", "noted"})
_CLAUSE_END = frozenset({".", ";", "but", "however", "although"})
_SIDES = {"left": "left", "right": "right"}
_ZONES = {"upper": "upper", "apical": "upper", "apex": "upper", "lower": "lower", "basal": "lower", "base": "lower",
          "basilar": "lower"}


@dataclass(frozen=True)
class Mention:
    """A pathology named in a text: side/zone when stated, whether negated, and where it is worded.

    ``word_indices`` are the words naming the pathology ("effusion"; "heart" + "enlarged");
    ``phrase_indices`` all content words of its clause part ("small left pleural effusion").
    """

    pathology: str
    side: str | None
    zone: str | None
    negated: bool
    word_indices: tuple[int, ...]
    phrase_indices: tuple[int, ...]
    uncertain: bool = False


def _clauses(words: list[str]) -> list[list[int]]:
    out, cur = [], []
    for i, w in enumerate(words):
        if w in _CLAUSE_END:
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(i)
    if cur:
        out.append(cur)
    return out


def find_mentions(text_or_words: str | list[str]) -> list[Mention]:
    """Every pathology mention, in text order (one per pathology per clause)."""
    words = tokenize(text_or_words) if isinstance(text_or_words, str) else list(text_or_words)
    mentions = []
    for clause in _clauses(words):
        cw = {words[i] for i in clause}
        hedged = bool(_HEDGES & cw)
        for pathology, terms in TERMS.items():
            hits = [i for i in clause if words[i] in terms]
            if not hits and pathology in COMPOUNDS:
                anchors, modifiers = COMPOUNDS[pathology]
                if anchors & cw and modifiers & cw:
                    hits = [i for i in clause if words[i] in anchors | modifiers]
            if not hits:
                continue
            first = hits[0]
            negated = any(words[i] in _NEGATIONS or (words[i] == "clear" and i + 1 < first and words[i + 1] == "of")
                          for i in clause if i < first)
            segment = _segment(words, clause, first)
            side = None if pathology in _NO_SIDE else _nearest(words, segment, first, _SIDES)
            zone = None if pathology in _NO_SIDE else _nearest(words, segment, first, _ZONES)
            phrase = tuple(i for i in segment if words[i] not in _FUNCTION_WORDS)
            mentions.append(Mention(pathology, side, zone, negated, tuple(hits), phrase, hedged and not negated))
    return mentions


def _segment(words: list[str], clause: list[int], at: int) -> list[int]:
    """The comma-delimited part of ``clause`` holding word ``at`` (side and zone are looked up there)."""
    seg: list[int] = []
    for i in clause:
        if words[i] == ",":
            if i > at:
                break
            seg = []
        else:
            seg.append(i)
    return seg


def _nearest(words: list[str], clause: list[int], at: int, table: dict[str, str]) -> str | None:
    found = [(abs(i - at), table[words[i]]) for i in clause if words[i] in table]
    return min(found)[1] if found else None


def positive_findings(text_or_words: str | list[str]) -> set[tuple[str, str | None]]:
    """The asserted (not negated) findings as ``(pathology, side)`` pairs."""
    return {(m.pathology, m.side) for m in find_mentions(text_or_words) if not m.negated}


def chexpert_labels(text_or_words: str | list[str]) -> dict[str, float]:
    """CheXpert-style labels per observation: 1 asserted, -1 uncertain, 0 denied, NaN not mentioned.

    A certain assertion anywhere wins over an uncertain one, which wins over a denial. ``no_finding`` is 1
    when no observation other than support devices is asserted or uncertain, else NaN.
    """
    labels = {k: math.nan for k in CHEXPERT}
    rank = {0.0: 0, -1.0: 1, 1.0: 2}
    for m in find_mentions(text_or_words):
        value = 0.0 if m.negated else (-1.0 if m.uncertain else 1.0)
        old = labels[m.pathology]
        if math.isnan(old) or rank[value] > rank[old]:
            labels[m.pathology] = value
    abnormal = [k for k in CHEXPERT if k not in ("no_finding", "support_devices") and labels[k] in (1.0, -1.0)]
    labels["no_finding"] = math.nan if abnormal else 1.0
    return labels


def observations_present(text_or_words: str | list[str]) -> set[str]:
    """The observations labelled 1 or -1 (uncertain counts as present), ``no_finding`` included."""
    return {k for k, v in chexpert_labels(text_or_words).items() if v in (1.0, -1.0)}
