"""Caption and localisation metrics on hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptacl_lib.cxr.decode import DecodedCaption
from ptacl_lib.cxr.heatmaps import pathology_heatmaps, upsample
from ptacl_lib.cxr.mentions import find_mentions, positive_findings
from ptacl_lib.cxr.metrics import caption_metrics, finding_scores, heatmap_iou, pointing_hit, random_point_hit_rate

REFS = ["the heart is enlarged . small left pleural effusion .",
        "the heart size is normal . the lungs are clear . no pleural effusion or pneumothorax ."]


def test_identical_captions_score_one() -> None:
    m = caption_metrics(REFS, REFS, meteor=False)
    for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert m[k] == pytest.approx(1.0, abs=1e-6), k
    assert m["CIDEr-D"] > 1.0  # CIDEr-D is x10 scaled: identical captions score well above 1
    assert math.isnan(m["METEOR"])


def test_known_small_case() -> None:
    # candidate "a b c d" vs reference "a b c e": unigram precision 3/4, bigram 2/3, LCS 3.
    m = caption_metrics(["a b c d"], ["a b c e"], meteor=False)
    assert m["BLEU-1"] == pytest.approx(0.75, abs=1e-6)
    assert m["BLEU-2"] == pytest.approx(math.sqrt(0.75 * 2 / 3), abs=1e-6)
    assert m["ROUGE-L"] == pytest.approx(0.75, abs=1e-6)  # P = R = 3/4
    assert m["BLEU-4"] < 1e-3  # no matching 4-gram
    unrelated = caption_metrics(["pneumothorax"], ["a b c e"], meteor=False)
    assert unrelated["BLEU-1"] < 1e-6 and unrelated["CIDEr-D"] == 0.0


def test_mentions_handle_negation_side_and_zone() -> None:
    text = "cardiomegaly without effusion . there is a mass in the right upper zone . no pneumothorax ."
    ms = {m.pathology: m for m in find_mentions(text)}
    assert not ms["cardiomegaly"].negated and ms["effusion"].negated and ms["pneumothorax"].negated
    assert (ms["nodule"].side, ms["nodule"].zone, ms["nodule"].negated) == ("right", "upper", False)
    assert positive_findings("the heart is enlarged . left apical pneumothorax .") == {
        ("cardiomegaly", None), ("pneumothorax", "left")}
    assert positive_findings("the heart size is normal . the lungs are clear .") == set()


def test_finding_scores() -> None:
    s = finding_scores(["the heart is enlarged . right pleural effusion ."], REFS[:1])
    assert s["finding_precision"] == 0.5 and s["finding_recall"] == 0.5  # effusion on the wrong side


def test_pointing_game_and_iou_on_constructed_heatmaps() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:6, 12:16] = True
    heat = np.zeros((20, 20))
    heat[3, 13] = 1.0
    assert pointing_hit(heat, mask)
    assert not pointing_hit(np.roll(heat, 8, axis=0), mask)
    assert pointing_hit(np.roll(heat, 3, axis=0), mask, tolerance=1)  # row 6 is one pixel off the mask
    exact = mask.astype(float)
    assert heatmap_iou(exact, mask) == 1.0
    half = np.zeros((20, 20))
    half[2:6, 12:14] = 1.0
    assert heatmap_iou(half, mask) == pytest.approx(0.5)
    assert random_point_hit_rate(mask) == pytest.approx(16 / 400)
    region = np.zeros((20, 20), bool)
    region[:10] = True
    assert random_point_hit_rate(mask, region) == pytest.approx(16 / 200)
    with pytest.raises(ValueError, match="shape"):
        pointing_hit(heat[:10], mask)


def test_heatmap_averages_the_words_that_name_a_finding() -> None:
    words = tuple("the heart is enlarged . left pleural effusion . no pneumothorax .".split())
    att = np.full((len(words), 4, 4), 1 / 16, np.float32)
    att[words.index("effusion")] = 0.0
    att[words.index("effusion"), 3, 3] = 1.0  # the effusion word looks at the bottom-right cell
    att[words.index("heart")] = 0.0
    att[words.index("heart"), 2, 1] = 1.0
    att[words.index("enlarged")] = 0.0
    att[words.index("enlarged"), 2, 1] = 1.0
    maps = pathology_heatmaps(DecodedCaption(words, 0.0, att, np.ones(len(words))), (32, 32))
    assert set(maps) == {"cardiomegaly", "effusion"}  # the negated pneumothorax gets no heatmap
    assert np.unravel_index(maps["effusion"].argmax(), (32, 32))[0] >= 24
    peak = np.unravel_index(maps["cardiomegaly"].argmax(), (32, 32))
    assert 16 <= peak[0] < 24 and 8 <= peak[1] < 16
    assert maps["effusion"].max() == pytest.approx(1.0)
    assert upsample(np.ones((4, 4)), (8, 8)).shape == (8, 8)
