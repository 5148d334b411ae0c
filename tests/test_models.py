"""Encoders, phase pooling and the PTACL model: shapes, the pooling rule on hand-made beats, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ptacl_lib.losses import ptacl_loss
from ptacl_lib.models import ECGEncoder, ModelConfig, PTACLModel, beat_phase_pool, token_phase_bins
from ptacl_lib.models.cmr_encoder import FrameCNN
from ptacl_lib.models.ecg_encoder import patch_embedding


def test_phase_bins_of_hand_made_beats() -> None:
    times = torch.arange(40, dtype=torch.float32)  # one token per sample
    rpeaks = torch.tensor([[10, 20, 30, -1]])
    bins, inside = token_phase_bins(times, rpeaks, 5)
    assert inside[0].nonzero().flatten().tolist() == list(range(10, 30))  # only the two complete beats
    # phase (t - R) / 10, times 5, rounded half up, modulo 5: t = R+9 wraps to frame 0
    assert bins[0, 10:20].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 0]
    assert bins[0, 20:30].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 0]


def test_phase_pool_averages_over_beats_and_masks_empty_bins() -> None:
    times = torch.arange(40, dtype=torch.float32)
    tokens = times.reshape(1, 40, 1).repeat(1, 1, 2)  # token value = its time
    pooled, mask = beat_phase_pool(tokens, times, torch.tensor([[10, 20, 30, -1]]), 5)
    assert mask.tolist() == [[True] * 5]
    assert pooled[0, :, 0].tolist() == [(10 + 19 + 20 + 29) / 4, (11 + 12 + 21 + 22) / 4, (13 + 14 + 23 + 24) / 4,
                                        (15 + 16 + 25 + 26) / 4, (17 + 18 + 27 + 28) / 4]

    coarse = torch.tensor([2.0, 7.0, 12.0, 17.0, 22.0])  # patch-5 centres
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])[..., None]
    pooled, mask = beat_phase_pool(values, coarse, torch.tensor([[0, 10, 20]]), 4)
    # phases 0.2, 0.7 in each beat -> bins 1 and 3; bins 0 and 2 get nothing; t=22 is past the last peak
    assert mask.tolist() == [[False, True, False, True]]
    assert pooled[0, :, 0].tolist() == [0.0, (1 + 3) / 2, 0.0, (2 + 4) / 2]


def test_phase_pool_edge_cases() -> None:
    times = torch.arange(30, dtype=torch.float32)
    tokens = torch.randn(3, 30, 4)
    unsorted = torch.tensor([[20, -1, 10, -5], [10, 20, -1, -1], [15, -1, -1, -1]])
    pooled, mask = beat_phase_pool(tokens, times, unsorted, 5)
    sorted_, mask_sorted = beat_phase_pool(tokens[:1], times, torch.tensor([[10, 20, -1, -1]]), 5)
    assert torch.equal(pooled[:1], sorted_) and torch.equal(mask[:1], mask_sorted)
    assert not mask[2].any() and torch.all(pooled[2] == 0)  # one peak: no complete beat
    _, none = beat_phase_pool(tokens[:1], times, torch.tensor([[12]]), 5)
    assert not none.any()
    with pytest.raises(ValueError, match="shape mismatch"):
        beat_phase_pool(tokens, times[:10], unsorted, 5)


def test_ecg_token_times_are_patch_centres() -> None:
    enc = ECGEncoder(leads=12, patch=5, dim=16, depth=1, heads=2)
    out = enc(torch.randn(2, 12, 103))  # the 3 samples past the last whole patch are dropped
    assert out.tokens.shape == (2, 20, 16) and out.pooled.shape == (2, 16)
    assert out.token_times[:3].tolist() == [2.0, 7.0, 12.0]
    target = enc.patch_targets(torch.arange(12 * 10, dtype=torch.float32).reshape(1, 12, 10))
    assert target.shape == (1, 2, 60) and target[0, 1, :5].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="12"):
        enc(torch.randn(2, 8, 100))


def test_ecg_stem_sees_across_patch_edges_and_keeps_the_token_grid() -> None:
    """The convolutional stem (``ecg_stem``) keeps one token per patch at the same times; with ``stem=0`` the
    patch embedding is the linear patchify of runs saved before the stem existed (their weights still load)."""
    torch.manual_seed(0)
    plain, stemmed = patch_embedding(12, 10, 16, 0), patch_embedding(12, 10, 16, 8)
    assert isinstance(plain, torch.nn.Conv1d) and plain.kernel_size == (10,)
    ecg = torch.randn(2, 12, 100)
    assert stemmed(ecg).shape == plain(ecg).shape == (2, 16, 10)
    edge = ecg.clone()
    edge[..., 10] += 1.0  # the first sample of patch 1: the stem lets patch 0 see it, a plain patchify does not
    assert torch.equal(plain(edge)[..., 0], plain(ecg)[..., 0])
    assert not torch.allclose(stemmed(edge)[..., 0], stemmed(ecg)[..., 0])
    enc = ECGEncoder(leads=12, patch=10, dim=16, depth=1, heads=2, stem=8)
    assert enc(ecg).token_times.tolist() == ECGEncoder(12, 10, 16, 1, 2).token_times(10).tolist()
    old = PTACLModel(dataclasses.replace(tiny_model().config, ecg_stem=0))
    assert "ecg_encoder.patchify.weight" in old.state_dict()  # the pre-stem layout


def test_frame_cnn_first_stride_4_reads_non_overlapping_patches() -> None:
    """``cmr_first_stride=4``: the first stage sees each pixel once, in 4x4 patches (a quarter of the pixels of
    a stride-2 stage go on); ``2`` is the 3x3 stride-2 stage of runs saved before it. Other strides are refused."""
    torch.manual_seed(0)
    frames = torch.rand(3, 1, 32, 32)
    patched, plain = FrameCNN((4, 8), 16, first_stride=4), FrameCNN((4, 8), 16, first_stride=2)
    assert patched.features[0](frames).shape == (3, 4, 8, 8) and plain.features[0](frames).shape == (3, 4, 16, 16)
    assert patched(frames).shape == plain(frames).shape == (3, 16)
    edge = frames.clone()
    edge[..., 0, 4] += 1.0  # the first pixel of patch (0, 1): only that patch's output changes
    first = patched.features[0]
    assert torch.equal(first(edge)[..., 0, 0], first(frames)[..., 0, 0])
    assert not torch.allclose(first(edge)[..., 0, 1], first(frames)[..., 0, 1])
    with pytest.raises(ValueError, match="2 or 4"):
        FrameCNN((4,), 16, first_stride=3)
    old = PTACLModel(dataclasses.replace(tiny_model().config, cmr_first_stride=2))
    assert old.cmr_encoder.frame_encoder.features[0].kernel_size == (3, 3)  # the layout of older runs


def synthetic_batch(b: int = 4, t: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rpeaks = torch.stack([torch.arange(20, 400, 80) + int(torch.randint(0, 10, (1,), generator=g))
                          for _ in range(b)])
    return {"ecg": torch.randn(b, 12, 400, generator=g), "cmr": torch.rand(b, 1, t, 16, 16, generator=g),
            "rpeaks": rpeaks}


def tiny_model() -> PTACLModel:
    torch.manual_seed(0)
    return PTACLModel(ModelConfig(ecg_dim=16, ecg_depth=1, ecg_heads=2, cmr_channels=(4, 8), cmr_dim=16,
                                  cmr_depth=1, cmr_heads=2, embed_dim=8))


def test_model_outputs_follow_the_contract() -> None:
    model = tiny_model().eval()
    batch = synthetic_batch()
    out = model(batch)
    assert out["ecg_global"].shape == out["cmr_global"].shape == (4, 8)
    assert out["ecg_phase"].shape == out["cmr_frames"].shape == (4, 10, 8)
    assert out["phase_mask"].dtype == torch.bool and out["phase_mask"].shape == (4, 10)
    assert out["phase_mask"].float().mean() > 0.5  # 80-sample beats of 16 tokens fill most of 10 bins
    assert torch.allclose(model.embed_ecg(batch["ecg"]), out["ecg_global"], atol=1e-6)
    assert torch.allclose(model.embed_cmr(batch["cmr"]), out["cmr_global"], atol=1e-6)


def test_local_loss_adds_no_learnable_weights() -> None:
    model = tiny_model()
    top_level = {name for name, _ in model.named_children()}
    assert top_level == {"ecg_encoder", "cmr_encoder", "ecg_head", "cmr_head"}


def test_gradients_reach_both_encoders_through_each_loss_part() -> None:
    model = tiny_model()
    out = model(synthetic_batch())
    for part in (1, 2):  # global, then local
        model.zero_grad()
        ptacl_loss(out["ecg_global"], out["cmr_global"], out["ecg_phase"], out["cmr_frames"], out["phase_mask"])[
            part].backward(retain_graph=True)
        for encoder in (model.ecg_encoder, model.cmr_encoder):
            grads = [p.grad for p in encoder.parameters()]
            assert all(g is not None for g in grads)
            assert sum(float(g.abs().sum()) for g in grads) > 0


def test_presets() -> None:
    assert ModelConfig.preset("small") == ModelConfig()
    base = ModelConfig.preset("base", dropout=0.0)
    assert base.ecg_dim == 768 and base.ecg_depth == 12 and base.dropout == 0.0
    with pytest.raises(ValueError, match="preset"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="phase pooling"):
        PTACLModel(ModelConfig(phase_pooling="nope"))
