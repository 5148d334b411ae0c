"""Paired differences between arms whose intervals carry seed *and* test-subject variation.

With a handful of seeds, a bootstrap over seeds alone says nothing about how the result would move
on another test set of the same size. Here each resample draws the seeds with replacement and,
independently, the test subjects with replacement (the same subjects for both arms: the comparison
is paired), recomputes every R² on those subjects, and averages ``arm − reference`` over the drawn
seeds. The percentile interval of those means is the CI; its spread gives the standard error and
the minimum detectable difference (two-sided alpha 0.05, power 0.8: ``(1.96 + 0.84) x SE``).

The standard error is also split into its two sources, for planning (``evaluate.power``):

- ``se_seed``: from the seeds alone, the spread of the per-seed differences on the whole test set,
  ``sd(d_s) / sqrt(S)``;
- ``se_subject``: from the test subjects alone, the spread of the seed-averaged difference when only the
  subjects are resampled (every seed kept).

With independent sources the total is close to ``sqrt(se_seed² + se_subject²)``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .regression import ProbeResult

Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided 5 %, 80 % power


def _per_resample(statistic: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], idx: np.ndarray,
                  block: int = 200) -> np.ndarray:
    """``statistic`` of ``arrays`` (each ``[n, ...]``) on each row of subject indices ``idx`` ``[B, n]`` ->
    ``[B, ...]``, computed ``block`` resamples at a time so that memory stays bounded on large test sets
    (``statistic`` takes the ``[b, n, ...]`` draws of every array, in order, and reduces the subject axis 1;
    no resample: ``[0, ...]``)."""
    return np.concatenate([statistic(*(a[idx[start:start + block]] for a in arrays))
                           for start in range(0, max(len(idx), 1), block)])


def _r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """R² of every target over the subject axis 1: truth ``y`` and predictions ``p`` ``[b, n, T]`` -> ``[b, T]``."""
    sse = ((y - p) ** 2).sum(axis=1)
    sst = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return 1.0 - sse / np.where(sst > 0, sst, np.nan)


def _subject_nanmean(scores: np.ndarray) -> np.ndarray:
    """The mean over the subject axis 1, NaN scores left out: ``[b, n, M]`` -> ``[b, M]``."""
    return np.nanmean(scores, axis=1)


def _shared_seeds(arm: Mapping[int, object], reference: Mapping[int, object]) -> list[int]:
    """The seeds both arms hold, sorted (an error when there is none)."""
    seeds = sorted(set(arm) & set(reference))
    if not seeds:
        raise ValueError("the two arms share no seed")
    return seeds


def _draws(n: int, n_seeds: int, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The resamples of a paired bootstrap: subject indices ``[B, n]``, then seed indices ``[B, S]``."""
    rng = np.random.default_rng(seed)
    subjects = rng.integers(0, n, size=(n_resamples, n))
    return subjects, rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


def paired_r2_difference(arm: Mapping[int, ProbeResult], reference: Mapping[int, ProbeResult],
                         n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """``arm − reference`` test R² per target and for the mean over targets (target ``mean``).

    ``arm`` and ``reference`` map each seed to that run's probe result on the same test subjects in
    the same order. Columns: ``target, n_seeds, n_subjects, mean_difference, ci_low, ci_high, se, mdd,
    se_seed, se_subject`` (the module docstring defines the last two; ``se_seed`` is NaN with one seed).
    """
    seeds = _shared_seeds(arm, reference)
    first = arm[seeds[0]]
    for s in seeds:
        for result in (arm[s], reference[s]):
            if result.truth.shape != first.truth.shape or not np.allclose(result.truth, first.truth, equal_nan=True):
                raise ValueError(f"seed {s}: the arms were scored on different test subjects")
    n, targets = first.truth.shape[0], list(first.targets)
    subjects, drawn_seeds = _draws(n, len(seeds), n_resamples, seed)
    per_seed = np.stack([_per_resample(_r2, (arm[s].truth, arm[s].predictions), subjects)
                         - _per_resample(_r2, (reference[s].truth, reference[s].predictions), subjects)
                         for s in seeds])  # [S, B, T]
    by_seed = np.array([arm[s].metric_array("r2") - reference[s].metric_array("r2") for s in seeds])  # [S, T]
    return _paired_summary(per_seed, by_seed, drawn_seeds, targets, n, confidence)


def paired_score_difference(arm: Mapping[int, np.ndarray], reference: Mapping[int, np.ndarray],
                            names: Sequence[str], n_resamples: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> pd.DataFrame:
    """``arm − reference`` of the subject-mean of per-subject scores (such as the alignment scores), paired
    over seeds and subjects exactly as ``paired_r2_difference`` (``target`` holds the score's name).

    ``arm`` and ``reference`` map each seed to a ``[subjects, len(names)]`` array of the same test subjects in
    the same order; NaN scores (a subject with nothing to score) are left out of the means.
    """
    seeds = _shared_seeds(arm, reference)
    shapes = {np.shape(table[s]) for table in (arm, reference) for s in seeds}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != len(names):
        raise ValueError(f"every seed needs one [subjects, {len(names)}] score array, got shapes {sorted(shapes)}")
    n = next(iter(shapes))[0]
    subjects, drawn_seeds = _draws(n, len(seeds), n_resamples, seed)
    per_seed = np.stack([_per_resample(_subject_nanmean, (np.asarray(arm[s]),), subjects)
                         - _per_resample(_subject_nanmean, (np.asarray(reference[s]),), subjects)
                         for s in seeds])  # [S, B, M]
    by_seed = np.array([np.nanmean(arm[s], axis=0) - np.nanmean(reference[s], axis=0) for s in seeds])  # [S, M]
    return _paired_summary(per_seed, by_seed, drawn_seeds, list(names), n, confidence, with_mean=False)


def _paired_summary(per_seed: np.ndarray, by_seed: np.ndarray, drawn_seeds: np.ndarray, targets: list[str],
                    n: int, confidence: float, with_mean: bool = True) -> pd.DataFrame:
    """The table of a paired bootstrap: ``per_seed [S, B, T]`` differences on each subject resample,
    ``by_seed [S, T]`` on the whole test set, ``drawn_seeds [B, S]``; ``with_mean`` adds the target ``mean``."""
    boot = np.take_along_axis(per_seed, drawn_seeds.T[:, :, None], axis=0).mean(axis=0)  # [B, T]
    subjects_only = per_seed.mean(axis=0)  # [B, T]: every seed kept, only the subjects resampled
    if with_mean:
        boot, subjects_only, by_seed = (np.concatenate([x, x.mean(axis=1, keepdims=True)], axis=1)
                                        for x in (boot, subjects_only, by_seed))
        targets = targets + ["mean"]
    point = by_seed.mean(axis=0)
    n_seeds = len(by_seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    se = np.nanstd(boot, axis=0, ddof=1)
    se_seed = by_seed.std(axis=0, ddof=1) / np.sqrt(n_seeds) if n_seeds > 1 else np.full(len(point), np.nan)
    return pd.DataFrame({"target": targets, "n_seeds": n_seeds, "n_subjects": n,
                         "mean_difference": point, "ci_low": low, "ci_high": high, "se": se,
                         "mdd": (Z_ALPHA + Z_POWER) * se, "se_seed": se_seed,
                         "se_subject": np.nanstd(subjects_only, axis=0, ddof=1)})
