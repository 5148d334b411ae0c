"""From a finished study to any ECG: the model bundle, its loading without pickle or study, and prediction
from real files, with an error row and its reason for every file that cannot be used. The study and its bundle
are the session's ``study`` and ``bundle`` fixtures (``conftest.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.cli import main
from ptacl_lib.data import open_cohort
from ptacl_lib.data.readers.writers import write_cohort_ecgs
from ptacl_lib.data.schema import PHENOTYPES
from ptacl_lib.inference import BundleError, Predictor, load_bundle
from ptacl_lib.inference.bundle import BUNDLE_JSON, PROBES_FILE, encoder_file

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ecg_folder(study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real files: CardioSoft XML of three test subjects, the real 12-lead PTB record (WFDB, 1,000 Hz), the real
    2-lead MIT-BIH record, and a truncated XML."""
    folder = tmp_path_factory.mktemp("ecgs")
    cohort = open_cohort(study.parent / "cohort" / "manifest.csv")
    xml = write_cohort_ecgs(cohort, cohort.indices("test")[:3], folder)
    for name in ("s0010_re", "mitdb_100"):
        for suffix in (".hea", ".dat"):
            shutil.copy(DATA / f"{name}{suffix}", folder)
    (folder / "truncated.xml").write_bytes(xml[0].read_bytes()[:15000])
    return folder


@pytest.mark.slow
def test_the_bundle_describes_itself_and_holds_no_pickle(bundle: Path, study: Path) -> None:
    meta = json.loads((bundle / BUNDLE_JSON).read_text())
    assert meta["format_version"] == 1 and meta["library"]["version"] and meta["seeds"] == [0, 1]
    prep = meta["preprocessing"]
    assert prep["geometry"]["name"] == "demo" and prep["units"] == "mV" and len(prep["leads"]) == 12
    assert prep["stored_ecg_hz"] == 500 and prep["n_samples"] == 5000 and len(prep["normalisation"]["lead_scale"]) == 12
    assert prep["filters"] == {"highpass_hz": 0.5, "lowpass_hz": 40.0, "mains_hz": 50, "rpeak_method": "consensus"}
    assert meta["model"]["preset"] == "small" and "ecg_hz" not in meta["model"]["architecture"]
    assert [p["name"] for p in meta["phenotypes"]] == list(PHENOTYPES) and meta["phenotypes"][3]["unit"] == "%"
    assert meta["calibration"]["coverage"] == 0.9 and all(q is not None for q in meta["calibration"]["quantiles"])
    assert meta["training"]["kind"] == "synthetic" and meta["reference"]["n"] == meta["training"]["splits"]["train"]
    assert set(meta["files"]) == {p.name for p in bundle.iterdir()} - {BUNDLE_JSON}
    assert not [p for p in bundle.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".bin", ".npz")]
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ptacl_lib") and "A demonstration, not a clinical model" in card
    assert "test R²" in card and "coverage" in card


@pytest.mark.slow
def test_prediction_from_real_files_with_an_error_row_for_each_bad_one(bundle: Path, ecg_folder: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(bundle), "--ecg-dir", str(ecg_folder), "--out", str(out),
                 "--workers", "2", "--no-progress"]) == 0
    table = pd.read_csv(out, dtype={"id": str}).set_index("id")
    assert len(table) == 6
    ok = table[table["status"] == "ok"]
    assert set(ok.index) == {*(p.stem for p in ecg_folder.glob("SYN*.xml")), "s0010_re"}  # 1,000 Hz WFDB included
    for name in PHENOTYPES:
        assert (ok[f"{name}_lo"] <= ok[name]).all() and (ok[name] <= ok[f"{name}_hi"]).all()
        assert (ok[f"{name}_seed_sd"] >= 0).all()
    assert ok["similar_ids"].str.count(";").eq(4).all() and ok["ood"].isin([True, False]).all()
    assert table.loc["mitdb_100", "reason"].startswith("leads:") and "'V1'" in table.loc["mitdb_100", "reason"]
    assert table.loc["truncated", "reason"].startswith("unreadable:")
    # nothing usable: a clear error, and the table still says why
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(ecg_folder / "truncated.xml", bad)
    assert main(["predict", "--model", str(bundle), "--ecg-dir", str(bad), "--out", str(tmp_path / "b.csv"),
                 "--no-progress"]) == 2
    assert pd.read_csv(tmp_path / "b.csv")["status"].tolist() == ["error"]


@pytest.mark.slow
def test_the_bundle_predicts_identically_with_the_study_moved_away(bundle: Path, study: Path, ecg_folder: Path,
                                                                   tmp_path: Path) -> None:
    files = sorted(ecg_folder.glob("SYN*.xml"))
    before = Predictor.from_bundle(bundle).predict(files, progress=False)
    copy = shutil.copytree(bundle, tmp_path / "elsewhere")
    hidden = study.parent.rename(study.parent.with_name(study.parent.name + "_moved"))
    try:
        after = Predictor.from_bundle(copy).predict(files, progress=False)
    finally:
        hidden.rename(study.parent)
    pd.testing.assert_frame_equal(before.drop(columns="path"), after.drop(columns="path"))


@pytest.mark.slow
def test_units_leads_rate_and_length_are_checked_before_predicting(bundle: Path, study: Path) -> None:
    predictor = Predictor.from_bundle(bundle)
    cohort = open_cohort(study.parent / "cohort" / "manifest.csv")
    signal = cohort.ecg(int(cohort.indices("test")[0]))  # mV at 500 Hz, 10 s
    as_mv = predictor.predict_signal(signal, 500)
    assert as_mv["status"].item() == "ok"
    micro = predictor.predict_signal(signal * 1000, 500)  # µV read as mV: refused, never predicted
    assert micro["status"].item() == "error" and micro["reason"].item().startswith("units: amplitudes look like µV")
    assert np.isnan(micro["lvm"].item())
    told = predictor.predict_signal(signal * 1000, 500, units="uV")  # the same numbers, told their units
    np.testing.assert_allclose(told[list(PHENOTYPES)].to_numpy(), as_mv[list(PHENOTYPES)].to_numpy(), rtol=1e-5)
    two = predictor.predict_signal(signal[[1, 10]], 500, leads=["II", "V5"])
    assert two["reason"].item().startswith("leads: missing leads ['I', 'III'") and "'V1'" in two["reason"].item()
    assert predictor.predict_signal(signal[:, ::10], 50)["reason"].item().startswith("rate: sampled at 50 Hz")
    assert predictor.predict_signal(signal[:, :3000], 500)["reason"].item().startswith("duration:")
    longer = predictor.predict_signal(np.concatenate([signal, signal, signal[:, :1000]], axis=1), 500)
    assert longer["windows"].item() == 2  # two training-length windows, one answer


@pytest.mark.slow
def test_a_npy_input_and_another_coverage(bundle: Path, study: Path, tmp_path: Path) -> None:
    cohort = open_cohort(study.parent / "cohort" / "manifest.csv")
    np.save(tmp_path / "one.npy", cohort.ecg(0) * 1000.0)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(bundle), "--ecg", str(tmp_path / "one.npy"), "--sampling-rate", "500",
                 "--units", "uV", "--coverage", "0.5", "--out", str(out), "--no-progress"]) == 0
    half = pd.read_csv(out)
    full = Predictor.from_bundle(bundle).predict_signal(cohort.ecg(0), 500)
    assert half["status"].item() == "ok"
    assert (half["lvef_hi"] - half["lvef_lo"]).item() < (full["lvef_hi"] - full["lvef_lo"]).item()
    assert load_bundle(bundle, mains_hz=60).spec.preprocess.mains_hz == 60  # --mains-hz: the recordings' own


@pytest.mark.slow
def test_onnx_runtime_agrees_with_torch(bundle: Path, study: Path) -> None:
    import torch

    from ptacl_lib.inference.onnx_export import onnx_embeddings

    loaded = load_bundle(bundle)
    windows = np.random.default_rng(0).normal(size=(3, 12, 1000)).astype(np.float32)
    for seed, embedder in zip(loaded.seeds, loaded.embedders()):
        with torch.no_grad():
            expected = embedder(torch.from_numpy(windows)).numpy()
        np.testing.assert_allclose(onnx_embeddings(bundle / encoder_file(seed, "onnx"), windows), expected,
                                   atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_changed_or_foreign_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    tampered = shutil.copytree(bundle, tmp_path / "tampered")
    with (tampered / PROBES_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="probes.safetensors does not match its checksum"):
        load_bundle(tampered)
    # a pickle in place of the weights, with the checksum made to match: refused, and it never runs
    from crafted_pickles import write_payload

    foreign = shutil.copytree(bundle, tmp_path / "foreign")
    marker = tmp_path / "pwned"
    write_payload(foreign / encoder_file(0), marker, via="pickle")
    meta = json.loads((foreign / BUNDLE_JSON).read_text())
    from ptacl_lib.inference.bundle import sha256_of

    meta["files"][encoder_file(0)] = sha256_of(foreign / encoder_file(0))
    (foreign / BUNDLE_JSON).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="is not a safetensors file"):
        load_bundle(foreign)
    assert not marker.exists()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)


@pytest.mark.slow
def test_similar_patients_come_from_the_reference_set(bundle: Path, ecg_folder: Path) -> None:
    predictor = Predictor.from_bundle(bundle)
    embeddings = predictor.embed(sorted(ecg_folder.glob("SYN*.xml"))[:2])
    near = predictor.similar(embeddings, k=3)
    assert near.groupby("query").size().tolist() == [3, 3]
    assert near["subject_id"].isin(predictor.bundle.reference.subject_ids).all()
    assert (near.groupby("query")["distance"].apply(lambda d: d.is_monotonic_increasing)).all()
    assert near["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    reference = predictor.bundle.reference
    rows = pd.Index(reference.subject_ids).get_indexer(near["subject_id"])
    np.testing.assert_array_equal(near[list(PHENOTYPES)].to_numpy(), reference.phenotypes.iloc[rows].to_numpy())


def test_a_60_hz_recording_keeps_no_hum_when_told_its_mains() -> None:
    """At the ukb geometry the band reaches the mains: 60 Hz hum survives the default 50 Hz notch and is
    removed once the recordings' mains frequency is given (``--mains-hz 60``)."""
    from ptacl_lib.data.preprocess import PreprocessConfig, preprocess_ecg
    from ptacl_lib.geometry import GEOMETRIES

    fs, t = 500.0, np.arange(5000) / 500.0
    ecg = np.tile(np.sin(2 * np.pi * 60 * t).astype(np.float32), (12, 1))

    def hum(mains: int) -> float:  # the amplitude left at 60 Hz
        out = preprocess_ecg(ecg, fs, PreprocessConfig(GEOMETRIES["ukb"], mains_hz=mains))[0, 500:-500]
        spectrum = np.abs(np.fft.rfft(out)) / len(out) * 2
        return float(spectrum[np.argmin(np.abs(np.fft.rfftfreq(len(out), 1 / fs) - 60))])

    assert hum(50) > 0.9 and hum(60) < 0.05


def test_the_forward_pass_leaves_the_readers_their_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside ``workers`` reader processes torch takes the cores left (at least one, never more than set), and
    gets its own count back afterwards; alone, or on a GPU, it keeps it."""
    import torch

    from ptacl_lib import runtime
    from ptacl_lib.inference.predictor import threads_beside_readers

    monkeypatch.setattr(runtime, "available_cpus", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        seen = {}
        for workers, device in ((1, "cpu"), (2, "cpu"), (3, "cpu"), (4, "cpu"), (2, "cuda")):
            with threads_beside_readers(workers, torch.device(device)):
                seen[workers, device] = torch.get_num_threads()
            assert torch.get_num_threads() == 3
        assert seen == {(1, "cpu"): 3, (2, "cpu"): 2, (3, "cpu"): 1, (4, "cpu"): 1, (2, "cuda"): 3}
    finally:
        torch.set_num_threads(before)
