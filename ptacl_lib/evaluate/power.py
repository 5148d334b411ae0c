"""Plan a comparison's power: what detectable difference a number of seeds and test subjects buys.

The model behind it, from a pilot study's paired contrast (``evaluate.bootstrap``): the variance of a
seed-averaged difference has a seed part that falls as ``1/seeds`` and a test-subject part that falls as
``1/subjects``,

    SE(S, N)² = se_seed² · S₀ / S + se_subject² · N₀ / N,

where ``S₀`` seeds and ``N₀`` test subjects gave the pilot's ``se_seed`` and ``se_subject``. The minimum
detectable difference is ``(z_{1-α/2} + z_{power}) · SE`` (two-sided 5 %, 80 % power). The model assumes
the two parts are independent and that the arms, recipes and cohort stay as in the pilot. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .bootstrap import Z_ALPHA, Z_POWER


@dataclass(frozen=True)
class VarianceParts:
    """A pilot contrast's standard error, split by source, and the design that produced it."""

    se_seed: float
    se_subject: float
    n_seeds: int
    n_subjects: int

    @classmethod
    def from_row(cls, row: pd.Series) -> VarianceParts:
        """From one row of ``paired_r2_difference`` (columns ``se_seed, se_subject, n_seeds, n_subjects``)."""
        return cls(float(row["se_seed"]), float(row["se_subject"]), int(row["n_seeds"]), int(row["n_subjects"]))

    def se(self, seeds: int, subjects: int) -> float:
        """The predicted standard error with ``seeds`` seeds and ``subjects`` test subjects."""
        return math.sqrt(self.se_seed ** 2 * self.n_seeds / seeds + self.se_subject ** 2 * self.n_subjects / subjects)

    def mdd(self, seeds: int, subjects: int) -> float:
        """The predicted minimum detectable difference (two-sided 5 %, 80 % power)."""
        return (Z_ALPHA + Z_POWER) * self.se(seeds, subjects)

    def subjects_for(self, target: float, seeds: int) -> int | None:
        """The fewest test subjects that bring the detectable difference to ``target`` with ``seeds`` seeds;
        None when the seed part alone already exceeds it."""
        room = (target / (Z_ALPHA + Z_POWER)) ** 2 - self.se_seed ** 2 * self.n_seeds / seeds
        if room <= 0:
            return None
        return max(1, math.ceil(self.se_subject ** 2 * self.n_subjects / room))

    def doubling(self) -> "Doubling":
        """The detectable difference now, and with twice the seeds, twice the test subjects, or both."""
        s, n = self.n_seeds, self.n_subjects
        return Doubling(self.mdd(s, n), self.mdd(2 * s, n), self.mdd(s, 2 * n), self.mdd(2 * s, 2 * n))


@dataclass(frozen=True)
class Doubling:
    """What doubling either part of a design buys (``VarianceParts.doubling``); the report words it."""

    now: float
    seeds: float
    subjects: float
    both: float

    @property
    def stronger(self) -> str | None:
        """``"seeds"`` or ``"test subjects"``: the doubling that shrinks the detectable difference more; None when
        the two differ by less than a tenth of the larger gain (they weigh about equally)."""
        if abs(self.seeds - self.subjects) < 0.1 * (self.now - min(self.seeds, self.subjects)):
            return None
        return "seeds" if self.seeds < self.subjects else "test subjects"


#: The most seeds ``cheapest_design`` tries before it calls a difference out of reach.
MAX_SEEDS = 200


def mdd_grid(parts: VarianceParts, seeds: tuple[int, ...] = (3, 5, 10, 20),
             subjects: tuple[int, ...] = (400, 1000, 3000, 10000, 30000)) -> pd.DataFrame:
    """The predicted detectable difference for every combination: rows = seeds, columns = test subjects."""
    return pd.DataFrame([[parts.mdd(s, n) for n in subjects] for s in seeds],
                        index=pd.Index(seeds, name="seeds"), columns=pd.Index(subjects, name="test subjects"))


def cheapest_design(parts: VarianceParts, target: float, seconds_per_run: float, runs_per_seed: int = 2,
                    max_seeds: int = MAX_SEEDS, max_subjects: int = 1_000_000) -> dict[str, float | int | None]:
    """The design with the fewest training runs that resolves ``target``, and the test subjects it then needs.

    Training runs are what cost (``runs_per_seed`` arms trained per seed, ``seconds_per_run`` each, as
    measured in the pilot); test subjects are taken as cheap, up to ``max_subjects``. Returns ``target,
    seeds, runs, test_subjects, training_hours``; ``seeds`` is None when no design within the caps resolves it.
    """
    for seeds in range(2, max_seeds + 1):
        needed = parts.subjects_for(target, seeds)
        if needed is not None and needed <= max_subjects:
            runs = seeds * runs_per_seed
            return {"target": target, "seeds": seeds, "runs": runs, "test_subjects": needed,
                    "training_hours": runs * seconds_per_run / 3600}
    return {"target": target, "seeds": None, "runs": None, "test_subjects": None, "training_hours": None}


def plan_table(parts: VarianceParts, targets: tuple[float, ...], seconds_per_run: float, runs_per_seed: int = 2,
               max_subjects: int = 1_000_000) -> pd.DataFrame:
    """``cheapest_design`` for each target, one row each."""
    return pd.DataFrame([cheapest_design(parts, t, seconds_per_run, runs_per_seed, max_subjects=max_subjects)
                         for t in targets])
