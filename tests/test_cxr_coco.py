"""MS-COCO captions and Karpathy's splits for the captioner: readers, splits, references, bad input, CLI end to end.

The fixtures (``cxr.fixtures.write_coco_fixture``, ``write_karpathy_fixture``) are written by the tests: tiny
JPEG and PNG pictures of drawn shapes with two or three captions each, one truncated image and one image
without a caption.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ptacl_lib.cli import main
from ptacl_lib.cxr import metrics as cxr_metrics
from ptacl_lib.cxr.coco import hash_split, read_coco, read_karpathy
from ptacl_lib.cxr.data import clean_caption, load_samples, report_targets, splits_of_samples
from ptacl_lib.cxr.fixtures import write_coco_fixture, write_karpathy_fixture
from ptacl_lib.cxr.metrics import CAPTION_METRICS, caption_metrics
from ptacl_lib.cxr.pipeline import CXRRunConfig, _pairs
from ptacl_lib.cxr.readers import CXRReadError

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--min-word-count", "1"]


def test_coco_layout_every_caption_a_reference_and_val_split_by_id(tmp_path: Path) -> None:
    damaged = write_coco_fixture(tmp_path, n_train=12, n_val=8)
    errors: list[dict[str, str]] = []
    samples = read_coco(tmp_path, errors=errors)
    assert [(Path(e["file"]), e["study_id"]) for e in errors] == [(damaged["no_caption"], "3"),
                                                                  (damaged["missing"], "1001")]
    assert "no caption" in errors[0]["reason"] and "not found" in errors[1]["reason"]
    by_id = {s.study_id: s for s in samples}
    assert "3" not in by_id and "1001" not in by_id and by_id["2"].image_path == damaged["broken"]  # decoded later
    annotations = json.loads((tmp_path / "annotations" / "captions_train2017.json").read_text())["annotations"]
    assert by_id["1"].captions == tuple(a["caption"] for a in annotations if a["image_id"] == 1)
    assert len(by_id["1"].captions) >= 2 and by_id["1"].findings == ""
    assert {by_id[str(i)].split for i in range(4, 13)} == {"train"}
    val = {i: by_id[str(i)].split for i in range(1002, 1009)}
    assert val == {i: hash_split(i) for i in val} and set(val.values()) == {"val", "test"}
    assert [s.split for s in read_coco(tmp_path, errors=[])] == [s.split for s in samples]  # deterministic
    assert report_targets(by_id["1"]) == tuple(clean_caption(c) for c in by_id["1"].captions)
    with pytest.raises(CXRReadError, match="image 3 has no caption"):
        read_coco(tmp_path)  # without an errors list, a problem raises (as every reader does)


def test_coco_2014_names_and_a_given_test_file(tmp_path: Path) -> None:
    write_coco_fixture(tmp_path, n_train=6, n_val=6, year="2014", damaged=False)
    assert (tmp_path / "train2014" / "COCO_train2014_000000000001.jpg").exists()
    val = json.loads((tmp_path / "annotations" / "captions_val2014.json").read_text())
    train = json.loads((tmp_path / "annotations" / "captions_train2014.json").read_text())
    test_ids = {1002, 1003, 5}  # two val images and one train image
    test_file = tmp_path / "annotations" / "captions_mytest.json"
    test_file.write_text(json.dumps({
        "images": [im for im in val["images"] + train["images"] if im["id"] in test_ids],
        "annotations": [a for a in val["annotations"] + train["annotations"] if a["image_id"] in test_ids]}))
    samples = read_coco(tmp_path, test_file, errors=[])
    splits = {s.study_id: s.split for s in samples}
    assert len(splits) == len(samples) == 12  # the test file's images left train and val
    assert {k for k, v in splits.items() if v == "test"} == {"1002", "1003", "5"}
    assert {k for k, v in splits.items() if v == "val"} == {"1001", "1004", "1005", "1006"}
    assert next(s for s in samples if s.study_id == "5").image_path.parent.name == "train2014"


def test_karpathy_split_file_restval_joins_train(tmp_path: Path) -> None:
    damaged = write_karpathy_fixture(tmp_path, n_images=10)
    errors: list[dict[str, str]] = []
    samples = read_karpathy(tmp_path, errors=errors)  # the one dataset_*.json in root
    assert [Path(e["file"]) for e in errors] == [damaged["no_caption"]]
    splits = {s.sample_id: s.split for s in samples}
    assert splits["train2014/000007.jpg"] == "train"  # split "restval" in the file
    assert splits["val2014/000003.jpg"] == "val" and splits["val2014/000004.jpg"] == "test"
    first = samples[0]
    assert first.captions[0] == "a black square on the top" and first.image_path.exists()
    table = splits_of_samples(samples)
    assert table["study_id"].is_unique and set(table["split"]) == {"train", "val", "test"}
    flickr = tmp_path / "flickr"
    write_karpathy_fixture(flickr, n_images=5, name="dataset_flickr8k.json", filepath=False, damaged=False)
    loaded = load_samples("karpathy", flickr, karpathy_json="dataset_flickr8k.json")
    assert [s.image_path.parent for s in loaded] == [flickr] * 5


def test_clean_caption_and_training_pairs(tmp_path: Path) -> None:
    assert clean_caption("A man, riding a 2-wheeled bike.") == "a man riding a 2 wheeled bike"
    write_karpathy_fixture(tmp_path, n_images=10, damaged=False)
    train = [s for s in read_karpathy(tmp_path) if s.split == "train"]
    config = CXRRunConfig(dataset="karpathy", root=str(tmp_path), run_dir=str(tmp_path / "run"))
    images, captions = _pairs(train, config, epoch=0)
    assert images == train and all(c in report_targets(s) for s, c in zip(images, captions))
    assert _pairs(train, config, epoch=0) == (images, captions)  # the draw is seeded by seed and epoch
    assert any(_pairs(train, config, epoch=e)[1] != captions for e in range(1, 6))
    every = _pairs(train, CXRRunConfig(**{**config.__dict__, "train_captions": "all"}), epoch=0)
    assert len(every[1]) == sum(len(s.captions) for s in train) > len(train)


def test_files_in_neither_format_name_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    coco = tmp_path / "coco"
    write_coco_fixture(coco, n_train=3, n_val=3, damaged=False)
    karpathy = tmp_path / "karpathy"
    write_karpathy_fixture(karpathy, n_images=3, damaged=False)
    train_file = coco / "annotations" / "captions_train2017.json"
    coco_as_karpathy = r"not a Karpathy split file: images\[0\] has no 'filename'.*read it with --dataset coco"
    with pytest.raises(CXRReadError, match=coco_as_karpathy):
        read_karpathy(karpathy, train_file)
    train_file.write_text((karpathy / "dataset_coco.json").read_text())
    assert main(["cxr", "train", "--dataset", "coco", "--root", str(coco), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not a COCO captions file: the top level has no 'annotations'" in err and "--dataset karpathy" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    train_file.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                      "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(CXRReadError, match=r"annotations\[0\] has no 'caption' \(an instances"):
        read_coco(coco)
    data = json.loads((karpathy / "dataset_coco.json").read_text())
    del data["images"][1]["sentences"][0]["tokens"]
    (karpathy / "dataset_coco.json").write_text(json.dumps(data))
    with pytest.raises(CXRReadError, match=r"images\[1\].sentences\[0\] has no 'tokens'"):
        read_karpathy(karpathy)
    (karpathy / "dataset_coco.json").write_text(json.dumps({"images": {"0": data["images"][0]}}))
    with pytest.raises(CXRReadError, match="in the top level, 'images' is not a list"):
        read_karpathy(karpathy)
    (karpathy / "dataset_coco.json").write_text("{not json")
    with pytest.raises(CXRReadError, match="not valid JSON"):
        read_karpathy(karpathy)
    (train_file.parent / "captions_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match="captions_val2017.json"):
        read_coco(coco)
    with pytest.raises(FileNotFoundError, match="no COCO captions"):
        read_coco(karpathy)
    with pytest.raises(ValueError, match="captions only"):
        load_samples("karpathy", karpathy, target="impression")


@pytest.mark.slow
def test_cli_trains_and_evaluates_the_coco_layout(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cxr_metrics.shutil, "which", lambda name: None)  # no Java: METEOR is NaN, said so
    damaged = write_coco_fixture(tmp_path / "coco", n_train=12, n_val=8)
    run = tmp_path / "run"
    assert main(["cxr", "train", "--dataset", "coco", "--root", str(tmp_path / "coco"), "--run-dir", str(run),
                 *TINY]) == 0
    errors = pd.read_csv(run / "errors.csv")
    assert {Path(f) for f in errors["file"]} == {damaged["broken"], damaged["no_caption"], damaged["missing"]}
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    expected = {**{str(i): "train" for i in range(1, 13) if i not in (2, 3)},
                **{str(i): hash_split(i) for i in range(1002, 1009)}}
    assert splits.set_index("study_id")["split"].to_dict() == expected
    assert pd.read_csv(run / "history.csv")["train_images"].tolist() == [10]  # one caption per image and epoch

    capsys.readouterr()
    assert main(["cxr", "evaluate", "--run-dir", str(run), "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "test split, beam 2" in out and "not scored: pathology" in out and "not scored: lung_localisation" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["beam"] == 2 and math.isnan(metrics["METEOR"]) and "Java" in metrics["METEOR_note"]
    assert set(metrics["not_scored"]) == {"pathology", "lung_localisation"}
    assert not any(k.startswith(("chexpert", "finding", "label")) for k in metrics)
    per_study = pd.read_csv(run / "per_study.csv", dtype=str).fillna("")
    assert set(per_study["study_id"]) == {str(i) for i in range(1002, 1009) if hash_split(i) == "test"}
    references = [r.split(" | ") for r in per_study["reference"]]
    assert metrics["n_references"] == sum(map(len, references)) > len(references)
    rescored = caption_metrics(list(per_study["generated"]), references, meteor=False)
    for key in CAPTION_METRICS:  # the metrics are against every reference
        assert rescored[key] == pytest.approx(metrics[key], nan_ok=True), key

    image = tmp_path / "coco" / "val2017" / "000000001004.jpg"
    capsys.readouterr()
    assert main(["cxr", "caption", str(image), "--run-dir", str(run), "--heatmaps", str(tmp_path / "hm")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "observations" not in record and record["heatmaps"] == [str(tmp_path / "hm" / "000000001004_words.png")]
    assert Path(record["heatmaps"][0]).stat().st_size > 1000


@pytest.mark.slow
def test_cli_trains_and_evaluates_a_karpathy_split_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    damaged = write_karpathy_fixture(tmp_path / "data", n_images=20)
    run = tmp_path / "run"
    assert main(["cxr", "train", "--dataset", "karpathy", "--root", str(tmp_path / "data"), "--json",
                 "dataset_coco.json", "--run-dir", str(run), "--train-captions", "all", *TINY]) == 0
    errors = pd.read_csv(run / "errors.csv")
    assert {Path(f) for f in errors["file"]} == {damaged["broken"], damaged["no_caption"]}
    assert set(errors["stage"]) == {"train"} and errors["reason"].str.contains("(?i)truncated|no caption").all()
    splits = pd.read_csv(run / "splits.csv", dtype=str).set_index("study_id")["split"]
    assert splits["train2014/000012.jpg"] == "train" and (splits == "test").sum() == 4  # 12: restval
    data = json.loads((tmp_path / "data" / "dataset_coco.json").read_text())
    train_captions = sum(len(im["sentences"]) for im in data["images"]
                         if im["split"] in ("train", "restval") and im["imgid"] not in (1, 2))
    assert pd.read_csv(run / "history.csv")["train_images"].tolist() == [train_captions]  # every caption
    assert main(["cxr", "evaluate", "--run-dir", str(run), "--no-meteor", "--beam", "3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_studies"] == 4 and metrics["beam"] == 3 and metrics["METEOR_note"] == "skipped on request"
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("BLEU-1", "BLEU-4", "ROUGE-L"))
    assert "pathology" in metrics["not_scored"]
