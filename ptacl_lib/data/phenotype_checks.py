"""Plausibility of the CMR phenotypes on the way in: ``prepare-ukb`` and ``open_cohort`` (data_manifest/README.md).

Three kinds of finding, per subject:

- **impossible**: an ejection fraction outside 0-100 %, a volume or mass that is not above 0 (zero counts: a
  failed segmentation usually shows as 0), or an infinite value. The subject is left out.
- **contradictory** (LV and RV alike): ESV above EDV; SV further than ``SV_TOLERANCE_ML`` or
  ``SV_TOLERANCE_FRACTION`` of EDV - ESV (whichever is larger) from EDV - ESV; EF further than
  ``EF_TOLERANCE_POINTS`` from 100 * SV / EDV (so an EF given as a fraction, 0.6 for 60 %, is caught). A rule
  is only applied to values that are present and possible. The subject is left out.
- **extreme**: a value past ``EXTREME_LIMITS``, ``EXTREME_SD`` standard deviations beyond the healthy mean of
  whichever sex is nearer that end. Flagged (``phenotype_flags``, e.g. ``lvm_extreme_high``) and kept.

A NaN is a missing value, never a finding here: the manifest rules decide where it is allowed.

Reference (``REFERENCE``): Petersen SE, Aung N, Sanghvi MM et al. Reference ranges for cardiac structure and
function using cardiovascular magnetic resonance (CMR) in Caucasians from the UK Biobank population cohort.
J Cardiovasc Magn Reson 2017;19:18, doi:10.1186/s12968-017-0327-9: 804 healthy UK Biobank participants aged
45-74, manual contours, papillary muscles in the LV volume (as the UK Biobank IDPs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import PHENOTYPE_UNITS, PHENOTYPES

#: Column of ``;``-joined extreme flags in a manifest (empty when none).
FLAGS_COLUMN = "phenotype_flags"
#: Reasons a subject is left out, in the order rules are applied.
IMPOSSIBLE, CONTRADICTORY = "impossible", "contradictory"
#: Columns of ``find_implausible``: 0-based row of the table, ``;``-joined fields and values, reason, sentence.
FINDING_COLUMNS: tuple[str, ...] = ("position", "fields", "values", "reason", "detail")

#: Ejection fractions are percentages: anything outside this closed range is impossible.
EF_RANGE: tuple[float, float] = (0.0, 100.0)
#: SV may differ from EDV - ESV by this many mL, or by SV_TOLERANCE_FRACTION of EDV - ESV where that is larger.
#: UK Biobank derives SV as EDV - ESV, so there only rounding separates them.
SV_TOLERANCE_ML = 10.0
SV_TOLERANCE_FRACTION = 0.10
#: EF may differ from 100 * SV / EDV by this many percentage points.
EF_TOLERANCE_POINTS = 5.0

#: Healthy mean and SD by sex (Petersen et al. 2017, module docstring), in ``PHENOTYPE_UNITS``. LV rows and
#: RVEDV are the paper's mean ± SD. The RV rows it was not read for are marked: women's from the paper's
#: 95 % range (mean = its centre, SD = its width / 3.92); men's derived, RVSV = LVSV (both ventricles eject
#: one stroke volume), RVESV = RVEDV - RVSV and RVEF = 100 * RVSV / RVEDV, with the LV counterpart's relative SD.
REFERENCE: dict[str, dict[str, tuple[float, float]]] = {
    "lvedv": {"F": (124.0, 21.0), "M": (166.0, 32.0)},
    "lvesv": {"F": (49.0, 11.0), "M": (69.0, 16.0)},
    "lvsv": {"F": (75.0, 14.0), "M": (96.0, 20.0)},
    "lvef": {"F": (61.0, 5.0), "M": (58.0, 5.0)},
    "lvm": {"F": (70.0, 13.0), "M": (103.0, 21.0)},
    "rvedv": {"F": (131.0, 24.0), "M": (182.0, 36.0)},
    "rvesv": {"F": (52.0, 12.8), "M": (86.0, 20.0)},  # F: 95 % range 27-77 mL; M: derived
    "rvsv": {"F": (73.5, 13.0), "M": (96.0, 20.0)},  # F: 95 % range 48-99 mL; M: = LVSV
    "rvef": {"F": (57.5, 5.4), "M": (53.0, 4.6)},  # F: 95 % range 47-68 %; M: derived
}
#: How many SDs beyond a sex's mean a value must lie to be flagged: about twice as far out as the 95 % range
#: (1.96 SD), so only true extremes (or failed measurements that are still possible) are flagged.
EXTREME_SD = 4.0


def _extreme_limits() -> dict[str, tuple[float, float]]:
    """Per phenotype: (the lowest mean - EXTREME_SD * SD over sex, the highest mean + EXTREME_SD * SD)."""
    return {name: (round(min(m - EXTREME_SD * s for m, s in by_sex.values()), 1),
                   round(max(m + EXTREME_SD * s for m, s in by_sex.values()), 1))
            for name, by_sex in REFERENCE.items()}


#: Flag limits per phenotype (low, high), derived once from ``REFERENCE``: lvedv 38-294 mL, lvesv 5-133 mL,
#: lvsv 16-176 mL, lvef 38-81 %, lvm 18-187 g, rvedv 35-326 mL, rvesv 0.8-166 mL, rvsv 16-176 mL, rvef 34.6-79.1 %.
EXTREME_LIMITS: dict[str, tuple[float, float]] = _extreme_limits()


def _numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The phenotype columns as floats (anything unparsable becomes NaN, i.e. missing)."""
    return table[list(PHENOTYPES)].apply(pd.to_numeric, errors="coerce").astype(float).reset_index(drop=True)


def _impossible(values: pd.DataFrame) -> pd.DataFrame:
    """Boolean per cell: an infinite value, an EF outside ``EF_RANGE``, a volume or mass not above 0."""
    bad = pd.DataFrame(np.isinf(values.to_numpy()), columns=values.columns)
    for name in PHENOTYPES:
        column = values[name]
        bad[name] |= ((column < EF_RANGE[0]) | (column > EF_RANGE[1])) if _is_fraction(name) else (column <= 0)
    return bad


def _is_fraction(name: str) -> bool:
    return PHENOTYPE_UNITS[name] == "%"


def _said(name: str, value: float) -> str:
    return f"{name} = {value:g} {PHENOTYPE_UNITS[name]}"


def _contradictions(values: pd.DataFrame, usable: pd.DataFrame) -> list[tuple[int, tuple[str, ...], str]]:
    """(row, fields, sentence) of every contradiction between volumes and fractions of one ventricle."""
    found: list[tuple[int, tuple[str, ...], str]] = []
    for side in ("lv", "rv"):
        edv_name, esv_name, sv_name, ef_name = (f"{side}{part}" for part in ("edv", "esv", "sv", "ef"))
        edv, esv, sv, ef = (values[n] for n in (edv_name, esv_name, sv_name, ef_name))
        above = usable[[edv_name, esv_name]].all(axis=1) & (esv > edv)
        for i in np.flatnonzero(above):
            found.append((i, (esv_name, edv_name), f"{_said(esv_name, esv[i])} is above {_said(edv_name, edv[i])}"))
        ejected = edv - esv
        tolerance = np.maximum(SV_TOLERANCE_ML, SV_TOLERANCE_FRACTION * ejected)
        off = usable[[edv_name, esv_name, sv_name]].all(axis=1) & ~above & ((sv - ejected).abs() > tolerance)
        for i in np.flatnonzero(off):
            found.append((i, (sv_name, edv_name, esv_name),
                          f"{_said(sv_name, sv[i])} is not {edv_name} - {esv_name} = {ejected[i]:g} mL "
                          f"(within {tolerance[i]:g} mL)"))
        fraction = 100.0 * sv / edv
        off = usable[[ef_name, sv_name, edv_name]].all(axis=1) & ((ef - fraction).abs() > EF_TOLERANCE_POINTS)
        for i in np.flatnonzero(off):
            found.append((i, (ef_name, sv_name, edv_name),
                          f"{_said(ef_name, ef[i])} is not 100 * {sv_name} / {edv_name} = {fraction[i]:.1f} % "
                          f"(within {EF_TOLERANCE_POINTS:g} points)"))
    return found


def find_implausible(table: pd.DataFrame) -> pd.DataFrame:
    """Impossible and contradictory phenotypes of ``table`` (rows by position): one row per finding,
    ``FINDING_COLUMNS``, in table order. A row listed here is to be left out."""
    values = _numbers(table)
    impossible = _impossible(values)
    rows: list[tuple[int, tuple[str, ...], str, str]] = []
    for name in PHENOTYPES:
        limits = f"outside {EF_RANGE[0]:g}-{EF_RANGE[1]:g} %" if _is_fraction(name) else "not above 0"
        rows += [(i, (name,), IMPOSSIBLE,
                  f"{_said(name, values[name][i])} is {'not finite' if np.isinf(values[name][i]) else limits}")
                 for i in np.flatnonzero(impossible[name])]
    usable = values.notna() & ~impossible
    rows += [(i, fields, CONTRADICTORY, detail) for i, fields, detail in _contradictions(values, usable)]
    findings = pd.DataFrame(
        [(i, ";".join(fields), ";".join(f"{values[f][i]:g}" for f in fields), reason, detail)
         for i, fields, reason, detail in rows], columns=list(FINDING_COLUMNS))
    return findings.astype({"position": int}).sort_values("position", kind="stable").reset_index(drop=True)


def details_by_row(findings: pd.DataFrame) -> pd.Series:
    """The ``detail`` sentences of ``find_implausible``'s findings joined with ``; `` per row, indexed by position."""
    return findings.groupby("position", sort=True)["detail"].agg("; ".join)


def extreme_flags(table: pd.DataFrame) -> pd.Series:
    """Per row of ``table``: ``;``-joined ``<phenotype>_extreme_low`` / ``_extreme_high`` for every possible
    value past ``EXTREME_LIMITS`` ("" when none), indexed like ``table``."""
    values = _numbers(table)
    possible = ~_impossible(values)
    flags: list[list[str]] = [[] for _ in range(len(values))]
    for name in PHENOTYPES:
        low, high = EXTREME_LIMITS[name]
        for end, past in (("low", values[name] < low), ("high", values[name] > high)):
            for i in np.flatnonzero(past & possible[name]):
                flags[i].append(f"{name}_extreme_{end}")
    return pd.Series([";".join(f) for f in flags], index=table.index, name=FLAGS_COLUMN, dtype=object)
