"""The power planner: seed variance falls as 1/seeds, subject variance as 1/subjects; the cheapest design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.evaluate.bootstrap import Z_ALPHA, Z_POWER, paired_r2_difference
from ptacl_lib.evaluate.power import VarianceParts, cheapest_design, mdd_grid, plan_table
from ptacl_lib.evaluate.regression import ProbeResult

# the demo's PTACL − global-only contrast (5 seeds, 415 test subjects)
DEMO = VarianceParts(se_seed=0.0116, se_subject=0.0129, n_seeds=5, n_subjects=415)


def test_the_pilot_design_reproduces_the_pilot_and_the_parts_scale_as_documented() -> None:
    assert DEMO.se(5, 415) == pytest.approx(np.hypot(0.0116, 0.0129))
    assert DEMO.mdd(5, 415) == pytest.approx((Z_ALPHA + Z_POWER) * np.hypot(0.0116, 0.0129))
    assert DEMO.se(20, 415 * 4) == pytest.approx(DEMO.se(5, 415) / 2)  # both parts quartered
    assert DEMO.se(10, 10**9) == pytest.approx(0.0116 / np.sqrt(2), rel=1e-3)  # subjects exhausted: seeds remain


def test_subjects_for_inverts_mdd_and_says_none_when_seeds_alone_are_too_noisy() -> None:
    n = DEMO.subjects_for(0.03, seeds=10)
    assert DEMO.mdd(10, n) <= 0.03 < DEMO.mdd(10, n - 1)
    assert DEMO.subjects_for(0.02, seeds=5) is None  # 2.8 x 0.0116 = 0.032 > 0.02 from the seeds alone


def test_cheapest_design_uses_the_fewest_runs_within_the_subject_cap() -> None:
    design = cheapest_design(DEMO, 0.02, seconds_per_run=170.0, max_subjects=20_000)
    seeds = design["seeds"]
    assert DEMO.subjects_for(0.02, seeds) <= 20_000 and (DEMO.subjects_for(0.02, seeds - 1) or 10**9) > 20_000
    assert design["runs"] == 2 * seeds and design["training_hours"] == pytest.approx(2 * seeds * 170 / 3600)
    assert DEMO.mdd(seeds, design["test_subjects"]) <= 0.02
    assert cheapest_design(DEMO, 0.0001, 170.0, max_seeds=10)["seeds"] is None
    table = plan_table(DEMO, (0.02, 0.01), 170.0, max_subjects=20_000)
    assert list(table["target"]) == [0.02, 0.01] and table["seeds"].iloc[1] > table["seeds"].iloc[0]


def test_grid_falls_along_both_axes() -> None:
    grid = mdd_grid(DEMO)
    assert (np.diff(grid.to_numpy(), axis=0) < 0).all() and (np.diff(grid.to_numpy(), axis=1) < 0).all()


def test_parts_from_a_bootstrap_row_predict_a_larger_design() -> None:
    """A pilot of 4 seeds on 300 subjects predicts the SE of 12 seeds on 1,200 subjects of the same process."""
    rng = np.random.default_rng(0)

    def study(seeds: int, n: int) -> pd.Series:
        truth = rng.standard_normal((n, 1))
        arm = {s: ProbeResult(("a",), truth + (0.6 + 0.1 * rng.standard_normal()) * rng.standard_normal((n, 1)),
                              truth, None) for s in range(seeds)}
        ref = {s: ProbeResult(("a",), truth + 0.7 * rng.standard_normal((n, 1)), truth, None) for s in range(seeds)}
        return paired_r2_difference(arm, ref, n_resamples=600).set_index("target").loc["mean"]

    pilots = [VarianceParts.from_row(study(4, 300)) for _ in range(8)]
    predicted = np.mean([p.se(12, 1200) for p in pilots])
    measured = np.mean([study(12, 1200)["se"] for _ in range(8)])
    assert predicted == pytest.approx(measured, rel=0.35)
    twice = DEMO.doubling()  # numbers from the planner, words from the report
    assert twice.now == pytest.approx(DEMO.mdd(DEMO.n_seeds, DEMO.n_subjects))
    assert twice.both < min(twice.seeds, twice.subjects) < twice.now
    from ptacl_lib.report import lever_sentence

    sentence = lever_sentence(DEMO)
    assert f"{twice.now:.3f}" in sentence and f"{DEMO.se_subject:.4f}" in sentence
    assert ("stronger lever" in sentence) == (twice.stronger is not None)
