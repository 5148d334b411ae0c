"""Show-Attend-Tell: shapes, attention and gate ranges, the loss terms, beam search and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ptacl_lib.cxr.decode import beam_search
from ptacl_lib.cxr.model import CaptionerConfig, ShowAttendTell, caption_loss
from ptacl_lib.cxr.phantoms import PhantomConfig, generate_phantoms
from ptacl_lib.cxr.train import CaptionTrainConfig, encode_captions, load_captioner, train_captioner
from ptacl_lib.cxr.vocab import Vocabulary

SMALL = dict(image_size=32, encoder_channels=(8, 16), feature_dim=16, embed_dim=8, hidden_dim=24, attention_dim=12)


def _model(vocab_size: int = 20) -> ShowAttendTell:
    torch.manual_seed(0)
    return ShowAttendTell(CaptionerConfig(vocab_size=vocab_size, **SMALL)).eval()


def test_forward_shapes_attention_and_gate() -> None:
    model = _model()
    images = torch.rand(3, 32, 32)
    captions = torch.randint(4, 20, (3, 7))
    logits, alphas = model(images, captions)
    assert logits.shape == (3, 6, 20) and alphas.shape == (3, 6, 64)  # 32 / 2**2 = 8x8 grid
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 6))
    state = model.start(images)
    _, alpha, beta, new = model.step(captions[:, 0], state)
    assert alpha.shape == (3, 64) and ((beta > 0) & (beta < 1)).all()
    assert new.h.shape == (3, 24) and not torch.equal(new.h, state.h)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(1, 48, 48), captions[:1])


def test_loss_ignores_padding_and_penalises_uneven_coverage() -> None:
    vocab_size, cells = 6, 4
    captions = torch.tensor([[1, 4, 5, 2, 0, 0]])  # <start> w w <end> <pad> <pad>
    logits = torch.zeros(1, 5, vocab_size)
    uniform = torch.full((1, 5, cells), 0.25)
    _, parts = caption_loss(logits, uniform, captions, pad=0, alpha_c=1.0)
    assert parts["cross_entropy"] == pytest.approx(np.log(vocab_size), rel=1e-5)
    # three valid steps x 1/4 = 0.75 coverage per cell -> penalty (1 - 0.75)^2; padded steps do not count
    assert parts["attention_penalty"] == pytest.approx(0.0625, rel=1e-5)
    even = torch.zeros(1, 5, cells)
    even[0, :3, :3] = torch.eye(3)  # the three valid steps visit three different cells; one stays unseen
    _, parts_even = caption_loss(logits, even, captions, pad=0, alpha_c=1.0)
    assert parts_even["attention_penalty"] == pytest.approx(0.25, rel=1e-5)
    peaked = torch.zeros(1, 5, cells)
    peaked[..., 0] = 1.0  # always the same cell
    _, parts_peak = caption_loss(logits, peaked, captions, pad=0, alpha_c=1.0)
    assert parts_peak["attention_penalty"] > parts_even["attention_penalty"] > parts["attention_penalty"]


def test_beam_of_one_is_greedy_and_keeps_one_map_per_word() -> None:
    vocab = Vocabulary(("<pad>", "<start>", "<end>", "<unk>") + tuple(f"w{i}" for i in range(16)))
    model = _model(len(vocab))
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    out = beam_search(model, vocab, image, beam_size=1, max_len=8)
    state, word, greedy = model.start(torch.from_numpy(image)[None]), torch.tensor([vocab.start]), []
    with torch.no_grad():
        for _ in range(8):
            logits, _, _, state = model.step(word, state)
            word = logits.argmax(-1)
            if int(word) == vocab.end:
                break
            greedy.append(vocab.words[int(word)])
    greedy = [w for w in greedy if not w.startswith("<")]
    assert list(out.words) == greedy
    assert out.attention.shape == (len(out.words), 8, 8)
    np.testing.assert_allclose(out.attention.sum((1, 2)), 1.0, rtol=1e-5)
    wide = beam_search(model, vocab, image, beam_size=4, max_len=8)
    assert wide.attention.shape == (len(wide.words), 8, 8) and wide.gates.shape == (len(wide.words),)


def test_training_learns_and_checkpoint_round_trips(tmp_path: Path) -> None:
    ps = generate_phantoms(64, seed=0, config=PhantomConfig(image_size=32))
    vocab = Vocabulary.build(ps.captions)
    config = CaptionTrainConfig(epochs=6, batch_size=8, lr=1e-2, seed=0)
    trained = train_captioner(ps.images, ps.captions, config, CaptionerConfig(vocab_size=len(vocab), **SMALL),
                              vocab, run_dir=tmp_path)
    ce = [h["cross_entropy"] for h in trained.history]
    assert ce[-1] < 0.8 * ce[0]  # the loss falls well below its starting value
    assert (tmp_path / "captioner.pt").exists() and (tmp_path / "history.json").exists()
    loaded = load_captioner(tmp_path / "captioner.pt")
    assert loaded.vocab == vocab and loaded.history == trained.history
    a = beam_search(trained.model, vocab, ps.images[0], beam_size=2)
    b = beam_search(loaded.model, loaded.vocab, ps.images[0], beam_size=2)
    assert a.words == b.words and np.allclose(a.attention, b.attention)
    short = CaptionTrainConfig(epochs=1, batch_size=8, seed=1)
    runs = [train_captioner(ps.images[:16], ps.captions[:16], short, CaptionerConfig(vocab_size=len(vocab), **SMALL),
                            vocab) for _ in range(2)]
    assert runs[0].history[0]["loss"] == runs[1].history[0]["loss"]  # seeded
    assert encode_captions(["a b", "a"], Vocabulary.build(["a b"]), 10).tolist() == [[1, 4, 5, 2], [1, 4, 2, 0]]
