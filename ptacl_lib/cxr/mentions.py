"""Find which pathologies a findings text asserts (with side and zone), with simple negation scope.

One rule set serves three jobs: per-pathology heatmaps (which generated words name a finding),
the report writer's post-check (every caption finding is in the report, none invented) and
finding-level precision/recall of generated captions.

Negation: a cue (``no``, ``without``, ``not``, ``negative``, ``free``, ``absent``) negates the
pathology terms after it up to the end of the clause (``.``, ``;``, ``but``, ``however``, ``although``).
Side and zone are the nearest such words within the same comma-delimited part of the clause.
"""

from __future__ import annotations

from dataclasses import dataclass

from .vocab import tokenize

TERMS: dict[str, frozenset[str]] = {
    "cardiomegaly": frozenset({"cardiomegaly"}),
    "effusion": frozenset({"effusion", "effusions"}),
    "nodule": frozenset({"nodule", "nodules", "mass", "masses"}),
    "consolidation": frozenset({"consolidation", "consolidations", "consolidative", "airspace"}),
    "pneumothorax": frozenset({"pneumothorax", "pneumothoraces"}),
}
# "the heart is enlarged" names cardiomegaly too: an enlargement word with a heart word in the clause.
_HEART = frozenset({"heart", "cardiac"})
_ENLARGED = frozenset({"enlarged", "enlargement"})
_NEGATIONS = frozenset({"no", "without", "not", "negative", "free", "absent"})
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
        cw = [words[i] for i in clause]
        for pathology, terms in TERMS.items():
            hits = [i for i in clause if words[i] in terms]
            if pathology == "cardiomegaly" and not hits and _HEART & set(cw) and _ENLARGED & set(cw):
                hits = [i for i in clause if words[i] in _HEART | _ENLARGED]
            if not hits:
                continue
            first = hits[0]
            negated = any(words[i] in _NEGATIONS for i in clause if i < first)
            segment = _segment(words, clause, first)
            side = None if pathology == "cardiomegaly" else _nearest(words, segment, first, _SIDES)
            zone = None if pathology == "cardiomegaly" else _nearest(words, segment, first, _ZONES)
            phrase = tuple(i for i in segment if words[i] not in _FUNCTION_WORDS)
            mentions.append(Mention(pathology, side, zone, negated, tuple(hits), phrase))
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
