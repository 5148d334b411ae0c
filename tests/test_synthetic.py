"""The synthetic cohort: contract, exact lead algebra, determinism, and physiology measured from the signals."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, signal, stats

from ptacl_lib.data import open_cohort
from ptacl_lib.data.schema import ARRAY_PREFIX, COVARIATES, LEADS, REQUIRED_COLUMNS, SPLITS
from ptacl_lib.data.store import ArrayStore
from ptacl_lib.data.synthetic import BEAT_LABELS, ECG_LATENTS, FIDUCIALS, GENERATOR_VERSION, generate_cohort, true_beats
from ptacl_lib.geometry import STORED_DEFAULT

GROUND_TRUTH = ("conduction", "lvh", "phenotype_class", "pr_ms", "qrs_ms", "qt_ms", "emd_ms", "es_ms")


def _open(manifest: Path) -> tuple[pd.DataFrame, ArrayStore]:
    return pd.read_csv(manifest), ArrayStore(manifest.parent / "arrays")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, ArrayStore]:
    """A cohort large enough for correlations and class frequencies."""
    return _open(generate_cohort(tmp_path_factory.mktemp("syn240"), n_subjects=240, seed=7, progress=False))


def _median_beats(ecg: np.ndarray, rpeaks: np.ndarray, fs: float) -> np.ndarray:
    """Band-passed (0.5-40 Hz) median beat [12, 400 ms] from 150 ms before to 250 ms after each R."""
    b, a = signal.butter(2, [0.5, 40.0], btype="band", fs=fs)
    x = signal.filtfilt(b, a, np.asarray(ecg, dtype=float), axis=1)
    before, after = int(0.15 * fs), int(0.25 * fs)
    peaks = rpeaks[(rpeaks >= before) & (rpeaks < ecg.shape[1] - after)]
    return np.median(np.stack([x[:, p - before:p + after] for p in peaks]), axis=0)


def _qrs_amplitude(beat: np.ndarray, fs: float) -> float:
    """Sum over leads of the peak-to-peak voltage from 80 ms before to 100 ms after R."""
    r = int(0.15 * fs)
    return float(np.ptp(beat[:, r - int(0.08 * fs): r + int(0.1 * fs)], axis=1).sum())


def _qrs_width_ms(beat: np.ndarray, fs: float) -> float:
    """Span where the spatial velocity of I, II and V1-V6 exceeds 15 % of its peak near R."""
    velocity = np.linalg.norm(np.diff(beat[[0, 1, 6, 7, 8, 9, 10, 11]], axis=1), axis=0)
    velocity = np.convolve(velocity, np.ones(3) / 3.0, mode="same")
    r = int(0.15 * fs)
    window = velocity[r - int(0.12 * fs): r + int(0.18 * fs)]
    above = np.nonzero(window > 0.15 * window.max())[0]
    return float((above[-1] - above[0]) / fs * 1000.0)


@pytest.fixture(scope="module")
def measured(cohort: tuple[pd.DataFrame, ArrayStore]) -> pd.DataFrame:
    """QRS amplitude and width measured from each subject's ECG."""
    table, store = cohort
    fs = store.meta.geometry.ecg_hz
    beats = [_median_beats(store.ecg[i], store.extras["rpeaks"][i], fs) for i in range(len(store))]
    return table.assign(qrs_amp=[_qrs_amplitude(b, fs) for b in beats],
                        qrs_width=[_qrs_width_ms(b, fs) for b in beats])


def _lv_pool_area(cine: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """Pixels of the bright connected region holding the LV centre, per frame."""
    areas = []
    for frame in cine:
        labels, _ = ndimage.label(frame > 0.6)
        areas.append(np.count_nonzero(labels == labels[centre]) if labels[centre] else 0)
    return np.asarray(areas, dtype=float)


def test_manifest_and_store_contract(tiny_cohort: Path) -> None:
    table, store = _open(tiny_cohort)
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert set(COVARIATES) <= set(table.columns) and set(GROUND_TRUTH) <= set(table.columns)
    assert len(table) == len(store) == 48 and table.subject_id.is_unique
    assert table.subject_id.iloc[0] == "SYN000001"
    assert set(table.split) == set(SPLITS)
    assert (table.ecg_path == [f"{ARRAY_PREFIX}{i}" for i in range(48)]).all()
    assert (table.cmr_path == table.ecg_path).all()
    assert set(table.sex) <= {"F", "M"} and set(table.conduction) <= {"normal", "LBBB", "RBBB"}
    assert store.ecg.shape == (48, 12, 5000) and store.ecg.dtype == np.float32
    assert store.cmr.shape == (48, 1, 50, 64, 64) and store.cmr.dtype == np.uint8
    assert store.meta.leads == LEADS and store.meta.geometry.ecg_hz == 500
    assert store.extras["volumes"].shape == (48, 2, 50) and store.extras["volumes"].dtype == np.float32
    assert store.extras["rpeaks"].shape == (48, 32) and store.extras["rpeaks"].dtype == np.int32
    assert store.extras["fiducials"].shape == (48, 32, len(FIDUCIALS))
    attrs = store.meta.attrs
    assert attrs["version"] == GENERATOR_VERSION and attrs["seed"] == 123
    assert attrs["options"]["geometry"]["frames"] == 50 and set(attrs["extras"]) == set(store.meta.extras)
    assert np.isfinite(store.ecg).all() and 0 < store.cmr.max() <= 255


@pytest.mark.slow
def test_splits_are_about_70_15_15_and_fixed_per_subject(cohort: tuple[pd.DataFrame, ArrayStore],
                                                         tiny_cohort: Path) -> None:
    table, _ = cohort
    share = table.split.value_counts(normalize=True)
    assert 0.6 < share["train"] < 0.8 and 0.08 < share["val"] < 0.22 and 0.08 < share["test"] < 0.22
    tiny = pd.read_csv(tiny_cohort)
    assert (tiny.split.to_numpy() == table.split.to_numpy()[:48]).all()  # split depends on the id only


def test_einthoven_and_goldberger_hold_exactly(tiny_cohort: Path) -> None:
    _, store = _open(tiny_cohort)
    ecg = np.asarray(store.ecg, dtype=np.float64)
    lead = {name: ecg[:, k] for k, name in enumerate(LEADS)}
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-5)
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-5)
    np.testing.assert_allclose(lead["aVL"], lead["I"] - lead["II"] / 2, atol=1e-5)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-5)
    assert np.abs(lead["III"]).max() > 0.1  # the identity is not satisfied trivially


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_identical_bytes(tmp_path: Path, tiny_cohort: Path) -> None:
    a = generate_cohort(tmp_path / "a", n_subjects=10, seed=123, progress=False).parent
    b = generate_cohort(tmp_path / "b", n_subjects=10, seed=123, progress=False).parent
    c = generate_cohort(tmp_path / "c", n_subjects=10, seed=124, progress=False).parent
    assert _files(a) == _files(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert not mismatch and not errors and len(match) == len(_files(a))
    assert (a / "manifest.csv").read_text() != (c / "manifest.csv").read_text()
    assert not np.array_equal(ArrayStore(a / "arrays").ecg, ArrayStore(c / "arrays").ecg)
    # Subject i does not depend on the cohort size: these are the first 10 of the 48-subject cohort.
    big_table, big_store = _open(tiny_cohort)
    small_table, small_store = _open(a / "manifest.csv")
    pd.testing.assert_frame_equal(small_table, big_table.iloc[:10])
    assert np.array_equal(small_store.ecg, big_store.ecg[:10]) and np.array_equal(small_store.cmr, big_store.cmr[:10])


def test_process_pool_writes_the_same_cohort(tmp_path: Path) -> None:
    one = generate_cohort(tmp_path / "one", n_subjects=6, seed=5, progress=False).parent
    two = generate_cohort(tmp_path / "two", n_subjects=6, seed=5, progress=False, workers=2).parent
    for name in ("manifest.csv", "arrays/ecg.npy", "arrays/cmr.npy", "arrays/volumes.npy", "arrays/rpeaks.npy"):
        assert filecmp.cmp(one / name, two / name, shallow=False), name
    assert json.loads((two / "arrays/store.json").read_text())["attrs"]["options"]["workers"] == 2


def test_bad_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="n_frame"):
        generate_cohort(tmp_path, n_subjects=2, n_frame=10, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        generate_cohort(tmp_path, n_subjects=2, geometry=STORED_DEFAULT.overridden(image_size=8), progress=False)
    with pytest.raises(ValueError, match="n_subjects"):
        generate_cohort(tmp_path, n_subjects=0, progress=False)


def test_phenotypes_are_measured_from_the_drawn_volume_curves(tiny_cohort: Path) -> None:
    table, store = _open(tiny_cohort)
    volumes = np.asarray(store.extras["volumes"], dtype=np.float64)
    for side, k in (("lv", 0), ("rv", 1)):
        np.testing.assert_allclose(table[f"{side}edv"], volumes[:, k].max(axis=1), rtol=1e-7)
        np.testing.assert_allclose(table[f"{side}esv"], volumes[:, k].min(axis=1), rtol=1e-7)
        np.testing.assert_allclose(table[f"{side}sv"], table[f"{side}edv"] - table[f"{side}esv"], rtol=1e-9)
        np.testing.assert_allclose(table[f"{side}ef"], 100 * table[f"{side}sv"] / table[f"{side}edv"], rtol=1e-9)
    # The cine is gated at R: the first frame is at end-diastole.
    np.testing.assert_allclose(volumes[:, 0, 0], table.lvedv, rtol=1e-7)
    assert (table.lvm > 30).all() and (table.lvm < 300).all()


def test_rpeaks_and_fiducials_are_consistent(tiny_cohort: Path) -> None:
    table, store = _open(tiny_cohort)
    fs = store.meta.geometry.ecg_hz
    for i in range(len(store)):
        peaks = store.extras["rpeaks"][i]
        valid = peaks[peaks >= 0]
        assert (peaks[valid.size:] == -1).all() and 6 <= valid.size <= 20
        labels = store.extras["beat_labels"][i][: valid.size]
        assert (store.extras["beat_labels"][i][valid.size:] == -1).all() and set(labels) <= {0, 1, 2}
        sinus_pairs = (labels[1:] == 0) & (labels[:-1] == 0)
        assert (np.diff(valid)[sinus_pairs] > 0.4 * fs).all() and (np.diff(valid) > 0.25 * fs).all()
        assert valid.max() < store.meta.n_samples
        assert table.heart_rate[i] == pytest.approx(60 * fs / np.diff(valid).mean(), abs=0.01)
        fid = store.extras["fiducials"][i][: valid.size]
        assert (fid[:, FIDUCIALS.index("r")] == valid).all()
        inside = (fid >= 0).all(axis=1)
        assert (np.diff(fid[inside], axis=1) > 0).all()  # P onset < QRS onset < R < QRS offset < T end
        qrs = fid[inside][:, FIDUCIALS.index("qrs_off")] - fid[inside][:, FIDUCIALS.index("qrs_on")]
        np.testing.assert_allclose(qrs / fs * 1000, table.qrs_ms[i], atol=2.5)


def test_ecg_carries_mains_hum_and_baseline_wander(tiny_cohort: Path) -> None:
    _, store = _open(tiny_cohort)
    freqs, power = signal.welch(np.asarray(store.ecg[:, 0], dtype=float), fs=store.meta.geometry.ecg_hz,
                                nperseg=2500, axis=-1)
    median = np.median(power, axis=0)
    hum = np.argmin(np.abs(freqs - 50.0))
    assert median[hum] > 5 * np.median(median[hum - 8:hum - 2])
    # Wander: below 0.5 Hz, where the ECG itself has little power, the recording still moves.
    assert np.median(power[:, (freqs > 0) & (freqs < 0.5)].sum(axis=1)) > 0


@pytest.mark.slow
def test_qrs_voltage_rises_with_lv_mass(measured: pd.DataFrame) -> None:
    rho = stats.spearmanr(measured.qrs_amp, measured.lvm).statistic
    assert rho > 0.5, rho


@pytest.mark.slow
def test_qrs_width_follows_conduction_and_ejection_fraction(measured: pd.DataFrame) -> None:
    width = measured.groupby("conduction").qrs_width.median()
    assert width["LBBB"] > width["normal"] + 40 and width["RBBB"] > width["normal"] + 30, width
    assert 70 < width["normal"] < 110
    assert stats.spearmanr(measured.qrs_width, measured.qrs_ms).statistic > 0.8
    assert stats.spearmanr(measured.qrs_width, measured.lvef).statistic < -0.2


@pytest.mark.slow
def test_cine_lv_pool_follows_the_volume_curve(cohort: tuple[pd.DataFrame, ArrayStore]) -> None:
    table, store = cohort
    correlations = []
    for i in range(0, len(store), 4):
        cine = np.asarray(store.cmr[i, 0], dtype=np.float32) / 255.0
        assert cine.shape == (50, 64, 64)
        lv = np.asarray(store.extras["volumes"][i, 0], dtype=float)
        row, col = store.extras["heart_placement"][i][:2]
        area = _lv_pool_area(cine, (int(round(row)), int(round(col))))
        correlations.append(np.corrcoef(area, lv)[0, 1])
        # The smallest pool is drawn at end-systole (the ES plateau spans a few frames).
        assert lv[np.argmin(area)] <= table.lvesv[i] + 0.04 * table.lvsv[i]
        assert lv[np.argmax(area)] >= table.lvedv[i] - 0.04 * table.lvsv[i]
    assert min(correlations) > 0.9 and np.median(correlations) > 0.97


@pytest.mark.slow
def test_end_systole_is_timed_by_the_ecg(cohort: tuple[pd.DataFrame, ArrayStore]) -> None:
    table, store = cohort
    fs = store.meta.geometry.ecg_hz
    volumes = np.asarray(store.extras["volumes"][:, 0], dtype=float)
    frame_ms = 60_000.0 / table.heart_rate.to_numpy() / volumes.shape[1]
    es_frame = volumes.argmin(axis=1)
    assert np.abs(es_frame - table.es_ms.to_numpy() / frame_ms).max() <= 1.0
    # End-systole sits near the end of the T wave: QT after QRS onset, measured from R.
    r_lag_ms = (store.extras["fiducials"][:, 0, 2] - store.extras["fiducials"][:, 0, 1]) / fs * 1000
    ok = store.extras["fiducials"][:, 0, 1] >= 0
    gap = table.es_ms.to_numpy()[ok] - (table.qt_ms.to_numpy() - r_lag_ms)[ok]
    assert np.abs(gap).max() < 45
    assert stats.spearmanr(table.es_ms, table.qt_ms).statistic > 0.5


@pytest.mark.slow
def test_ejection_and_atrial_kick_follow_the_ecg(cohort: tuple[pd.DataFrame, ArrayStore]) -> None:
    table, store = cohort
    fs, trace_hz = store.meta.geometry.ecg_hz, store.meta.attrs["volume_trace_hz"]
    for i in range(0, len(store), 3):
        trace = np.asarray(store.extras["volume_trace"][i, 0], dtype=float)
        fid = store.extras["fiducials"][i]
        sv = table.lvsv[i]
        def at(sample: float, trace: np.ndarray = trace) -> float:
            return float(trace[min(int(round(sample / fs * trace_hz)), trace.size - 1)])

        for p_on, qrs_on, *_ in fid[(fid >= 0).all(axis=1)]:
            # The atrial kick after the P wave adds a real share of the stroke volume ...
            assert at(qrs_on) - at(p_on + 0.06 * fs) > 0.05 * sv  # early filling takes at most 85 %
            # ... and the ventricle stays full from QRS onset until the electromechanical delay has passed.
            assert at(qrs_on + 0.8 * table.emd_ms[i] / 1000 * fs) >= table.lvedv[i] - 1e-3


@pytest.mark.slow
def test_marginals_follow_uk_biobank_reference_ranges(cohort: tuple[pd.DataFrame, ArrayStore]) -> None:
    table, _ = cohort
    normal = table[(table.phenotype_class == "normal") & (table.conduction == "normal")]
    by_sex = normal.groupby("sex")[["lvedv", "lvm", "rvedv", "lvef"]].mean()
    assert 140 < by_sex.lvedv["M"] < 190 and 105 < by_sex.lvedv["F"] < 145
    assert 88 < by_sex.lvm["M"] < 120 and 58 < by_sex.lvm["F"] < 82
    assert by_sex.rvedv["M"] > by_sex.rvedv["F"] + 30 and by_sex.lvedv["M"] > by_sex.lvedv["F"] + 25
    assert 55 < normal.lvef.mean() < 65 and 4 < normal.lvef.std() < 8
    assert table.lvedv.std() > 25 and table.lvm.std() > 15      # spread for regression and retrieval
    abnormal = (table.phenotype_class != "normal") | (table.conduction != "normal")
    assert 0.12 < abnormal.mean() < 0.3
    assert {"dilated_low_ef", "hypertrophied"} <= set(table.phenotype_class)
    assert {"LBBB", "RBBB"} <= set(table.conduction)
    classes = table.groupby("phenotype_class")
    assert classes.lvef.mean()["dilated_low_ef"] < 45 and classes.lvm.mean()["hypertrophied"] > 120
    assert table.lvh[table.phenotype_class == "hypertrophied"].mean() > 0.6
    lbbb_rate = table.groupby(table.lvef < 45).conduction.apply(lambda c: (c == "LBBB").mean())
    assert lbbb_rate[True] > 3 * lbbb_rate[False]


def test_latents_and_version_are_recorded(tiny_cohort: Path) -> None:
    table, store = _open(tiny_cohort)
    assert store.meta.attrs["version"] == GENERATOR_VERSION == "2.1"
    assert store.meta.attrs["ecg_latents"] == list(ECG_LATENTS)
    latents = np.asarray(store.extras["ecg_latents"], dtype=np.float64)
    assert latents.shape == (len(table), len(ECG_LATENTS)) and np.isfinite(latents).all()
    named = dict(zip(ECG_LATENTS, latents.T))
    np.testing.assert_allclose(named["qrs_ms"], table.qrs_ms, atol=0.051)
    np.testing.assert_array_equal(named["lbbb"] == 1, table.conduction == "LBBB")


def test_pvcs_are_wide_premature_and_followed_by_a_compensatory_pause(tmp_path: Path) -> None:
    cohort = open_cohort(generate_cohort(tmp_path, n_subjects=40, seed=3, p_pvc=1.0, p_af=0.0, progress=False))
    fs, n_pvc = cohort.geometry.ecg_hz, 0
    for i in range(len(cohort)):
        beats = true_beats(cohort, i)
        assert set(beats["label"]) <= {"N", "V"}
        fid = cohort.extra("fiducials", i)[: len(beats)]
        width = (fid[:, FIDUCIALS.index("qrs_off")] - fid[:, FIDUCIALS.index("qrs_on")]) / fs * 1000
        samples, labels = beats["sample"].to_numpy(), beats["label"].to_numpy()
        for k in np.flatnonzero(labels == "V"):
            n_pvc += 1
            assert width[k] >= 140 and fid[k, FIDUCIALS.index("p_on")] == -1
            if 2 <= k < len(labels) - 1 and labels[k - 1] == labels[k - 2] == labels[k + 1] == "N":
                sinus = samples[k - 1] - samples[k - 2]
                assert samples[k] - samples[k - 1] < 0.8 * sinus                     # premature
                assert samples[k + 1] - samples[k - 1] == pytest.approx(2 * sinus, rel=0.15)  # compensatory
    assert n_pvc >= 20


def test_atrial_fibrillation_is_irregular_without_p_waves(tmp_path: Path) -> None:
    cohort = open_cohort(generate_cohort(tmp_path, n_subjects=12, seed=4, p_af=1.0, progress=False))
    af = np.flatnonzero(cohort.table["rhythm"] == "AF")  # p_af is the rate at 63; younger subjects have less
    assert len(af) >= 6
    cv = []
    for i in af:
        beats = true_beats(cohort, i)
        assert set(beats["label"]) == {"A"}
        assert (cohort.extra("fiducials", i)[: len(beats), FIDUCIALS.index("p_on")] == -1).all()
        rr = np.diff(beats["sample"].to_numpy())
        cv.append(rr.std() / rr.mean())
    assert np.median(cv) > 0.1
    sinus = open_cohort(generate_cohort(tmp_path / "sinus", n_subjects=12, seed=4, p_af=0.0, p_pvc=0.0,
                                        progress=False))
    rr = [np.diff(true_beats(sinus, i)["sample"].to_numpy()) for i in range(len(sinus))]
    assert np.median([r.std() / r.mean() for r in rr]) < 0.06
    assert BEAT_LABELS == ("N", "V", "A")
