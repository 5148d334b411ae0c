"""Opening a cohort: the API, and a clear error (naming row and column) for every bad manifest."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from ptacl_lib.data import (
    LEADS,
    PHENOTYPES,
    ManifestError,
    PreprocessConfig,
    PTACLDataset,
    SubjectDataError,
    collate,
    open_cohort,
)
from ptacl_lib.data import cohort as cohort_module
from ptacl_lib.data.cohort import ImplausiblePhenotypeWarning, read_manifest, validate_manifest


@pytest.fixture()
def cohort_copy(tiny_cohort: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the tiny cohort; returns its manifest path."""
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, dst, ignore=shutil.ignore_patterns("cache"))
    return dst / tiny_cohort.name


def _edit(manifest: Path, fn) -> Path:
    table = pd.read_csv(manifest, dtype={"subject_id": str})
    fn(table)
    table.to_csv(manifest, index=False)
    return manifest


def test_open_cohort_api(tiny_cohort: Path) -> None:
    cohort = open_cohort(tiny_cohort)
    assert len(cohort) == 48 == len(cohort.table)
    assert cohort.geometry.ecg_hz == 500
    ecg, cmr = cohort.ecg(0), cohort.cmr(0)
    assert ecg.dtype == np.float32 and ecg.shape == (len(LEADS), 5000)
    assert cmr.dtype == np.float32 and cmr.shape == (1, 50, 64, 64)  # [S, T, H, W], one slice included
    assert 0.0 <= cmr.min() and cmr.max() <= 1.0
    assert set(cohort.table["split"]) <= {"train", "val", "test"}
    assert sum(len(cohort.indices(s)) for s in ("train", "val", "test")) == 48
    assert cohort.phenotypes().shape == (48, len(PHENOTYPES))
    assert cohort.index_of(cohort.table["subject_id"].iloc[7]) == 7
    assert cohort.extra("volumes", 0).shape == (2, 50)
    assert cohort.extra("no_such_extra", 0) is None
    assert open_cohort(tiny_cohort.parent).manifest_path == tiny_cohort  # a directory works too


def test_example_manifest_is_valid() -> None:
    table = validate_manifest(read_manifest(REPO / "data_manifest" / "example_manifest.csv"))
    assert len(table) == 5 and table["lvm"].isna().sum() == 1


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("lvef"), r"missing required column\(s\): lvef"),
    (lambda t: t.loc.__setitem__((5, "subject_id"), t.loc[2, "subject_id"]),
     r"row 7 \(subject .*\): column 'subject_id' duplicates row 4"),
    (lambda t: t.loc.__setitem__((3, "split"), "training"), r"row 5 .*column 'split' has unknown value 'training'"),
    (lambda t: t.loc.__setitem__((t.index[t["split"] == "train"][0], "lvm"), np.nan),
     r"row \d+ .*column 'lvm' is NaN in split 'train'"),
    (lambda t: t.loc.__setitem__((4, "ecg_path"), "ecg/missing.npy"),
     r"row 6 .*column 'ecg_path': file not found: .*missing.npy"),
    (lambda t: t.loc.__setitem__((1, "cmr_path"), "array:4800"),
     r"row 3 .*column 'cmr_path' = 'array:4800' is not an index into the array store \(0..47\)"),
])
def test_manifest_errors_name_row_and_column(cohort_copy: Path, edit, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        open_cohort(_edit(cohort_copy, edit))


def test_nan_phenotype_is_allowed_in_val(cohort_copy: Path) -> None:
    def blank_val(t: pd.DataFrame) -> None:
        t.loc[t["split"] == "val", "lvm"] = np.nan
    assert np.isnan(open_cohort(_edit(cohort_copy, blank_val)).table["lvm"]).any()


def _implausible(t: pd.DataFrame) -> None:
    """Manifest line 3: an EF of 105 %; line 6: a negative LV mass; line 9: an LV ESV above its EDV."""
    t.loc[1, "lvef"] = 105.0
    t.loc[4, "lvm"] = -12.0
    t.loc[7, "lvesv"] = t.loc[7, "lvedv"] + 5.0


def test_implausible_rows_are_left_out_named_by_row_and_field(cohort_copy: Path) -> None:
    manifest = _edit(cohort_copy, _implausible)
    full = pd.read_csv(manifest, dtype={"subject_id": str})
    with pytest.warns(ImplausiblePhenotypeWarning) as caught:
        cohort = open_cohort(manifest)
    assert len(caught) == 1  # said once
    message = str(caught[0].message)
    for line, said in ((3, "lvef = 105 % is outside 0-100 %"), (6, "lvm = -12 g is not above 0"),
                       (9, r"lvesv = [\d.]+ mL is above lvedv = [\d.]+ mL")):
        assert re.search(rf"row {line} \(subject {full['subject_id'][line - 2]}\): {said}", message), line
    sid = full["subject_id"]
    assert cohort.rejected[["row", "subject_id", "fields", "reason"]].values.tolist() == [
        [3, sid[1], "lvef", "impossible"], [6, sid[4], "lvm", "impossible"],
        [9, sid[7], "lvesv;lvedv", "contradictory"]]
    assert cohort.rejected["values"].tolist()[:2] == ["105", "-12"]

    # the other 45 subjects go on, and every per-row accessor works on the reduced table
    kept = full.drop(index=[1, 4, 7]).reset_index(drop=True)
    assert len(cohort) == 45 and cohort.table["subject_id"].tolist() == kept["subject_id"].tolist()
    assert not set(sid[[1, 4, 7]]) & set(cohort.table["subject_id"])
    assert cohort.index_of(sid[8]) == 5 and cohort.phenotypes().shape == (45, len(PHENOTYPES))
    for split in ("train", "val", "test"):
        assert cohort.table["subject_id"].iloc[cohort.indices(split)].tolist() == \
            kept.loc[kept["split"] == split, "subject_id"].tolist()
    store = np.load(cohort_copy.parent / "arrays" / "ecg.npy", mmap_mode="r")
    for i in (0, 1, 5, 44):  # array:INDEX still names the subject's own row of the store
        assert cohort.table["ecg_path"].iloc[i] == kept["ecg_path"].iloc[i]
        np.testing.assert_array_equal(cohort.ecg(i), store[int(kept["ecg_path"].iloc[i].split(":")[1])])
    assert cohort.table["phenotype_flags"].map(type).eq(str).all()


def test_a_manifest_with_only_implausible_rows_is_an_error(cohort_copy: Path) -> None:
    pd.read_csv(cohort_copy).iloc[:2].assign(rvef=140.0).to_csv(cohort_copy, index=False)
    with pytest.raises(ManifestError, match=r"every row has impossible .*row 2 .*rvef = 140 % is outside 0-100 %"):
        open_cohort(cohort_copy)


def test_the_cache_follows_the_rows_left_out(cohort_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache built over every row (as before rows were left out) is not reused for the reduced table: each
    cached row is the preprocessed ECG of the table's subject at that row."""
    from ptacl_lib.data.cache import PreprocessedCohort
    from ptacl_lib.data.preprocess import preprocess_ecg

    table = pd.read_csv(cohort_copy, dtype={"subject_id": str}).iloc[:8].copy()
    table.loc[1, "lvef"] = 105.0
    table.to_csv(cohort_copy, index=False)
    config = PreprocessConfig()
    with monkeypatch.context() as patched:  # the checks switched off: the cache holds all 8 rows
        patched.setattr(cohort_module, "check_phenotypes", lambda t, manifest: (t, None))
        everything = PreprocessedCohort.build_or_load(open_cohort(cohort_copy), config, progress=False)
    assert len(everything.ok) == 8
    with pytest.warns(ImplausiblePhenotypeWarning, match="row 3"):
        cohort = open_cohort(cohort_copy)
    cache = PreprocessedCohort.build_or_load(cohort, config, progress=False)
    assert cache.root != everything.root and len(cache.ok) == len(cohort) == 7
    for i in range(len(cohort)):
        np.testing.assert_allclose(np.asarray(cache.ecg[i]) * cache.lead_scale[:, None],
                                   preprocess_ecg(cohort.ecg(i), cohort.geometry.ecg_hz, config), rtol=1e-4, atol=1e-5)


def test_wrong_array_shapes_are_rejected(cohort_copy: Path) -> None:
    store = cohort_copy.parent / "arrays"
    np.save(store / "ecg.npy", np.zeros((48, 8, 5000), dtype=np.float32))  # 8 leads instead of 12
    with pytest.raises(ManifestError, match=r"ecg arrays have shape \(8, 5000\), expected \(12, 5000\)"):
        open_cohort(cohort_copy)


def test_wrong_file_shape_names_subject_and_file(cohort_copy: Path) -> None:
    np.save(cohort_copy.parent / "short.npy", np.zeros((5000,), dtype=np.float32))
    table = _edit(cohort_copy, lambda t: t.loc.__setitem__((0, "ecg_path"), "short.npy"))
    cohort = open_cohort(table)
    sid = cohort.table["subject_id"].iloc[0]
    with pytest.raises(SubjectDataError, match=rf"subject {sid} \(ecg_path=short.npy\): ECG has shape \(5000,\)"):
        cohort.ecg(0)


def test_broken_subject_is_skipped_and_reported_others_kept(cohort_copy: Path) -> None:
    """Bulk preprocessing loses only the broken subject, and says which one and why."""
    (cohort_copy.parent / "corrupt.npy").write_bytes(b"not a numpy file")
    manifest = _edit(cohort_copy, lambda t: t.loc.__setitem__((0, "ecg_path"), "corrupt.npy"))
    cohort = open_cohort(manifest)
    with pytest.warns(UserWarning, match="skipped 1 of 48 subjects"):
        dataset = PTACLDataset(cohort, split=None, config=PreprocessConfig(), progress=False)
    assert len(dataset) == 47
    errors = dataset.cache.errors
    assert list(errors["subject_id"]) == [cohort.table["subject_id"].iloc[0]]
    assert "corrupt.npy" in errors["reason"].iloc[0]


def test_dataset_items_and_collate(tiny_cohort: Path) -> None:
    cohort = open_cohort(tiny_cohort)
    config = PreprocessConfig()
    dataset = PTACLDataset(cohort, "train", config, progress=False)
    assert len(dataset) == len(cohort.indices("train"))
    batch = collate([dataset[k] for k in range(4)])
    g = config.geometry
    assert batch["ecg"].shape == (4, 12, 10 * g.ecg_hz)
    assert batch["cmr"].shape == (4, g.slices, g.frames, g.image_size, g.image_size)
    assert float(batch["cmr"].min()) >= 0.0 and float(batch["cmr"].max()) <= 1.0
    assert batch["phenotypes"].shape == (4, len(PHENOTYPES))
    assert batch["subject_id"] == list(cohort.table["subject_id"].iloc[batch["index"].numpy()])
    valid = batch["rpeaks"] >= 0
    assert (valid.sum(1) >= 5).all()  # 10 s holds at least 5 beats at any plausible rate
    # padding only at the end, and peaks strictly increasing
    for row, ok in zip(batch["rpeaks"], valid):
        peaks = row[ok]
        assert ok[: len(peaks)].all() and (peaks.diff() > 0).all()
    # per-lead scale is cohort-wide: the train split's leads have unit RMS on average
    train_rms = np.sqrt(np.mean([np.asarray(dataset.cache.ecg[i]).var(-1) for i in dataset.rows], axis=0))
    np.testing.assert_allclose(train_rms, 1.0, rtol=1e-3)


def test_file_path_manifest_reads_raw_ukb_files(tmp_path: Path) -> None:
    """A manifest may point straight at UK Biobank files; they come back on the cohort's axes."""
    from ptacl_lib.data.readers import read_ukb_xml
    from ptacl_lib.data.readers.writers import ukb_like_phenotypes, write_ukb_like_cohort

    paths = write_ukb_like_cohort(tmp_path / "ukb", 3, n_frames=20)
    rows = []
    for k, xml in enumerate(sorted(paths["ecg_dir"].glob("*.xml"))):
        eid = xml.name.split("_")[0]
        rows.append({"subject_id": eid, "split": "train", "ecg_path": str(xml.relative_to(tmp_path)),
                     "cmr_path": str((paths["cmr_dir"] / f"{eid}_20209_2_0.zip").relative_to(tmp_path)),
                     **ukb_like_phenotypes(k)})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    cohort = open_cohort(manifest)
    ecg = cohort.ecg(1)
    assert ecg.shape == (12, 5000) and ecg.dtype == np.float32
    np.testing.assert_allclose(ecg, read_ukb_xml(tmp_path / rows[1]["ecg_path"]).signal, atol=1e-6)
    cmr = cohort.cmr(1)  # 20 acquired frames -> the cohort's 50, heart-cropped to 64 x 64, in [0, 1]
    assert cmr.shape == (1, 50, 64, 64) and cmr.dtype == np.float32
    assert cmr.min() >= 0.0 and cmr.max() <= 1.0 and cmr.std() > 0.01
    (tmp_path / rows[2]["ecg_path"]).write_text("<CardiologyXML><StripData>")  # truncated file
    with pytest.raises(SubjectDataError, match=rf"subject {rows[2]['subject_id']} \(ecg_path=.*xml\): unreadable"):
        cohort.ecg(2)
