"""Real-data plumbing: Open-I names in both layouts, report cleaning, study/patient splits, streamed images.

Fixtures are written by the tests in the real layouts (file names as Kaggle and NLM spell them); images and
report text are synthetic (``cxr.fixtures``, from phantoms), so nothing of Open-I (CC BY-NC-ND) is committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ptacl_lib.cxr.data import (
    CaptionDataset,
    ImageStore,
    clean_report,
    collate_captions,
    load_samples,
    report_target,
    scan_images,
    split_studies,
    splits_from_table,
)
from ptacl_lib.cxr.fixtures import write_kaggle_fixture
from ptacl_lib.cxr.readers import CXRReadError, CXRSample, openi_image_id, read_openi, read_openi_kaggle
from ptacl_lib.cxr.vocab import Vocabulary


def test_openi_names_of_both_layouts_meet() -> None:
    assert openi_image_id("1_IM-0001-4001.dcm.png") == openi_image_id("CXR1_1_IM-0001-4001")
    assert openi_image_id("10_IM-0002-1001.dcm.png") == openi_image_id("CXR10_IM-0002-1001") == "CXR10_IM-0002-1001"
    assert openi_image_id("CXR1_1_IM-0001-4001") != openi_image_id("CXR1_1_IM-0001-3001")


def test_clean_report_rule() -> None:
    text = "1. Heart size normal.  2. No XXXX of pneumothorax; a 3 cm nodule in the left XXXX.. Normal chest x-XXXX"
    assert clean_report(text) == ("heart size normal . no of pneumothorax ; a cm nodule in the left . "
                                  "normal chest x .")
    assert clean_report("XXXX. 12/3/2004") == ""
    sample = CXRSample("openi", "a", "s", None, Path("x.png"), None, "", "No acute disease.")
    assert report_target(sample, "findings") == "" and report_target(sample, "impression") == "no acute disease ."
    with pytest.raises(ValueError, match="target"):
        report_target(sample, "everything")


def test_kaggle_reader_groups_views_and_reports_missing_images(tmp_path: Path) -> None:
    damaged = write_kaggle_fixture(tmp_path, n_studies=6, image_size=32)
    errors: list[dict[str, str]] = []
    samples = read_openi_kaggle(tmp_path, errors=errors)
    # study 6 has no findings; study 1 lost its frontal image (missing); odd studies have a lateral view
    assert sorted({s.study_id for s in samples}) == ["CXR1", "CXR2", "CXR3", "CXR4", "CXR5"]
    assert [s.view for s in samples if s.study_id == "CXR3"] == ["Frontal", "Lateral"]
    assert [s.view for s in samples if s.study_id == "CXR1"] == ["Lateral"]
    assert [Path(e["file"]) for e in errors] == [damaged["missing"]]
    assert all(s.image_path.name.endswith(".dcm.png") and "XXXX" in s.findings for s in samples)
    assert len(read_openi_kaggle(tmp_path, frontal_only=True, errors=[])) == 4
    with pytest.raises(CXRReadError, match="image not found"):
        read_openi_kaggle(tmp_path)
    (tmp_path / "indiana_reports.csv").unlink()
    with pytest.raises(CXRReadError, match="indiana_reports.csv"):
        read_openi_kaggle(tmp_path)


def test_nlm_xml_reads_kaggle_named_images_and_views(tmp_path: Path) -> None:
    """An NLM XML report (id CXR1_1_IM-...) next to Kaggle-named PNGs and Kaggle's projections table."""
    write_kaggle_fixture(tmp_path, n_studies=2, image_size=16, damaged=False)
    reports = tmp_path / "ecgen-radiology"
    reports.mkdir()
    (reports / "1.xml").write_text(
        '<eCitation><uId id="CXR1"/><Abstract><AbstractText Label="FINDINGS">Clear lungs.</AbstractText>'
        '</Abstract><parentImage id="CXR1_1_IM-1001-1001"/><parentImage id="CXR1_1_IM-1001-2001"/></eCitation>')
    samples = read_openi(reports, tmp_path / "images" / "images_normalized", tmp_path / "indiana_projections.csv",
                         frontal_only=False)
    assert [(s.sample_id, s.view, s.image_path.name) for s in samples] == [
        ("CXR1_1_IM-1001-1001", "Frontal", "1_IM-1001-1001.dcm.png"),
        ("CXR1_1_IM-1001-2001", "Lateral", "1_IM-1001-2001.dcm.png")]


def _samples(n_studies: int, with_subjects: bool) -> list[CXRSample]:
    out = []
    for k in range(n_studies):
        subject = f"{k // 3}" if with_subjects else None  # three studies per patient
        for view in ("PA", "LATERAL"):
            out.append(CXRSample("x", f"{k}{view}", f"s{k}", subject, Path(f"{k}{view}.png"), view, "text", ""))
    return out


@pytest.mark.parametrize("with_subjects", [False, True])
def test_split_keeps_studies_and_patients_whole(with_subjects: bool) -> None:
    samples = _samples(30, with_subjects)
    splits = split_studies(samples, (0.6, 0.2, 0.2), seed=1)
    assert len(splits) == 30 and splits["study_id"].is_unique
    assert set(splits["split"]) == {"train", "val", "test"}
    if with_subjects:
        assert (splits.groupby("subject_id")["split"].nunique() == 1).all()
    assert splits.equals(split_studies(samples, (0.6, 0.2, 0.2), seed=1))
    assert not splits.equals(split_studies(samples, (0.6, 0.2, 0.2), seed=2))
    with pytest.raises(ValueError, match="fractions"):
        split_studies(samples, (0.5, 0.2, 0.2))


def test_image_store_cache_and_unreadable_images(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:60])
    samples = [CXRSample("x", n, n, None, tmp_path / f"{n}.png", None, "f", "") for n in ("good", "bad", "gone")]
    store = ImageStore(16, tmp_path / "cache")
    ok, errors = scan_images(samples, store, workers=1)
    assert [s.sample_id for s in ok] == ["good"]
    assert [(Path(e["file"]).name, e["stage"]) for e in errors] == [("bad.png", "scan"), ("gone.png", "scan")]
    cached = store.cache_path(samples[0])
    assert cached is not None and cached.exists() and cached.stat().st_size < 16 * 16 + 200
    direct = ImageStore(16).load(samples[0])
    assert direct.shape == (16, 16) and direct.dtype == np.uint8 and np.array_equal(np.load(cached), direct)
    good.unlink()  # the cache now serves the image
    assert np.array_equal(store.load(samples[0]), direct)
    with pytest.raises(CXRReadError, match="bad.png"):
        store.load(samples[1])


def test_caption_dataset_skips_unreadable_images(tmp_path: Path) -> None:
    Image.fromarray(np.tile(np.arange(20, dtype=np.uint8) * 10, (20, 1))).save(tmp_path / "a.png")
    samples = [CXRSample("x", n, n, None, tmp_path / f"{n}.png", None, "", "") for n in ("a", "gone")]
    vocab = Vocabulary.build(["left effusion ."])
    data = CaptionDataset(samples, ["left effusion .", "left ."], vocab, ImageStore(8), max_len=10)
    batch = collate_captions([data[0], data[1]], vocab.pad)
    assert data[1] is None and batch is not None
    assert batch["images"].shape == (1, 8, 8) and float(batch["images"].max()) > 0.9
    assert float(batch["images"].min()) < 0.1
    assert batch["captions"].tolist() == [vocab.encode("left effusion .")] and batch["index"].tolist() == [0]
    assert collate_captions([None]) is None


def test_load_samples_phantoms_and_bad_roots(tmp_path: Path) -> None:
    samples = load_samples("phantoms", tmp_path / "ph", n_phantoms=5, image_size=32)
    assert len(samples) == 5 and all(s.image_path.exists() for s in samples)
    table = pd.read_csv(tmp_path / "ph" / "phantoms.csv")
    assert report_target(samples[0]) == clean_report(table["caption"][0])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_samples("openi-kaggle", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="dataset"):
        load_samples("chexpert", tmp_path)


def test_load_samples_mimic_keeps_all_views_and_splits_by_patient(tmp_path: Path) -> None:
    from test_cxr_readers import _mimic

    root = _mimic(tmp_path)
    errors: list[dict[str, str]] = []
    samples = load_samples("mimic-cxr", root, errors)
    assert sorted(s.view for s in samples) == ["AP", "LATERAL", "PA"] and not errors
    assert len(load_samples("mimic-cxr", root, frontal_only=True)) == 2
    splits = split_studies(samples, (0.5, 0.0, 0.5))
    assert dict(zip(splits["study_id"], splits["subject_id"])) == {"50414267": "10000032", "50771383": "10000898"}
    (root / "files" / "p10" / "p10000898" / "s50771383.txt").unlink()  # a lost report: listed, not fatal
    kept = load_samples("mimic-cxr", root, errors)
    assert {s.study_id for s in kept} == {"50414267"} and errors[0]["file"].endswith("s50771383.txt")


def test_given_split_table_like_mimics_official_one(tmp_path: Path) -> None:
    from test_cxr_readers import _mimic

    samples = load_samples("mimic-cxr", _mimic(tmp_path / "m"))
    table = tmp_path / "mimic-cxr-2.0.0-split.csv"  # MIMIC's columns: one row per image
    table.write_text("dicom_id,study_id,subject_id,split\n02aa804e-bde0afdd,50414267,10000032,validate\n"
                     "174413ec-4ec4c1f7,50414267,10000032,validate\n9,59999999,10000099,test\n")
    splits = splits_from_table(samples, table)
    assert splits.to_dict("records") == [{"study_id": "50414267", "subject_id": "10000032", "split": "val"}]
    table.write_text("study_id,split\n50414267,train\n50414267,test\n")
    with pytest.raises(ValueError, match="50414267 is in two splits"):
        splits_from_table(samples, table)
    table.write_text("study_id,fold\n50414267,1\n")
    with pytest.raises(ValueError, match="study_id and split"):
        splits_from_table(samples, table)
