"""Phantoms: deterministic, anatomically laid out, and captions that say exactly the ground truth."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ptacl_lib.cxr.mentions import find_mentions, positive_findings
from ptacl_lib.cxr.phantoms import PATHOLOGIES, PhantomConfig, generate_phantoms
from ptacl_lib.cxr.vocab import Vocabulary, tokenize

CONFIG = PhantomConfig(image_size=48)


def test_phantoms_are_deterministic_and_prefix_stable() -> None:
    a = generate_phantoms(12, seed=3, config=CONFIG)
    b = generate_phantoms(5, seed=3, config=CONFIG)
    c = generate_phantoms(5, seed=4, config=CONFIG)
    assert a.images.shape == (12, 48, 48) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images[:5], b.images)
    assert a.captions[:5] == b.captions
    assert not np.array_equal(b.images, c.images)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0


def test_captions_state_exactly_the_ground_truth_findings() -> None:
    ps = generate_phantoms(150, seed=0, config=CONFIG)
    seen = set()
    for caption, truth in zip(ps.captions, ps.findings):
        assert positive_findings(caption) == {(f.pathology, f.side) for f in truth}, caption
        for f in truth:
            seen.add(f.pathology)
            assert f.mask.shape == (48, 48) and f.mask.any()
            zones = {m.zone for m in find_mentions(caption) if m.pathology == f.pathology and not m.negated}
            if f.pathology in ("nodule", "consolidation"):
                assert zones == {f.zone}, caption
    assert seen == set(PATHOLOGIES)
    assert len(set(ps.captions)) > 60  # phrasing varies
    assert any(not t for t in ps.findings)  # some normal studies


def test_findings_sit_where_their_labels_say() -> None:
    ps = generate_phantoms(150, seed=1, config=PhantomConfig(image_size=64))
    for image, truth, chest in zip(ps.images, ps.findings, ps.chest_masks):
        for f in truth:
            ys, xs = np.nonzero(f.mask)
            cx = xs.mean() / 64
            if f.side is not None:  # patient's right is on the image's left
                assert (cx < 0.5) == (f.side == "right"), f
            if f.pathology in ("nodule", "consolidation", "pneumothorax"):
                assert (f.mask & chest).mean() > 0.7 * f.mask.mean()
            if f.pathology == "pneumothorax":
                assert image[f.mask].mean() < image[chest & ~f.mask].mean()  # lucent rim
            if f.pathology in ("nodule", "consolidation"):  # brighter than the lung around it
                ring = ndimage.binary_dilation(f.mask, iterations=3) & ~f.mask & chest
                assert image[f.mask].mean() > image[ring].mean() + 0.05
            if f.pathology == "effusion":  # fluid is soft-tissue dense, the aerated lung is dark
                assert image[f.mask].mean() > 0.4 > np.median(image[chest & ~f.mask])
            if f.pathology == "cardiomegaly":  # enlarged silhouette: wider than 35% of the image
                assert np.any(f.mask, axis=0).mean() > 0.35

def test_vocabulary_round_trip(tmp_path) -> None:
    ps = generate_phantoms(30, seed=0, config=CONFIG)
    vocab = Vocabulary.build(ps.captions)
    ids = vocab.encode(ps.captions[0])
    assert ids[0] == vocab.start and ids[-1] == vocab.end
    assert vocab.decode(ids[1:]) == tokenize(ps.captions[0])
    assert vocab.decode([vocab.index("zzz")]) == []  # unknown words map to <unk>, dropped on decode
    assert Vocabulary.load(vocab.save(tmp_path / "v.json")) == vocab
    assert len(vocab.encode(ps.captions[0], max_len=5)) == 5
