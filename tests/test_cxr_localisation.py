"""A briefly trained captioner's pathology heatmaps point at the findings far more often than chance."""

from __future__ import annotations

import pytest

from ptacl_lib.cxr.evaluation import evaluate_captioner
from ptacl_lib.cxr.model import CaptionerConfig
from ptacl_lib.cxr.phantoms import PhantomConfig, generate_phantoms
from ptacl_lib.cxr.train import CaptionTrainConfig, train_captioner
from ptacl_lib.cxr.vocab import Vocabulary


@pytest.mark.slow
def test_trained_heatmaps_beat_the_random_point_baseline() -> None:
    config = PhantomConfig(image_size=48)
    train, test = generate_phantoms(800, seed=0, config=config), generate_phantoms(120, seed=10_000, config=config)
    vocab = Vocabulary.build(train.captions)
    trained = train_captioner(train.images, train.captions, CaptionTrainConfig(epochs=10, seed=0),
                              CaptionerConfig(vocab_size=len(vocab), image_size=48), vocab)
    m = evaluate_captioner(trained, test, beam_size=2, meteor=False).metrics
    assert m["findings_localised"] >= 20  # enough asserted true findings to score
    # chance: a uniformly random point in the chest (lungs + heart); over the whole image it is ~0.05
    assert m["pointing_game"] > m["pointing_chance_chest"] + 0.1, m
    assert m["pointing_game"] > 2 * m["pointing_chance_image"], m
    assert m["BLEU-1"] > 0.5 and m["finding_precision"] > 0.3, m
