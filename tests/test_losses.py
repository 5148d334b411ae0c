"""The PTACL losses against plain loop-over-patients references, and their invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ptacl_lib.losses import global_contrastive_loss, local_similarity, local_temporal_loss, ptacl_loss


def reference_global(ecg: torch.Tensor, cmr: torch.Tensor, tau: float) -> torch.Tensor:
    """Loop over patients: -log softmax of each positive, in both directions."""
    e, c = F.normalize(ecg.double(), dim=-1), F.normalize(cmr.double(), dim=-1)
    n = e.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        row = torch.stack([e[i] @ c[j] / tau for j in range(n)])
        col = torch.stack([c[i] @ e[j] / tau for j in range(n)])
        total = total - (row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0))
    return total / (2 * n)


def reference_local(ecg: torch.Tensor, cmr: torch.Tensor, tau: float, mask: torch.Tensor) -> torch.Tensor:
    """Loop over patients: keep only valid phases, T'xT' cross-entropy both ways, average over valid pairs."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    for b in range(ecg.shape[0]):
        keep = mask[b].nonzero().flatten()
        if len(keep) == 0:
            continue
        e, c = F.normalize(ecg[b, keep].double(), dim=-1), F.normalize(cmr[b, keep].double(), dim=-1)
        logits = e @ c.T / tau
        target = torch.arange(len(keep))
        total = total + F.cross_entropy(logits, target, reduction="sum") / 2
        total = total + F.cross_entropy(logits.T, target, reduction="sum") / 2
        count += len(keep)
    return total / count


@pytest.fixture
def tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ecg, cmr = torch.randn(6, 9, 16, generator=g), torch.randn(6, 9, 16, generator=g)
    mask = torch.rand(6, 9, generator=g) > 0.3
    mask[2] = False  # a patient with no valid phase at all
    mask[3] = True
    return ecg, cmr, mask


def test_global_loss_matches_loop_reference() -> None:
    g = torch.Generator().manual_seed(1)
    ecg, cmr = torch.randn(10, 32, generator=g), torch.randn(10, 32, generator=g)
    for tau in (0.07, 0.5):
        got = global_contrastive_loss(ecg, cmr, tau)
        assert got.item() == pytest.approx(reference_global(ecg, cmr, tau).item(), abs=1e-5)


def test_local_loss_matches_loop_reference(tokens: tuple[torch.Tensor, ...]) -> None:
    ecg, cmr, mask = tokens
    for tau in (0.1, 1.0):
        got = local_temporal_loss(ecg, cmr, tau, mask)
        assert got.item() == pytest.approx(reference_local(ecg, cmr, tau, mask).item(), abs=1e-5)
    full = torch.ones_like(mask)
    assert local_temporal_loss(ecg, cmr, 0.2).item() == pytest.approx(
        reference_local(ecg, cmr, 0.2, full).item(), abs=1e-5)


def test_perfect_alignment_beats_chance_and_chance_is_log_n() -> None:
    ecg = torch.eye(8)[:, :8] * 3
    assert global_contrastive_loss(ecg, ecg, 0.01).item() < 1e-3
    assert global_contrastive_loss(ecg, torch.ones(8, 8), 0.1).item() == pytest.approx(math.log(8), abs=1e-6)
    frames = torch.eye(5).expand(2, 5, 5)
    assert local_temporal_loss(frames, frames, 0.01).item() < 1e-3


def test_losses_invariant_to_batch_permutation(tokens: tuple[torch.Tensor, ...]) -> None:
    ecg, cmr, mask = tokens
    perm = torch.randperm(ecg.shape[0], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(global_contrastive_loss(ecg[:, 0], cmr[:, 0], 0.1),
                          global_contrastive_loss(ecg[perm, 0], cmr[perm, 0], 0.1), atol=1e-6)
    assert torch.allclose(local_temporal_loss(ecg, cmr, 0.1, mask),
                          local_temporal_loss(ecg[perm], cmr[perm], 0.1, mask[perm]), atol=1e-6)


def test_losses_invariant_to_rescaling(tokens: tuple[torch.Tensor, ...]) -> None:
    ecg, cmr, mask = tokens
    scale_e = torch.rand(ecg.shape[0], ecg.shape[1], 1) * 10 + 0.1  # a different positive scale per vector
    scale_c = torch.rand(ecg.shape[0], ecg.shape[1], 1) * 10 + 0.1
    assert torch.allclose(global_contrastive_loss(ecg[:, 0] * scale_e[:, 0], cmr[:, 0] * 7.0, 0.1),
                          global_contrastive_loss(ecg[:, 0], cmr[:, 0], 0.1), atol=1e-5)
    assert torch.allclose(local_temporal_loss(ecg * scale_e, cmr * scale_c, 0.1, mask),
                          local_temporal_loss(ecg, cmr, 0.1, mask), atol=1e-5)


def test_masked_phases_change_nothing(tokens: tuple[torch.Tensor, ...]) -> None:
    ecg, cmr, mask = tokens

    def loss_and_grads(e: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e, c = e.clone().requires_grad_(), c.clone().requires_grad_()
        loss = local_temporal_loss(e, c, 0.1, mask)
        loss.backward()
        return loss.detach(), e.grad, c.grad

    loss_a, ge_a, gc_a = loss_and_grads(ecg, cmr)
    scrambled_e = torch.where(mask[..., None], ecg, torch.randn_like(ecg) * 100)
    scrambled_c = torch.where(mask[..., None], cmr, torch.randn_like(cmr) * 100)
    loss_b, ge_b, gc_b = loss_and_grads(scrambled_e, scrambled_c)
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(ge_a[mask], ge_b[mask]) and torch.equal(gc_a[mask], gc_b[mask])
    assert torch.all(ge_b[~mask] == 0) and torch.all(gc_b[~mask] == 0)
    assert torch.isfinite(ge_a).all() and torch.isfinite(gc_a).all()


def test_zero_phase_tokens_give_finite_loss_and_grads() -> None:
    """Empty phase bins hold zero vectors; normalising them must not produce NaNs."""
    ecg = torch.randn(2, 4, 8)
    ecg[0, 1] = 0
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 1] = False
    ecg.requires_grad_()
    loss = local_temporal_loss(ecg, torch.randn(2, 4, 8), 0.1, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(ecg.grad).all()
    assert local_temporal_loss(ecg, ecg, 0.1, torch.zeros(2, 4, dtype=torch.bool)).item() == 0.0


def test_local_similarity_is_cosine() -> None:
    e, c = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    sim = local_similarity(e, c)
    assert sim.shape == (3, 5, 5)
    assert sim[1, 2, 4].item() == pytest.approx(F.cosine_similarity(e[1, 2], c[1, 4], dim=0).item(), abs=1e-6)


def test_ptacl_loss_combines_parts(tokens: tuple[torch.Tensor, ...]) -> None:
    ecg, cmr, mask = tokens
    total, part_global, part_local = ptacl_loss(ecg[:, 0], cmr[:, 0], ecg, cmr, mask, temperature_global=0.2,
                                                temperature_local=0.3, lambda_local=0.5)
    assert part_global.item() == pytest.approx(global_contrastive_loss(ecg[:, 0], cmr[:, 0], 0.2).item())
    assert part_local.item() == pytest.approx(local_temporal_loss(ecg, cmr, 0.3, mask).item())
    assert total.item() == pytest.approx(part_global.item() + 0.5 * part_local.item())


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="B, D"):
        global_contrastive_loss(torch.randn(4, 8), torch.randn(5, 8), 0.1)
    with pytest.raises(ValueError, match="mask"):
        local_temporal_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), 0.1, torch.ones(2, 4, dtype=torch.bool))


def _reference_local_loss(ecg: torch.Tensor, cmr: torch.Tensor, tau: float, mask: torch.Tensor,
                          negatives: str) -> torch.Tensor:
    """Loop over every valid (patient, phase) query and write its key set out by hand."""
    e, c = torch.nn.functional.normalize(ecg, dim=-1), torch.nn.functional.normalize(cmr, dim=-1)
    b, t, _ = ecg.shape
    terms = []
    for i in range(b):
        for k in range(t):
            if not mask[i, k]:
                continue
            keys = set()
            if negatives in ("within", "both"):
                keys |= {(i, m) for m in range(t) if mask[i, m]}
            if negatives in ("cross", "both"):
                keys |= {(j, k) for j in range(b) if mask[j, k]}
            keys = sorted(keys)
            e2c = torch.stack([e[i, k] @ c[j, m] for j, m in keys]) / tau
            c2e = torch.stack([c[i, k] @ e[j, m] for j, m in keys]) / tau
            pos = keys.index((i, k))
            terms.append((torch.logsumexp(e2c, 0) - e2c[pos] + torch.logsumexp(c2e, 0) - c2e[pos]) / 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("negatives", ["within", "cross", "both"])
def test_local_negatives_match_a_hand_written_reference(negatives: str) -> None:
    g = torch.Generator().manual_seed(3)
    ecg, cmr = torch.randn(4, 5, 8, generator=g), torch.randn(4, 5, 8, generator=g)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = mask[0, 4] = False
    got = local_temporal_loss(ecg, cmr, 0.3, mask, negatives)
    assert torch.allclose(got, _reference_local_loss(ecg, cmr, 0.3, mask, negatives), atol=1e-5)


def test_local_negatives_differ_and_masked_tokens_stay_inert() -> None:
    g = torch.Generator().manual_seed(4)
    ecg, cmr = torch.randn(3, 6, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    values = {n: float(local_temporal_loss(ecg, cmr, 0.1, None, n)) for n in ("within", "cross", "both")}
    assert values["both"] > max(values["within"], values["cross"])  # more keys, harder contrast
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 1] = False
    poked = ecg.clone()
    poked[2, 1] = 100.0
    for negatives in ("cross", "both"):
        assert torch.equal(local_temporal_loss(ecg, cmr, 0.1, mask, negatives),
                           local_temporal_loss(poked, cmr, 0.1, mask, negatives))
    with pytest.raises(ValueError, match="negatives"):
        local_temporal_loss(ecg, cmr, 0.1, None, "everyone")
