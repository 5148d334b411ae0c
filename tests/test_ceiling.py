"""The information ceiling: median-beat features, the latent oracle, tidy rows and the share of the window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.data import open_cohort
from ptacl_lib.data.schema import PHENOTYPES
from ptacl_lib.data.synthetic.latent import ECG_LATENTS
from ptacl_lib.evaluate.ceiling import (
    LATENT_ORACLE,
    MEDIAN_BEAT,
    MEDIAN_BEAT_MS,
    ceiling_table,
    latent_features,
    median_beat_features,
    window_share,
)
from ptacl_lib.evaluate.compare import COLUMNS


def test_median_beat_is_the_beat_around_r_and_ends_with_mean_rr() -> None:
    """Identical beats every 0.8 s: the median beat is that beat, R at offset 0, and the RR is 0.8 s."""
    fs = 500.0
    t = np.arange(int(10 * fs)) / fs
    peaks = np.arange(int(0.5 * fs), len(t) - int(0.7 * fs), int(0.8 * fs))
    beat = np.zeros_like(t)
    for p in peaks:
        beat += np.exp(-0.5 * ((t - p / fs) / 0.012) ** 2)
    ecg = np.tile(beat, (12, 1)) * np.linspace(0.5, 1.5, 12)[:, None]
    features = median_beat_features(ecg, fs, rpeaks=peaks)
    assert features.shape == (12 * len(MEDIAN_BEAT_MS) + 1,)
    assert features[-1] == pytest.approx(0.8)
    beats = features[:-1].reshape(12, len(MEDIAN_BEAT_MS))
    assert (np.argmax(beats, axis=1) == np.flatnonzero(MEDIAN_BEAT_MS == 0)[0]).all()
    assert beats[-1].max() > 2.5 * beats[0].max()  # lead scale survives (no per-lead normalisation)


def test_median_beat_without_a_full_window_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no beat with a full"):
        median_beat_features(np.zeros((12, 5000)), 500.0, rpeaks=np.array([10, 4990]))


def test_ceiling_table_rows_stack_beside_the_arms(tiny_cohort: Path) -> None:
    cohort = open_cohort(tiny_cohort)
    latents = latent_features(cohort, cohort.indices("train"))
    assert latents.shape == (len(cohort.indices("train")), len(ECG_LATENTS)) and np.isfinite(latents).all()
    table = ceiling_table(cohort, seed=3)
    assert list(table.columns) == list(COLUMNS)
    assert set(table["arm"]) == {LATENT_ORACLE, MEDIAN_BEAT} and set(table["seed"]) == {3}
    r2 = table[table["metric"] == "r2"]
    assert len(r2) == 2 * len(PHENOTYPES) and set(r2["target"]) == set(PHENOTYPES)
    assert np.isfinite(r2["value"]).all()


def test_latent_oracle_recovers_lv_mass_on_a_larger_cohort(tmp_path: Path) -> None:
    """QRS source strength is drawn from LV mass, so the oracle must find LV mass (and beat chance)."""
    from ptacl_lib.data.synthetic import generate_cohort

    cohort = open_cohort(generate_cohort(tmp_path, n_subjects=260, seed=5, progress=False))
    table = ceiling_table(cohort, arms=[LATENT_ORACLE])
    r2 = table[table["metric"] == "r2"].set_index("target")["value"]
    assert r2["lvm"] > 0.4, r2
    assert r2.mean() > 0.1, r2


def test_cohort_without_latents_is_refused_for_the_oracle(tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = open_cohort(tiny_cohort)
    cohort.store.extras.pop("ecg_latents")
    with pytest.raises(ValueError, match="ecg_latents"):
        ceiling_table(cohort, arms=[LATENT_ORACLE])
    with pytest.raises(ValueError, match="unknown ceiling arm"):
        ceiling_table(cohort, arms=["oracle"])


def _rows(arm: str, seed: int, values: dict[str, float]) -> list[dict[str, object]]:
    return [{"arm": arm, "seed": seed, "task": "regression", "target": t, "metric": "r2", "value": v}
            for t, v in values.items()]


def test_window_share_is_arm_minus_random_over_ceiling_minus_random() -> None:
    table = pd.DataFrame(_rows("none", 0, {"lvm": 0.2, "lvef": 0.1}) + _rows("none", 1, {"lvm": 0.4, "lvef": 0.1})
                         + _rows("latent_oracle", 0, {"lvm": 0.8, "lvef": 0.05})
                         + _rows("median_beat", 0, {"lvm": 0.5, "lvef": 0.3})
                         + _rows("ptacl", 0, {"lvm": 0.55, "lvef": 0.2}))
    share = window_share(table).set_index(["arm", "seed", "target"])
    # lvm: baseline 0.3 (mean of seeds), ceiling 0.8 (oracle) -> (0.55 - 0.3) / 0.5
    assert share.loc[("ptacl", 0, "lvm"), "share"] == pytest.approx(0.5)
    # lvef: ceiling is the better reference (median beat 0.3), baseline 0.1 -> (0.2 - 0.1) / 0.2
    assert share.loc[("ptacl", 0, "lvef"), "share"] == pytest.approx(0.5)
    assert share.loc[("none", 1, "lvm"), "share"] == pytest.approx(0.2)
    assert "latent_oracle" not in share.index.get_level_values("arm")
    with pytest.raises(ValueError, match="random init"):
        window_share(table[table["arm"] != "none"])
