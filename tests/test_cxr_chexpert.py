"""The 14 CheXpert observations: naming, negation and uncertainty, and their use by F1, heatmaps and the post-check.

Example sentences are written for these tests in the style of Open-I findings (not copied from it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptacl_lib.cxr.decode import DecodedCaption
from ptacl_lib.cxr.heatmaps import pathology_heatmaps
from ptacl_lib.cxr.mentions import CHEXPERT, chexpert_labels, find_mentions, observations_present, positive_findings
from ptacl_lib.cxr.metrics import observation_scores
from ptacl_lib.cxr.report import compose_report, post_check


@pytest.mark.parametrize("text, expected", [
    ("Bibasilar atelectasis.", {"atelectasis"}),
    ("Patchy opacity in the right lower lobe, concerning for pneumonia.", {"lung_opacity", "pneumonia"}),
    ("Mild pulmonary vascular congestion.", {"edema"}),
    ("The mediastinum is widened.", {"enlarged_cardiomediastinum"}),
    ("Right pleural thickening.", {"pleural_other"}),
    ("Old healed left rib fracture.", {"fracture"}),
    ("Right PICC tip in the SVC. Sternotomy wires.", {"support_devices", "no_finding"}),
    ("Blunting of the left costophrenic angle.", {"effusion"}),
    ("The heart size is normal. The lungs are clear.", {"no_finding"}),
])
def test_observations_named(text: str, expected: set[str]) -> None:
    assert observations_present(text) == expected


def test_negation_and_uncertainty() -> None:
    labels = chexpert_labels("No pneumothorax or pleural effusion. Lungs are clear of focal airspace disease. "
                             "Possible left lower lobe atelectasis. Pneumonia cannot be excluded.")
    assert labels["pneumothorax"] == labels["effusion"] == labels["consolidation"] == 0.0
    assert labels["atelectasis"] == labels["pneumonia"] == -1.0
    assert math.isnan(labels["no_finding"]) and math.isnan(labels["fracture"])
    # a certain mention wins over an uncertain one of the same observation
    assert chexpert_labels("Possible atelectasis. Left basilar atelectasis.")["atelectasis"] == 1.0
    # a clause ends at "but": the negation does not reach the second finding
    mentions = {m.pathology: m for m in find_mentions("No effusion but there is left lower atelectasis.")}
    assert mentions["effusion"].negated and not mentions["atelectasis"].negated
    assert (mentions["atelectasis"].side, mentions["atelectasis"].zone) == ("left", "lower")
    assert set(chexpert_labels("")) == set(CHEXPERT) and len(CHEXPERT) == 14


def test_support_devices_do_not_cancel_no_finding() -> None:
    assert observations_present("Sternotomy wires. The lungs are clear.") == {"support_devices", "no_finding"}


def test_observation_scores_count_per_observation() -> None:
    refs = ["left lower lobe atelectasis .", "no acute disease .", "mild edema . small right effusion ."]
    cands = ["left lower lobe atelectasis .", "possible atelectasis .", "mild edema ."]
    s = observation_scores(cands, refs)
    # tp: atelectasis, edema; fp: atelectasis (2nd); fn: no finding (2nd), effusion (3rd)
    assert s["chexpert_micro_precision"] == pytest.approx(2 / 3)
    assert s["chexpert_micro_recall"] == pytest.approx(2 / 4)
    assert s["chexpert_f1_per_observation"]["Edema"] == 1.0
    assert s["chexpert_f1_per_observation"]["Pleural Effusion"] == 0.0
    assert s["chexpert_f1_per_observation"]["Atelectasis"] == pytest.approx(2 / 3)


def test_heatmap_and_post_check_know_the_new_observations() -> None:
    words = ("left", "lower", "lobe", "atelectasis", ".", "no", "effusion", ".")
    attention = np.zeros((len(words), 2, 2), np.float32)
    attention[:, 1, 0] = 1.0  # every word looks at the lower-left cell
    maps = pathology_heatmaps(DecodedCaption(words, 0.0, attention, np.ones(len(words))), (8, 8))
    assert set(maps) == {"atelectasis"} and np.unravel_index(maps["atelectasis"].argmax(), (8, 8))[0] >= 4
    caption = "left lower lobe atelectasis . mild pulmonary edema ."
    report = compose_report(caption, {})
    assert not report.fell_back and "Left lower zone atelectasis" in report.text and "Edema" in report.text
    assert positive_findings(report.text) == positive_findings(caption)
    draft = "FINDINGS: Left lower lobe atelectasis. Pneumonia.\nIMPRESSION: Atelectasis and pneumonia."
    missing, invented, problems = post_check(draft, caption, {})
    assert ("edema", None) in missing and ("pneumonia", None) in invented and problems
