"""prepare-ukb end to end on a small UKB-shaped cohort with every kind of bad subject mixed in."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.cli import main
from ptacl_lib.data import open_cohort
from ptacl_lib.data import prepare_ukb as pu
from ptacl_lib.data.cohort import ImplausiblePhenotypeWarning
from ptacl_lib.data.readers import read_ecg
from ptacl_lib.data.readers.writers import (
    beating_stack,
    cine_frame_datasets,
    subject_ecg_raw,
    ukb_like_phenotypes,
    write_cardiosoft_xml,
    write_cine_dicom,
    write_idp_csv,
    write_ukb_like_cohort,
)
from ptacl_lib.data.schema import LEADS
from ptacl_lib.data.splits import assign_splits, hash_unit, split_of
from ptacl_lib.geometry import GEOMETRIES, GEOMETRY_FIELDS

N_GOOD = 10
#: The fixture's ECGs are lead-specific sinusoids (known values for the readers), not heartbeats: ECG
#: quality control rightly scores them 0, so these runs keep every subject (``min_ecg_quality=0``).
#: ``test_ecg_quality_skips_or_flags`` below covers the threshold on real-shaped ECGs.
#: The fixture's stacks are small: one slice of 16 frames of 24 px, at ukb's 500 Hz.
SMALL = GEOMETRIES["ukb"].overridden(frames=16, image_size=24, slices=1)
SETTINGS = dict(geometry=SMALL, min_frames=8, progress=False, min_ecg_quality=0.0)
#: subject id -> the reason prepare-ukb must give for skipping it
BAD = {
    "2000001": "missing_leads", "2000002": "wrong_sample_count", "2000003": "corrupt_file",
    "2000004": "non_monotonic_trigger_times", "2000005": "too_few_frames", "2000006": "corrupt_file",
    "2000007": "missing_idp", "2000008": "missing_cmr", "2000009": "missing_ecg", "2000010": "incomplete_idp",
    "2000011": "implausible_idp", "2000012": "implausible_idp", "2000013": "implausible_idp",
}
#: subject id -> (IDP column, value) that makes its phenotypes impossible or contradictory
IMPLAUSIBLE = {"2000011": ("24103-2.0", 105.0), "2000012": ("24105-2.0", -4.5), "2000013": ("24101-2.0", 500.0)}
#: A good subject whose LV mass is past the extreme limit: kept and flagged.
EXTREME = "1000002"


def _add_bad_subjects(ecg_dir: Path, cmr_dir: Path, idp_csv: Path) -> None:
    """One subject per failure mode, beside the good ones."""
    times = np.arange(12) * 80.0
    good_cine = cine_frame_datasets(beating_stack(7, 2, 12, 48), times)
    raw = subject_ecg_raw(7)
    for eid in BAD:
        if eid != "2000009":
            write_cardiosoft_xml(ecg_dir / f"{eid}_20205_2_0.xml", raw)
        if eid != "2000008":
            write_cine_dicom(cmr_dir / f"{eid}_20209_2_0.zip", good_cine)
    write_cardiosoft_xml(ecg_dir / "2000001_20205_2_0.xml", {k: v for k, v in raw.items() if k != "V4"})
    write_cardiosoft_xml(ecg_dir / "2000002_20205_2_0.xml", raw, sample_count=6000)
    text = (ecg_dir / "2000003_20205_2_0.xml").read_bytes()
    (ecg_dir / "2000003_20205_2_0.xml").write_bytes(text[: len(text) // 3])  # truncated download
    instances = np.tile(np.arange(1, 13), (2, 1))
    instances[:, [2, 9]] = instances[:, [9, 2]]
    write_cine_dicom(cmr_dir / "2000004_20209_2_0.zip", cine_frame_datasets(
        beating_stack(7, 2, 12, 48), times, instance_numbers=instances))
    write_cine_dicom(cmr_dir / "2000005_20209_2_0.zip", cine_frame_datasets(
        beating_stack(7, 2, 5, 48), np.arange(5) * 80.0))
    blob = (cmr_dir / "2000006_20209_2_0.zip").read_bytes()
    (cmr_dir / "2000006_20209_2_0.zip").write_bytes(blob[: len(blob) // 2])
    idp = pd.read_csv(idp_csv, dtype={"eid": str})
    idp.loc[idp["eid"] == EXTREME, "24105-2.0"] = 250.0
    extra = write_idp_csv(idp_csv.with_name("extra.csv"), {
        eid: ukb_like_phenotypes(int(eid)) for eid in BAD if eid != "2000007"})
    extra_table = pd.read_csv(extra, dtype={"eid": str})
    extra_table.loc[extra_table["eid"] == "2000010", "24101-2.0"] = np.nan
    for eid, (column, value) in IMPLAUSIBLE.items():
        extra_table.loc[extra_table["eid"] == eid, column] = value
    pd.concat([idp, extra_table]).to_csv(idp_csv, index=False)


@pytest.fixture(scope="module")
def ukb_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ukb")
    paths = write_ukb_like_cohort(root, N_GOOD, n_slices=2, n_frames=12, size=48)
    write_cardiosoft_xml(paths["ecg_dir"] / "1000001_20205_3_0.xml", subject_ecg_raw(99))  # repeat visit: ignored
    (paths["ecg_dir"] / "notes.txt").write_text("not an ECG")
    _add_bad_subjects(paths["ecg_dir"], paths["cmr_dir"], paths["idp_csv"])
    return paths


@pytest.fixture(scope="module")
def prepared(ukb_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pu.PrepareSummary]:
    out = tmp_path_factory.mktemp("prepared")
    summary = pu.prepare_ukb(ukb_inputs["ecg_dir"], ukb_inputs["cmr_dir"], ukb_inputs["idp_csv"], out, **SETTINGS)
    return out, summary


def test_summary_and_errors_list_every_bad_subject(prepared: tuple[Path, pu.PrepareSummary]) -> None:
    out, summary = prepared
    assert summary.n_ok == N_GOOD and summary.n_resumed == 0 and summary.n_skipped == len(BAD)
    expected = pd.Series(BAD).value_counts().to_dict()
    assert summary.skipped == expected
    errors = pd.read_csv(out / "errors.csv", dtype={"subject_id": str})
    assert dict(zip(errors["subject_id"], errors["reason"])) == BAD
    files = dict(zip(errors["subject_id"], errors["file"]))
    assert files["2000001"].endswith("2000001_20205_2_0.xml") and files["2000006"].endswith("2000006_20209_2_0.zip")
    assert files["2000007"].endswith("idp.csv")
    text = str(summary)
    assert f"{N_GOOD} subjects ok" in text and "non_monotonic_trigger_times: 1" in text


def test_implausible_idp_rows_are_skipped_naming_field_and_value(prepared: tuple[Path, pu.PrepareSummary]) -> None:
    """An EF of 105 %, a negative mass and an ESV above its EDV each skip their subject (one errors.csv row,
    naming the field and the value); the other subjects go on, an extreme value is kept and flagged."""
    out, summary = prepared
    errors = pd.read_csv(out / "errors.csv", dtype={"subject_id": str}).set_index("subject_id")
    assert summary.skipped["implausible_idp"] == 3
    said = {"2000011": r"^lvef = 105 % is outside 0-100 %$", "2000012": r"^lvm = -4.5 g is not above 0$",
            "2000013": r"^lvesv = 500 mL is above lvedv = [\d.]+ mL$"}
    for eid, pattern in said.items():
        assert errors.loc[eid, "reason"] == "implausible_idp" and errors.loc[eid, "file"].endswith("idp.csv")
        assert re.match(pattern, errors.loc[eid, "detail"]), errors.loc[eid, "detail"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausiblePhenotypeWarning)  # prepare-ukb let nothing implausible through
        table = open_cohort(out).table
    assert table["subject_id"].tolist() == [str(1000001 + k) for k in range(N_GOOD)]
    flags = dict(zip(table["subject_id"], table["phenotype_flags"]))
    assert flags.pop(EXTREME) == "lvm_extreme_high" and set(flags.values()) == {""}
    written = pd.read_csv(out / "manifest.csv", dtype={"subject_id": str}, keep_default_na=False)
    assert written.set_index("subject_id").loc[EXTREME, "phenotype_flags"] == "lvm_extreme_high"


def test_manifest_opens_as_a_cohort_with_the_source_values(prepared: tuple[Path, pu.PrepareSummary],
                                                           ukb_inputs: dict[str, Path]) -> None:
    out, _ = prepared
    cohort = open_cohort(out / "manifest.csv")
    table = cohort.table
    assert len(cohort) == N_GOOD and cohort.geometry == SMALL
    assert table["subject_id"].tolist() == [str(1000001 + k) for k in range(N_GOOD)]
    assert table["split"].tolist() == assign_splits(table["subject_id"])
    idp = pd.read_csv(ukb_inputs["idp_csv"], dtype={"eid": str}).set_index("eid")
    for i, subject in enumerate(table["subject_id"]):
        source = read_ecg(ukb_inputs["ecg_dir"] / f"{subject}_20205_2_0.xml")
        np.testing.assert_array_equal(cohort.ecg(i), source.signal)  # 500 Hz, 10 s: stored unchanged
        cine = cohort.cmr(i)
        assert cine.shape == (1, 16, 24, 24) and cine.min() == 0.0 and cine.max() == 1.0
        assert table.loc[i, "lvedv"] == idp.loc[subject, "24100-2.0"]
        assert table.loc[i, "rvef"] == idp.loc[subject, "24109-2.0"]
        assert table.loc[i, "heart_rate"] == 60 + i % 30  # the device's VentricularRate
    assert not (out / ".manifest.csv.tmp").exists()


def test_ecg_is_resampled_and_cut_to_the_duration(ukb_inputs: dict[str, Path], tmp_path: Path) -> None:
    task = pu.SubjectTask("1000001", 0, ukb_inputs["ecg_dir"] / "1000001_20205_2_0.xml",
                          ukb_inputs["cmr_dir"] / "1000001_20209_2_0.zip")
    settings = pu.PrepareSettings(geometry=SMALL.overridden(ecg_hz=250), duration_s=8.0, min_frames=8,
                                  min_ecg_quality=0.0)
    result = pu.load_subject(task, settings)
    assert isinstance(result, pu.SubjectArrays) and result.ecg.shape == (12, 2000)
    full = read_ecg(task.ecg, sampling_rate=250.0).signal
    np.testing.assert_array_equal(result.ecg, full[:, :2000])
    long = pu.PrepareSettings(geometry=SMALL, duration_s=10.05, min_frames=8, min_ecg_quality=0.0)
    padded = pu.load_subject(task, long)  # 0.5 % short: edge-padded
    assert isinstance(padded, pu.SubjectArrays) and padded.ecg.shape == (12, 5025)
    assert (padded.ecg[:, 5000:] == padded.ecg[:, 4999:5000]).all()
    too_long = pu.load_subject(task, pu.PrepareSettings(geometry=SMALL, duration_s=12.0, min_frames=8,
                                                        min_ecg_quality=0.0))
    assert isinstance(too_long, pu.SubjectFailure) and too_long.reason == "ecg_too_short"


def test_two_workers_give_the_same_cohort(prepared: tuple[Path, pu.PrepareSummary], ukb_inputs: dict[str, Path],
                                          tmp_path: Path) -> None:
    out, _ = prepared
    pu.prepare_ukb(ukb_inputs["ecg_dir"], ukb_inputs["cmr_dir"], ukb_inputs["idp_csv"], tmp_path, workers=2,
                   **SETTINGS)
    one, two = open_cohort(out), open_cohort(tmp_path)
    pd.testing.assert_frame_equal(one.table, two.table)
    for i in range(N_GOOD):
        np.testing.assert_array_equal(one.ecg(i), two.ecg(i))
        np.testing.assert_array_equal(one.cmr(i), two.cmr(i))
    assert (tmp_path / "errors.csv").read_text() == (out / "errors.csv").read_text()


def test_interrupted_run_resumes_without_redoing_finished_subjects(prepared: tuple[Path, pu.PrepareSummary],
                                                                   ukb_inputs: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference, _ = prepared
    calls: list[str] = []
    real = pu.load_subject

    def interrupted_after_seven(task: pu.SubjectTask, settings: pu.PrepareSettings):
        if len(calls) == 7:
            raise KeyboardInterrupt
        calls.append(task.subject_id)
        return real(task, settings)

    monkeypatch.setattr(pu, "load_subject", interrupted_after_seven)
    args = (ukb_inputs["ecg_dir"], ukb_inputs["cmr_dir"], ukb_inputs["idp_csv"], tmp_path)
    with pytest.raises(KeyboardInterrupt):
        pu.prepare_ukb(*args, commit_every=3, **SETTINGS)
    assert not (tmp_path / "manifest.csv").exists()  # no manifest with unfinished rows
    done = [json.loads(line)["subject_id"] for line in (tmp_path / ".prepare" / "done.jsonl").read_text().splitlines()]
    finished = [s for s in calls if s.startswith("1")]  # the bad subjects that were read failed, not finished
    assert done == finished  # everything written before the interruption was committed, nothing else

    # a torn append (crash mid-line) must not count as finished
    with (tmp_path / ".prepare" / "done.jsonl").open("a") as handle:
        handle.write('{"subject_id": "1000010", "split": "tr')
    calls.clear()
    monkeypatch.setattr(pu, "load_subject", lambda task, settings: (calls.append(task.subject_id),
                                                                    real(task, settings))[1])
    summary = pu.prepare_ukb(*args, **SETTINGS)
    assert summary.n_resumed == len(done) and summary.n_ok == N_GOOD
    assert not set(calls) & set(done)  # finished subjects were not read again
    assert "1000010" in calls
    assert (tmp_path / "manifest.csv").read_text() == (reference / "manifest.csv").read_text()
    assert (tmp_path / "errors.csv").read_text() == (reference / "errors.csv").read_text()
    fresh, resumed = open_cohort(reference), open_cohort(tmp_path)
    for i in range(N_GOOD):
        np.testing.assert_array_equal(fresh.cmr(i), resumed.cmr(i))

    calls.clear()
    again = pu.prepare_ukb(*args, **SETTINGS)  # all done: only the failed subjects are retried
    assert again.n_resumed == N_GOOD and set(calls) <= set(BAD)


def test_resume_refuses_other_settings_or_other_inputs(ukb_inputs: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "in"
    shutil.copytree(ukb_inputs["ecg_dir"], source / "ecg")
    shutil.copytree(ukb_inputs["cmr_dir"], source / "cmr")
    args = (source / "ecg", source / "cmr", ukb_inputs["idp_csv"], tmp_path / "out")
    pu.prepare_ukb(*args, **SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        pu.prepare_ukb(*args, **{**SETTINGS, "image_size": 32})  # an override of the geometry's field
    (source / "ecg" / "1000001_20205_2_0.xml").unlink()
    with pytest.raises(ValueError, match="inputs changed"):
        pu.prepare_ukb(*args, **SETTINGS)
    with pytest.raises(ValueError, match="fractions"):
        pu.prepare_ukb(*args, **{**SETTINGS, "fractions": (0.5, 0.5, 0.5)})


def test_hash_splits_are_reproducible_and_follow_the_fractions() -> None:
    ids = [str(1000000 + k) for k in range(20000)]
    splits = assign_splits(ids)
    assert splits == assign_splits(ids) and splits[:500] == assign_splits(ids[:500])  # independent of the rest
    shares = pd.Series(splits).value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.01 and abs(shares["val"] - 0.1) < 0.01 and abs(shares["test"] - 0.1) < 0.01
    assert split_of("42", (0.0, 0.0, 1.0)) == "test" and split_of("42", (1.0, 0.0, 0.0)) == "train"
    assert hash_unit("42") != hash_unit("42", salt="other")


@pytest.mark.slow
def test_cli_prepare_ukb(ukb_inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare-ukb", "--ecg-dir", str(ukb_inputs["ecg_dir"]), "--cmr-dir", str(ukb_inputs["cmr_dir"]),
                 "--idp-csv", str(ukb_inputs["idp_csv"]), "--out", str(tmp_path), "--frames", "16",
                 "--image-size", "24", "--slices", "1", "--min-frames", "8", "--min-ecg-quality", "0",
                 "--no-progress"])
    assert code == 0
    assert f"{N_GOOD} subjects ok" in capsys.readouterr().out
    assert len(open_cohort(tmp_path)) == N_GOOD
    code = main(["prepare-ukb", "--ecg-dir", str(tmp_path / "absent"), "--cmr-dir", str(ukb_inputs["cmr_dir"]),
                 "--idp-csv", str(ukb_inputs["idp_csv"]), "--out", str(tmp_path / "o2")])
    assert code == 2 and "absent" in capsys.readouterr().err


def test_an_unexpected_reader_failure_skips_only_that_subject(ukb_inputs: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = pu.read_cine_slices

    def fails_for_one(path: Path, *args: object, **options: object):
        if path.name.startswith("1000003"):
            raise RuntimeError("decoder exploded")
        return real(path, *args, **options)

    monkeypatch.setattr(pu, "read_cine_slices", fails_for_one)
    summary = pu.prepare_ukb(ukb_inputs["ecg_dir"], ukb_inputs["cmr_dir"], ukb_inputs["idp_csv"], tmp_path,
                             **SETTINGS)
    assert summary.n_ok == N_GOOD - 1 and summary.skipped["unreadable"] == 1
    errors = pd.read_csv(tmp_path / "errors.csv", dtype={"subject_id": str}).set_index("subject_id")
    assert errors.loc["1000003", "file"].endswith("1000003_20209_2_0.zip")
    assert "RuntimeError: decoder exploded" in errors.loc["1000003", "detail"]
    assert "1000003" not in open_cohort(tmp_path).table["subject_id"].tolist()


def _ecg_raw(ecg_mv: np.ndarray) -> dict[str, np.ndarray]:
    """CardioSoft integer strips (5 uV/LSB) of a [12, S] ECG in mV."""
    return {lead: np.rint(ecg_mv[k] / 0.005).astype(np.int32) for k, lead in enumerate(LEADS)}


def test_ecg_quality_skips_or_flags(ukb_inputs: dict[str, Path], tmp_path: Path) -> None:
    """A real-shaped ECG with a PVC is kept with its beats counted; a flat recording is skipped at the
    default threshold and kept with flags at threshold 0."""
    from ecg_shapes import make_ecg

    pvc, _ = make_ecg(np.array([0.4, 1.3, 2.2, 3.1, 3.65, 5.0, 5.9, 6.8, 7.7, 8.6, 9.5]),
                      ["normal"] * 4 + ["pvc"] + ["normal"] * 6)
    flat = np.zeros_like(pvc)
    cine = next(p for p in sorted(ukb_inputs["cmr_dir"].iterdir()) if p.name.startswith("1000001"))
    write_cardiosoft_xml(tmp_path / "pvc.xml", _ecg_raw(pvc))
    write_cardiosoft_xml(tmp_path / "flat.xml", _ecg_raw(flat))
    settings = pu.PrepareSettings(geometry=SMALL, min_frames=8)
    kept = pu.load_subject(pu.SubjectTask("1", 0, tmp_path / "pvc.xml", cine), settings)
    assert isinstance(kept, pu.SubjectArrays)
    assert {k: kept.columns[k] for k in ("ecg_flags", "n_beats", "n_excluded_beats", "rhythm_flag")} == {
        "ecg_flags": "", "n_beats": 10, "n_excluded_beats": 2, "rhythm_flag": "ok"}  # the PVC and its pause
    assert kept.columns["ecg_quality"] > 0.9
    skipped = pu.load_subject(pu.SubjectTask("2", 1, tmp_path / "flat.xml", cine), settings)
    assert isinstance(skipped, pu.SubjectFailure) and skipped.reason == "ecg_quality"
    assert skipped.detail.startswith("score 0.00 < 0.5") and "flat:I" in skipped.detail
    flagged = pu.load_subject(pu.SubjectTask("2", 1, tmp_path / "flat.xml", cine),
                              pu.PrepareSettings(geometry=SMALL, min_frames=8, min_ecg_quality=0.0))
    assert isinstance(flagged, pu.SubjectArrays)
    assert flagged.columns["ecg_flags"] == ";".join(f"flat:{lead}" for lead in LEADS)
    assert (flagged.columns["n_beats"], flagged.columns["rhythm_flag"]) == (0, "too_few_beats")


def test_settings_are_declared_once() -> None:
    """The CLI options and the keyword arguments are the dataclass fields, with their help text."""
    import argparse

    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    pu.add_prepare_arguments(parser)
    names = {a.dest for a in parser._actions if a.dest != "help"}
    assert names == {f.name for f in fields(pu.PrepareSettings)} | {f.name for f in fields(pu.RunOptions)} | \
        set(GEOMETRY_FIELDS)  # the geometry: --geometry and its four overrides
    assert all(a.help for a in parser._actions)
    args = parser.parse_args(["--fractions", "0.7", "0.2", "0.1", "--min-ecg-quality", "0.3", "--no-progress",
                              "--frames", "30"])
    settings, run = pu.split_options(pu.prepare_options(args, paths=()))
    assert settings.fractions == (0.7, 0.2, 0.1) and settings.min_ecg_quality == 0.3 and run.progress is False
    assert settings.geometry == GEOMETRIES["ukb"].overridden(frames=30)
    assert pu.PrepareSettings().geometry == GEOMETRIES["ukb"]  # the default: the real-data geometry
    with pytest.raises(TypeError, match="unknown option"):
        pu.split_options({"n_frame": 3})
