"""Reproducible train/val/test assignment from a hash of the subject id.

A subject's split depends only on its id, the fractions and the salt: never on the order of
files, the number of workers, or which other subjects are present. So a cohort that grows
keeps every earlier subject in its split.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from .schema import SPLITS

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def hash_unit(subject_id: str, salt: str = "ptacl") -> float:
    """A uniform number in [0, 1) fixed by the subject id (first 8 bytes of SHA-256)."""
    digest = hashlib.sha256(f"{salt}:{subject_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(fractions: Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``fractions`` are one non-negative share per split, summing to 1."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be {len(SPLITS)} non-negative numbers summing to 1, got {fractions}")


def split_of(subject_id: str, fractions: Sequence[float] = DEFAULT_FRACTIONS, salt: str = "ptacl") -> str:
    """The split (``schema.SPLITS`` order) whose cumulative fraction interval holds ``hash_unit(subject_id)``."""
    check_fractions(fractions)
    u, edge = hash_unit(subject_id, salt), 0.0
    for split, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return split
    return SPLITS[-1]


def assign_splits(subject_ids: Iterable[str], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  salt: str = "ptacl") -> list[str]:
    """``split_of`` for each id, in order."""
    return [split_of(str(s), fractions, salt) for s in subject_ids]
