"""Open-I and MIMIC-CXR readers on small fixtures written in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptacl_lib.cxr.data import ImageStore
from ptacl_lib.cxr.readers import CXRReadError, read_mimic_cxr, read_openi, report_sections

OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR{n}"/>
  <pmcId id="{n}"/>
  <docSource>CXR</docSource>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">{findings}</AbstractText>
        <AbstractText Label="IMPRESSION">{impression}</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH><major>normal</major></MeSH>
  {images}
</eCitation>
"""
PARENT_IMAGE = """<parentImage id="{id}">
    <figureId>F1</figureId>
    <caption>Xray Chest PA and Lateral</caption>
    <panel type="single"><url>/hadoop/storage/radiology/extract/{id}.jpg</url></panel>
  </parentImage>"""


def _png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 30), value, np.uint8)).save(path)


def _openi(root: Path) -> tuple[Path, Path]:
    reports, images = root / "ecgen-radiology", root / "images"
    reports.mkdir(parents=True)
    cases = {1: ("The heart is normal in size.\n   The lungs are clear.", "Normal chest x-XXXX.",
                 ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]),
             2: ("Small left pleural effusion.", "Effusion.", ["CXR2_1_IM-0652-1001"]),
             3: ("", "Limited study.", ["CXR3_1_IM-1384-1001"])}
    for n, (findings, impression, ids) in cases.items():
        body = "\n  ".join(PARENT_IMAGE.format(id=i) for i in ids)
        (reports / f"{n}.xml").write_text(OPENI_XML.format(n=n, findings=findings, impression=impression, images=body))
        for i in ids:
            _png(images / f"{i}.png")
    return reports, images


def test_read_openi(tmp_path: Path) -> None:
    reports, images = _openi(tmp_path)
    samples = read_openi(reports, images)
    assert [s.sample_id for s in samples] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_1_IM-0652-1001"]
    first = samples[0]
    assert (first.source, first.study_id, first.view) == ("openi", "CXR1", None)
    assert first.findings == "The heart is normal in size. The lungs are clear."  # whitespace normalised
    assert (first.impression, first.indication, first.comparison) == (
        "Normal chest x-XXXX.", "Positive TB test", "None.")
    assert len(read_openi(reports, images, require_findings=False)) == 4
    proj = tmp_path / "indiana_projections.csv"
    # Kaggle's real names: "1_IM-0001-3001.dcm.png" is NLM image "CXR1_1_IM-0001-3001"
    proj.write_text("uid,filename,projection\n1,1_IM-0001-3001.dcm.png,Frontal\n1,1_IM-0001-4001.dcm.png,"
                    "Lateral\n2,2_IM-0652-1001.dcm.png,Frontal\n")
    frontal = read_openi(reports, images, projections_csv=proj)
    assert [s.sample_id for s in frontal] == ["CXR1_1_IM-0001-3001", "CXR2_1_IM-0652-1001"]
    assert {s.view for s in frontal} == {"Frontal"}
    img = ImageStore(16).load_file(frontal[0].image_path)
    assert img.shape == (16, 16) and img.dtype == np.float32 and np.allclose(img, 0.0)  # constant -> zeros


def test_openi_errors_name_the_file(tmp_path: Path) -> None:
    reports, images = _openi(tmp_path)
    (images / "CXR2_1_IM-0652-1001.png").unlink()
    with pytest.raises(CXRReadError, match="2.xml.*CXR2_1_IM-0652-1001"):
        read_openi(reports, images)
    errors: list[dict[str, str]] = []  # with an error list the image is reported and skipped instead
    assert [s.study_id for s in read_openi(reports, images, errors=errors)] == ["CXR1", "CXR1"]
    assert [(e["study_id"], Path(e["file"]).name) for e in errors] == [("CXR2", "CXR2_1_IM-0652-1001.png")]
    _png(images / "CXR2_1_IM-0652-1001.png")
    (reports / "9.xml").write_text("<eCitation><oops></eCitation>")
    with pytest.raises(CXRReadError, match="9.xml"):
        read_openi(reports, images)


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def _mimic(root: Path) -> Path:
    rows = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns"]
    studies = {("10000032", "50414267"): [("02aa804e-bde0afdd", "PA"), ("174413ec-4ec4c1f7", "LATERAL")],
               ("10000898", "50771383"): [("f7a7f8d6-7e0b4e1d", "AP")]}
    for (subject, study), images in studies.items():
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        text = MIMIC_REPORT if study == "50414267" else MIMIC_REPORT.replace("No acute", "Mild edema. No acute")
        (folder / f"s{study}.txt").write_text(text)
        (folder / f"s{study}").mkdir()
        for dicom, view in images:
            Image.fromarray(np.zeros((20, 20), np.uint8)).save(folder / f"s{study}" / f"{dicom}.jpg")
            rows.append(f"{dicom},{subject},{study},CHEST (PA AND LAT),{view},3056,2544")
    (root / "mimic-cxr-2.0.0-metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_read_mimic_cxr(tmp_path: Path) -> None:
    root = _mimic(tmp_path)
    samples = read_mimic_cxr(root)
    assert [(s.sample_id, s.view) for s in samples] == [("02aa804e-bde0afdd", "PA"), ("f7a7f8d6-7e0b4e1d", "AP")]
    s = samples[0]
    assert (s.source, s.subject_id, s.study_id) == ("mimic-cxr", "10000032", "50414267")
    assert s.findings.startswith("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral")
    assert s.impression == "No acute cardiopulmonary process."
    assert s.indication.startswith("___F with new onset ascites")
    assert s.image_path == root / "files/p10/p10000032/s50414267/02aa804e-bde0afdd.jpg"
    assert samples[1].impression == "Mild edema. No acute cardiopulmonary process."
    assert len(read_mimic_cxr(root, views=None)) == 3
    assert ImageStore(8).load_file(s.image_path).shape == (8, 8)


def test_mimic_errors_name_the_subject_and_file(tmp_path: Path) -> None:
    root = _mimic(tmp_path)
    (root / "files/p10/p10000898/s50771383.txt").unlink()
    with pytest.raises(CXRReadError, match="10000898.*s50771383.txt"):
        read_mimic_cxr(root)
    with pytest.raises(CXRReadError, match="missing columns"):
        bad = tmp_path / "bad.csv"
        bad.write_text("dicom_id,subject_id\n")
        read_mimic_cxr(root, bad)


def test_report_sections() -> None:
    sections = report_sections(MIMIC_REPORT)
    assert set(sections) >= {"EXAMINATION", "INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION"}
    assert sections["COMPARISON"] == "None."
