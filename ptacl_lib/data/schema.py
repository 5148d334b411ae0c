"""The manifest contract (DESIGN §2): column names, lead order and phenotype units."""

from __future__ import annotations

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: CMR-derived phenotypes, in the order used by every array in the library.
PHENOTYPES: tuple[str, ...] = ("lvedv", "lvesv", "lvsv", "lvef", "lvm", "rvedv", "rvesv", "rvsv", "rvef")

PHENOTYPE_UNITS: dict[str, str] = {
    "lvedv": "mL", "lvesv": "mL", "lvsv": "mL", "lvef": "%", "lvm": "g",
    "rvedv": "mL", "rvesv": "mL", "rvsv": "mL", "rvef": "%",
}

COVARIATES: tuple[str, ...] = ("age", "sex", "bsa", "heart_rate")

REQUIRED_COLUMNS: tuple[str, ...] = ("subject_id", "split", "ecg_path", "cmr_path", *PHENOTYPES)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Splits whose phenotypes may not be NaN (they are fitted or scored on).
SPLITS_NEEDING_PHENOTYPES: tuple[str, ...] = ("train", "test")

#: Prefix of a manifest path that points into the cohort's array store: ``array:INDEX``.
ARRAY_PREFIX = "array:"
