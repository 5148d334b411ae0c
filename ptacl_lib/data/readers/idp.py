"""UK Biobank imaging-derived phenotypes (fields 24100-24109, imaging visit = instance 2) onto manifest names.

Column names may be the classic showcase style ``24100-2.0`` or the RAP style ``p24100_i2``;
the subject column is ``eid``. Field 24104 (LV cardiac output, L/min) is kept as ``lvco`` but is
not a manifest phenotype. Covariates are taken when their columns exist: sex (field 31, UKB
coding 0 = female, 1 = male, written "F"/"M" as in the synthetic cohort), age at the imaging
visit (21003, instance 2) and body surface area (22427, instance 2).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..schema import PHENOTYPES, UKB_IDP_FIELDS
from .records import ReaderError, require_file

#: UK Biobank field -> column read: the manifest phenotypes plus LV cardiac output (kept aside as ``lvco``).
IDP_FIELDS: dict[int, str] = dict(sorted({**UKB_IDP_FIELDS, 24104: "lvco"}.items()))
#: UK Biobank field -> (instance, manifest covariate).
COVARIATE_FIELDS: dict[int, tuple[int, str]] = {31: (0, "sex"), 21003: (2, "age"), 22427: (2, "bsa")}
UKB_SEX_CODES: dict[float, str] = {0.0: "F", 1.0: "M"}


def _column(columns: pd.Index, field: int, instance: int) -> str | None:
    """The CSV column holding ``field`` at ``instance`` (array 0), in either naming style."""
    for name in (f"{field}-{instance}.0", f"p{field}_i{instance}"):
        if name in columns:
            return name
    return None


def read_idp_csv(path: str | Path, instance: int = 2) -> pd.DataFrame:
    """Phenotypes (``PHENOTYPES`` + ``lvco``) and available covariates, indexed by ``subject_id`` (str)."""
    path = require_file(path)
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReaderError(path, "corrupt_file", f"not a readable CSV ({err})") from err
    if "eid" not in header:
        raise ReaderError(path, "bad_metadata", "no 'eid' column")
    wanted = {"eid": "subject_id"}
    for field, name in IDP_FIELDS.items():
        column = _column(header, field, instance)
        if column is None and name in PHENOTYPES:
            raise ReaderError(path, "bad_metadata", f"no column for field {field} ({name}) at instance {instance}")
        if column is not None:
            wanted[column] = name
    for field, (field_instance, name) in COVARIATE_FIELDS.items():
        column = _column(header, field, field_instance)
        if column is not None:
            wanted[column] = name
    try:
        table = pd.read_csv(path, usecols=list(wanted), dtype={"eid": str})
    except (pd.errors.ParserError, ValueError) as err:
        raise ReaderError(path, "corrupt_file", f"cannot parse the table ({err})") from err
    table = table.rename(columns=wanted)
    for name in table.columns.drop("subject_id"):
        values = pd.to_numeric(table[name], errors="coerce")
        bad = values.isna() & table[name].notna()
        if bad.any():
            row = table.loc[bad].iloc[0]
            raise ReaderError(path, "corrupt_file",
                              f"subject {row['subject_id']}: {name} is not a number ({row[name]!r})")
        table[name] = values.astype("float64")
    if "sex" in table:
        table["sex"] = table["sex"].map(UKB_SEX_CODES)
    if table["subject_id"].duplicated().any():
        dup = table.loc[table["subject_id"].duplicated(), "subject_id"].iloc[0]
        raise ReaderError(path, "bad_metadata", f"subject {dup} has more than one row")
    return table.set_index("subject_id")
