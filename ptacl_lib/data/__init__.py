"""Cohorts: manifest, array store, readers, preprocessing, synthetic generator, torch Dataset."""

from .cache import PreprocessedCohort
from .cohort import Cohort, ManifestError, SubjectDataError, describe, open_cohort
from .dataset import PTACLDataset, collate
from .preprocess import PreprocessConfig, detect_rpeaks
from .schema import LEADS, PHENOTYPES

__all__ = [
    "Cohort", "LEADS", "ManifestError", "PHENOTYPES", "PTACLDataset", "PreprocessConfig",
    "PreprocessedCohort", "SubjectDataError", "collate", "describe", "detect_rpeaks", "open_cohort",
]
