"""Cohorts: manifest, array store, readers, preprocessing, synthetic generator, torch Dataset.

Exports are resolved lazily, so that tools which only read files (``ptacl prepare-ukb`` and its
worker processes) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .schema import LEADS, PHENOTYPES

_EXPORTS: dict[str, str] = {
    "Cohort": "cohort", "ManifestError": "cohort", "SubjectDataError": "cohort", "describe": "cohort",
    "open_cohort": "cohort", "PreprocessedCohort": "cache", "PTACLDataset": "dataset", "collate": "dataset",
    "PreprocessConfig": "preprocess", "detect_rpeaks": "preprocess",
}

__all__ = ["LEADS", "PHENOTYPES", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
