"""Phenotype plausibility: each kind of bad value, and what becomes of it (``data.phenotype_checks``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from ptacl_lib.data.phenotype_checks import (
    EXTREME_LIMITS,
    FINDING_COLUMNS,
    REFERENCE,
    extreme_flags,
    find_implausible,
)
from ptacl_lib.data.readers.writers import ukb_like_phenotypes
from ptacl_lib.data.schema import PHENOTYPES

#: A consistent heart: SV = EDV - ESV and EF = 100 * SV / EDV on both sides.
GOOD = {"lvedv": 150.0, "lvesv": 60.0, "lvsv": 90.0, "lvef": 60.0, "lvm": 100.0,
        "rvedv": 160.0, "rvesv": 70.0, "rvsv": 90.0, "rvef": 56.25}


def _one(**edit: float) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, **edit}])


@pytest.mark.parametrize("edit, fields, detail", [
    ({"lvef": 105.0}, "lvef", "lvef = 105 % is outside 0-100 %"),
    ({"rvef": -2.0}, "rvef", "rvef = -2 % is outside 0-100 %"),
    ({"lvm": -3.0}, "lvm", "lvm = -3 g is not above 0"),
    ({"lvm": 0.0}, "lvm", "lvm = 0 g is not above 0"),  # a failed segmentation's zero is impossible too
    ({"rvedv": np.inf}, "rvedv", "rvedv = inf mL is not finite"),
])
def test_impossible_values_are_rejected_naming_field_and_value(edit: dict, fields: str, detail: str) -> None:
    findings = find_implausible(_one(**edit))
    assert list(findings.columns) == list(FINDING_COLUMNS)
    assert findings[["position", "fields", "reason", "detail"]].values.tolist() == [[0, fields, "impossible", detail]]
    assert findings["values"].iloc[0] == f"{next(iter(edit.values())):g}"


def test_an_impossible_value_is_not_also_reported_as_a_contradiction() -> None:
    """A negative EDV would also break SV = EDV - ESV and EF = SV / EDV: one finding names the cause."""
    findings = find_implausible(_one(lvedv=-150.0))
    assert findings[["fields", "reason"]].values.tolist() == [["lvedv", "impossible"]]


@pytest.mark.parametrize("edit, fields, values", [
    ({"lvesv": 160.0}, "lvesv;lvedv", "160;150"),  # ESV above EDV (the SV rule then says nothing more)
    ({"rvesv": 165.0, "rvsv": 90.0}, "rvesv;rvedv", "165;160"),
    ({"lvsv": 75.0, "lvef": 50.0}, "lvsv;lvedv;lvesv", "75;150;60"),  # 15 mL off EDV - ESV
    ({"lvedv": 300.0, "lvesv": 100.0, "lvsv": 225.0, "lvef": 75.0}, "lvsv;lvedv;lvesv", "225;300;100"),  # 12.5 %
    ({"lvef": 0.6}, "lvef;lvsv;lvedv", "0.6;90;150"),  # EF as a fraction
    ({"rvef": 48.0}, "rvef;rvsv;rvedv", "48;90;160"),  # 8.25 points off 100 * SV / EDV
])
def test_contradictory_values_are_rejected_naming_every_field(edit: dict, fields: str, values: str) -> None:
    findings = find_implausible(_one(**edit))
    assert findings[["position", "fields", "values", "reason"]].values.tolist() == [[0, fields, values,
                                                                                      "contradictory"]]


@pytest.mark.parametrize("edit", [
    {"lvsv": 98.0, "lvef": 65.3},  # 8 mL off EDV - ESV: within 10 mL
    {"lvedv": 300.0, "lvesv": 100.0, "lvsv": 215.0, "lvef": 71.7},  # 15 mL off, within 10 % of 200 mL
    {"lvef": 64.0},  # 4 points off 100 * SV / EDV
])
def test_values_within_the_tolerances_pass(edit: dict) -> None:
    assert find_implausible(_one(**edit)).empty


def test_missing_values_are_neither_rejected_nor_flagged() -> None:
    table = _one(lvm=np.nan, rvsv=np.nan, lvef=np.nan)
    assert find_implausible(table).empty and extreme_flags(table).tolist() == [""]


@pytest.mark.parametrize("edit, flags", [
    ({"lvm": 250.0}, "lvm_extreme_high"),
    ({"lvedv": 30.0, "lvesv": 12.0, "lvsv": 18.0}, "lvedv_extreme_low"),
    ({"lvesv": 100.0, "lvsv": 50.0, "lvef": 33.3, "lvm": 200.0}, "lvef_extreme_low;lvm_extreme_high"),
])
def test_extremes_are_flagged_and_kept(edit: dict, flags: str) -> None:
    table = _one(**edit)
    assert find_implausible(table).empty
    assert extreme_flags(table).tolist() == [flags]


def test_findings_name_the_rows_of_a_table_in_order() -> None:
    table = pd.DataFrame([GOOD, {**GOOD, "lvm": -1.0, "lvef": 105.0}, GOOD, {**GOOD, "rvesv": 170.0}],
                         index=[10, 11, 12, 13])  # positions, not labels
    findings = find_implausible(table)
    assert findings[["position", "fields"]].values.tolist() == [[1, "lvef"], [1, "lvm"], [3, "rvesv;rvedv"]]
    assert extreme_flags(table).index.tolist() == [10, 11, 12, 13]


def test_limits_lie_well_outside_the_published_ranges() -> None:
    """Every flag limit lies beyond both sexes' healthy 95 % range (mean ± 1.96 SD, Petersen et al. 2017)."""
    for name in PHENOTYPES:
        low, high = EXTREME_LIMITS[name]
        for mean, sd in REFERENCE[name].values():
            assert low < mean - 1.96 * sd - sd and high > mean + 1.96 * sd + sd, name


def test_synthetic_and_fixture_phenotypes_pass(tiny_cohort: Path) -> None:
    """The generator's and the UKB-like fixture writer's phenotypes are never rejected."""
    assert find_implausible(pd.read_csv(tiny_cohort)).empty
    fixture = pd.DataFrame([ukb_like_phenotypes(seed) for seed in range(500)])
    assert find_implausible(fixture).empty and (extreme_flags(fixture) == "").all()
    assert len(fixture.drop_duplicates()) == len(fixture)  # they vary per subject


def test_the_manifest_readme_states_the_limits_the_code_uses() -> None:
    text = (REPO / "data_manifest" / "README.md").read_text()
    stated = {m[0]: (float(m[1]), float(m[2]))
              for m in re.findall(r"^\| `(\w+)` \|[^\n]*\| ([\d.]+) \| ([\d.]+) \|$", text, flags=re.M)}
    assert stated == EXTREME_LIMITS
