"""The manifest contract (docs/design.md §2.1): column names, lead order and phenotype units."""

from __future__ import annotations

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: CMR-derived phenotypes, in the order used by every array in the library.
PHENOTYPES: tuple[str, ...] = ("lvedv", "lvesv", "lvsv", "lvef", "lvm", "rvedv", "rvesv", "rvsv", "rvef")

PHENOTYPE_UNITS: dict[str, str] = {
    "lvedv": "mL", "lvesv": "mL", "lvsv": "mL", "lvef": "%", "lvm": "g",
    "rvedv": "mL", "rvesv": "mL", "rvsv": "mL", "rvef": "%",
}

#: Amplitude units an ECG may come in, and their factor to mV (the library's unit).
UNIT_TO_MV: dict[str, float] = {"mV": 1.0, "uV": 1e-3, "µV": 1e-3, "V": 1e3}
#: A unit that some file formats state (DICOM channel sensitivity) but that is not offered for a bare signal.
NANOVOLT_TO_MV: dict[str, float] = {"nV": 1e-6}


def file_unit_to_mv(unit: str, extra: dict[str, float] | None = None) -> float | None:
    """Factor to mV of an amplitude unit as a file states it, in any letter case: an ASCII name of
    ``UNIT_TO_MV`` (``mV``, ``uV``, ``V``) or of ``extra`` (e.g. ``NANOVOLT_TO_MV``); None for any other."""
    key = unit.lower()
    return next((factor for name, factor in {**UNIT_TO_MV, **(extra or {})}.items()
                 if name.isascii() and name.lower() == key), None)

COVARIATES: tuple[str, ...] = ("age", "sex", "bsa", "heart_rate")

REQUIRED_COLUMNS: tuple[str, ...] = ("subject_id", "split", "ecg_path", "cmr_path", *PHENOTYPES)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Splits whose phenotypes may not be NaN (they are fitted or scored on).
SPLITS_NEEDING_PHENOTYPES: tuple[str, ...] = ("train", "test")

#: Seconds of ECG a cohort stores per subject (the 10 s of a resting 12-lead ECG).
DEFAULT_DURATION_S = 10.0

#: Prefix of a manifest path that points into the cohort's array store: ``array:INDEX``.
ARRAY_PREFIX = "array:"

#: UK Biobank imaging-derived phenotypes (Category 157, instance 2 = first imaging visit) -> manifest column.
#: Field 24104 (LV cardiac output, L/min) has no manifest column and is read but not mapped.
UKB_IDP_FIELDS: dict[int, str] = {
    24100: "lvedv", 24101: "lvesv", 24102: "lvsv", 24103: "lvef",
    24105: "lvm", 24106: "rvedv", 24107: "rvesv", 24108: "rvsv", 24109: "rvef",
}

#: UK Biobank bulk fields the real-data path reads.
UKB_BULK_FIELDS: dict[int, str] = {
    20205: "ECG at rest, 12-lead (GE CardioSoft XML)",
    20208: "Long-axis heart images (DICOM zip)",
    20209: "Short-axis heart images (DICOM zip)",
}
