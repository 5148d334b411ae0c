"""Every phase-pooling rule: shapes, weights that sum to 1 per valid phase, gradients to the tokens, the
nearest-frame rule unchanged, overlap weighting by hand and with no empty bin in a usable beat, finer tokens,
and the run settings that choose a rule and a token width."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from ptacl_lib.data import PreprocessConfig, PTACLDataset, open_cohort
from ptacl_lib.data.rhythm import usable_beats
from ptacl_lib.evaluate import FinetuneConfig, finetune
from ptacl_lib.geometry import GEOMETRIES
from ptacl_lib.losses import ptacl_loss
from ptacl_lib.models import PHASE_POOLERS, ModelConfig, PTACLModel, token_phase_bins
from ptacl_lib.models.phase_pooling import beat_phase_pool, overlap_weights, sorted_peaks
from ptacl_lib.models.ptacl_model import GEOMETRY_PHASE_POOLING
from ptacl_lib.study import StudyConfig
from ptacl_lib.train import TrainConfig, fit, run_inputs
from ptacl_lib.train_config import resume_conflicts
from ptacl_lib.viz.training_plots import plot_phase_pooling

RULES = sorted(PHASE_POOLERS)


def recordings(batch: int, fs: int = 500, patch: int = 50, seconds: int = 10,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token centres of one 10 s recording cut into ``patch``-sample tokens, and ``[batch, K]`` R peaks at
    55-100 bpm with ±8 % beat-to-beat variation and an occasional premature beat, padded with -1."""
    g = torch.Generator().manual_seed(seed)
    length = fs * seconds
    times = torch.arange(length // patch, dtype=torch.float32) * patch + (patch - 1) / 2
    rows = []
    for _ in range(batch):
        rr = fs * 60.0 / float(torch.randint(55, 100, (1,), generator=g))
        peaks, t = [], float(torch.randint(0, int(rr), (1,), generator=g))
        while t < length:
            peaks.append(int(t))
            premature = float(torch.rand(1, generator=g)) < 0.05
            t += rr * (0.6 if premature else 1.0 + 0.08 * (2 * float(torch.rand(1, generator=g)) - 1))
        rows.append(peaks)
    width = max(map(len, rows))
    return times, torch.tensor([r + [-1] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("rule", RULES)
def test_shapes_mask_and_zeros_of_empty_phases(rule: str) -> None:
    times, rpeaks = recordings(4)
    tokens = torch.randn(4, len(times), 8)
    rpeaks[3] = -1  # no beat at all
    phase_tokens, mask = PHASE_POOLERS[rule](tokens, times, rpeaks, 50)
    assert phase_tokens.shape == (4, 50, 8) and mask.shape == (4, 50) and mask.dtype == torch.bool
    assert mask[:3].any(dim=1).all() and not mask[3].any()
    assert torch.all(phase_tokens[~mask] == 0)
    with pytest.raises(ValueError, match="shape mismatch"):
        PHASE_POOLERS[rule](tokens, times[:10], rpeaks, 50)


@pytest.mark.parametrize("rule", RULES)
def test_weights_sum_to_one_per_valid_phase_and_define_the_pooling(rule: str) -> None:
    times, rpeaks = recordings(6, seed=1)
    tokens = torch.randn(6, len(times), 5, dtype=torch.float64)
    pooler = PHASE_POOLERS[rule]
    phase_tokens, mask = pooler(tokens, times, rpeaks, 50)
    shares = pooler.phase_weights(times, rpeaks, 50).to(torch.float64)  # [B, N, T]
    assert torch.all(shares >= 0)
    torch.testing.assert_close(shares.sum(dim=1)[mask], torch.ones(int(mask.sum()), dtype=torch.float64))
    assert torch.all(shares.sum(dim=1)[~mask] == 0)
    torch.testing.assert_close(phase_tokens, torch.einsum("bnt,bnd->btd", shares, tokens))


@pytest.mark.parametrize("rule", RULES)
def test_gradients_reach_exactly_the_pooled_tokens(rule: str) -> None:
    times, rpeaks = recordings(3, seed=2)
    tokens = torch.randn(3, len(times), 4, requires_grad=True)
    phase_tokens, mask = PHASE_POOLERS[rule](tokens, times, rpeaks, 50)
    (phase_tokens[mask] ** 2).sum().backward()
    pooled = PHASE_POOLERS[rule].weights(times, rpeaks, 50).sum(dim=2) > 0  # [B, N]
    reached = tokens.grad.abs().sum(dim=2) > 0
    assert torch.equal(reached, pooled) and pooled.any()


def test_nearest_frame_rule_is_unchanged() -> None:
    """Output, mask and gradients equal, to the bit, the rule as it was written before rules became weights."""
    def before(tokens: torch.Tensor, times: torch.Tensor, rpeaks: torch.Tensor, n: int) -> tuple:
        bins, inside = token_phase_bins(times, rpeaks, n)
        weights = F.one_hot(bins, n).to(tokens.dtype) * inside[..., None].to(tokens.dtype)
        counts = weights.sum(dim=1)
        return torch.bmm(weights.transpose(1, 2), tokens) / counts.clamp_min(1.0)[..., None], counts > 0

    for fs, patch, n_phases in ((100, 10, 25), (500, 50, 50), (500, 25, 50)):
        times, rpeaks = recordings(8, fs=fs, patch=patch, seed=fs + patch)
        tokens = torch.randn(8, len(times), 16, requires_grad=True)
        (old, old_mask), (new, new_mask) = before(tokens, times, rpeaks, n_phases), beat_phase_pool(
            tokens, times, rpeaks, n_phases)
        old_grad, = torch.autograd.grad((old ** 2).sum(), tokens)
        new_grad, = torch.autograd.grad((new ** 2).sum(), tokens)
        assert torch.equal(old, new) and torch.equal(old_mask, new_mask) and torch.equal(old_grad, new_grad)
    assert PHASE_POOLERS["beat_nearest_frame"] is beat_phase_pool


def test_overlap_weights_by_hand() -> None:
    """Tokens of 10 samples (spans [10n, 10n + 10)), beats [0, 100) and [100, 200), T = 4: frame k stands for
    samples [25k - 12.5, 25k + 12.5) of a beat; a weight is the shared length as a fraction of the beat."""
    times = torch.arange(25, dtype=torch.float64) * 10 + 5
    weights = overlap_weights(times, torch.tensor([[0, 100, 200]]), 4, rr_tolerance=None)[0]
    assert weights[0].tolist() == [0.1, 0.0, 0.0, 0.0]
    assert weights[1].tolist() == pytest.approx([0.025, 0.075, 0.0, 0.0])  # [10, 12.5) and [12.5, 20)
    assert weights[9].tolist() == pytest.approx([0.1, 0.0, 0.0, 0.0])  # [90, 100): phases 0.9..1 are frame 0's
    assert weights[20:].sum() == 0  # after the last peak
    shifted = overlap_weights(times - 5, torch.tensor([[0, 100, 200]]), 4, rr_tolerance=None)[0]
    assert shifted[10].tolist() == pytest.approx([0.1, 0.0, 0.0, 0.0])  # [95, 105): half in each beat, frame 0
    assert shifted[0].tolist() == pytest.approx([0.05, 0.0, 0.0, 0.0])  # [-5, 5): only [0, 5) is in a beat
    assert weights.sum() == pytest.approx(2.0)  # two whole beats, each 1 in phase units


def test_overlap_leaves_no_empty_bin_where_a_beat_is_usable() -> None:
    """At the ukb geometry (500 Hz, 100 ms tokens, 50 frames) the nearest-frame rule leaves bins empty;
    overlap fills every bin of every recording that has a usable beat."""
    times, rpeaks = recordings(64, seed=3)
    tokens = torch.randn(64, len(times), 2)
    _, nearest = PHASE_POOLERS["beat_nearest_frame"](tokens, times, rpeaks, 50)
    _, overlap = PHASE_POOLERS["beat_overlap"](tokens, times, rpeaks, 50)
    has_beat = usable_beats(sorted_peaks(rpeaks)).any(dim=1)
    assert has_beat.all() and overlap.all()
    assert (~nearest).float().mean() > 0.05  # the failure the rule removes
    no_beat = torch.tensor([[100, 180, 400, -1]])  # RR 80 and 220 around a median of 80: beat 1 is excluded
    _, mask = PHASE_POOLERS["beat_overlap"](tokens[:1], times, no_beat, 50)
    assert mask.all()  # beat [100, 180) is usable and covered
    weights = overlap_weights(times, no_beat, 50)[0]
    assert weights[(times > 190) & (times < 390)].sum() == 0  # nothing from inside the excluded beat


@pytest.mark.parametrize(("rule", "token_ms"), [("beat_nearest_frame", 50.0), ("beat_overlap", 25.0)])
def test_finer_token_model_builds_and_trains_a_step(rule: str, token_ms: float) -> None:
    config = dataclasses.replace(ModelConfig(ecg_patch_ms=token_ms).at_geometry(GEOMETRIES["ukb"]), phase_pooling=rule)
    model = PTACLModel(config)
    assert model.ecg_encoder.patch == round(token_ms / 2)
    times, rpeaks = recordings(3, seed=4)
    batch = {"ecg": torch.randn(3, 12, 5000), "cmr": torch.rand(3, 3, 50, 32, 32), "rpeaks": rpeaks}
    out = model(batch)
    n_tokens = 5000 // model.ecg_encoder.patch
    assert out["ecg_phase"].shape == (3, 50, config.embed_dim) and out["phase_mask"].shape == (3, 50)
    assert model.ecg_encoder(batch["ecg"]).tokens.shape[1] == n_tokens
    loss = ptacl_loss(out["ecg_global"], out["cmr_global"], out["ecg_phase"], out["cmr_frames"],
                      out["phase_mask"]).total
    loss.backward()
    grads = [p.grad for p in model.ecg_encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_run_settings_choose_the_rule_and_token_width() -> None:
    def model_of(**settings: object) -> ModelConfig:
        return run_inputs(TrainConfig(manifest="m", run_dir="r", **settings))[1]

    for geometry, rule in GEOMETRY_PHASE_POOLING.items():
        assert rule in PHASE_POOLERS
        assert model_of(geometry=geometry).phase_pooling == rule
    assert model_of().phase_pooling == GEOMETRY_PHASE_POOLING["demo"] == "beat_nearest_frame"
    assert model_of() == ModelConfig.preset("small")  # the demo's model is today's
    chosen = model_of(geometry="ukb", phase_pooling="beat_overlap", ecg_patch_ms=50.0)
    assert (chosen.phase_pooling, chosen.ecg_patch_ms, chosen.ecg_patch, chosen.slices) == (
        "beat_overlap", 50.0, 25, 3)
    study = StudyConfig(manifest="m", out="o", phase_pooling="beat_overlap", ecg_patch_ms=25.0)
    assert (study.train_config("ptacl", 0).phase_pooling, study.train_config("global", 1).ecg_patch_ms) == (
        "beat_overlap", 25.0)
    saved = TrainConfig(manifest="m", run_dir="r")
    assert resume_conflicts(dataclasses.replace(saved, phase_pooling="beat_overlap", ecg_patch_ms=50.0), saved) == [
        "phase_pooling", "ecg_patch_ms"]
    with pytest.raises(ValueError, match="ecg_patch_ms"):
        TrainConfig(manifest="m", run_dir="r", ecg_patch_ms=-1.0)
    with pytest.raises(ValueError, match="unknown phase pooling 'nope'"):
        PTACLModel(model_of(phase_pooling="nope"))


@pytest.mark.slow
def test_a_run_records_its_rule_and_refuses_to_resume_with_another(tiny_cohort: Path, tmp_path: Path) -> None:
    config = TrainConfig(manifest=str(tiny_cohort), run_dir=str(tmp_path / "run"), epochs=1, batch_size=16,
                         phase_pooling="beat_overlap", ecg_patch_ms=50.0, progress=False)
    run_dir = fit(config)
    record = json.loads((run_dir / "config.json").read_text())
    assert (record["phase_pooling"], record["ecg_patch_ms"]) == ("beat_overlap", 50.0)
    assert (record["model_config"]["phase_pooling"], record["model_config"]["ecg_patch_ms"]) == ("beat_overlap", 50.0)
    with pytest.raises(ValueError, match="phase_pooling"):
        fit(dataclasses.replace(config, phase_pooling="beat_nearest_frame", epochs=2, resume=True))
    tuned = finetune(run_dir, tiny_cohort, FinetuneConfig(epochs=1, batch_size=16, device="cpu"))  # same model
    assert tuned.predictions.shape == tuned.truth.shape


@pytest.mark.slow
def test_the_pooling_figure_counts_bins_with_the_model_rule(tiny_cohort: Path) -> None:
    dataset = PTACLDataset(open_cohort(tiny_cohort), "train", PreprocessConfig(), progress=False)
    shares = {rule: [bar.get_height() for bar in plot_phase_pooling(dataset, ModelConfig(phase_pooling=rule)).axes[
        1].patches] for rule in ("beat_nearest_frame", "beat_overlap")}  # axes: trace, bins, colour bar
    assert min(shares["beat_nearest_frame"]) < 1.0 and min(shares["beat_overlap"]) == 1.0
    plt.close("all")
