"""PTACL losses: patient-level (global) and phase-level (local) contrastive alignment of ECG and CMR.

Both losses L2-normalise their inputs and are computed in float32, whatever the autocast dtype.
Under ``torch.distributed`` the global loss draws its negatives from every rank (see
``gather_with_grad``); the local loss is per patient and needs no communication: each rank averages
over its own valid (patient, phase) pairs, and DDP's gradient averaging makes that the
single-process loss whenever the ranks hold equally many valid pairs (approximately otherwise).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .train_config import LOCAL_NEGATIVES

#: Logit given to masked phases: finite (so fully masked rows stay NaN-free) and far below any cosine / tau.
_MASKED_LOGIT = -1e4


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each rank the gradient of its own shard.

    Every rank computes the same loss on the gathered batch, so each rank's backward holds the full
    gradient w.r.t. every shard. Summing those across ranks and keeping the local slice gives
    ``world_size x`` the true shard gradient, which DistributedDataParallel's gradient *averaging*
    turns back into exactly the single-process gradient.
    """

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([local.shape[0]], device=local.device))
        if any(int(s) != local.shape[0] for s in sizes):
            raise ValueError(f"gather_with_grad needs equal shards on every rank, got {[int(s) for s in sizes]} "
                             "(use drop_last=True or a DistributedSampler)")
        shards = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(shards, local.contiguous())
        ctx.rank, ctx.size = rank, local.shape[0]
        return torch.cat(shards, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate ``local`` ``[b, ...]`` from every rank (rank order) into ``[world * b, ...]``.

    Gradients flow back to the local shard. Without an initialised process group (or with one rank)
    it returns ``local`` unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    return _GatherWithGrad.apply(local)


def global_contrastive_loss(ecg: torch.Tensor, cmr: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between pooled ECG and CMR embeddings ``[B, D]`` (same patient = positive).

    The mean of the ECG->CMR and CMR->ECG cross-entropies over the batch. Under DDP the batch is the
    concatenation of every rank's shard, and the value equals the single-process loss on it.
    """
    if ecg.ndim != 2 or ecg.shape != cmr.shape:
        raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(ecg.shape)} and {tuple(cmr.shape)}")
    ecg_all = gather_with_grad(F.normalize(ecg.float(), dim=-1))
    cmr_all = gather_with_grad(F.normalize(cmr.float(), dim=-1))
    logits = ecg_all @ cmr_all.T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def local_similarity(ecg_tokens: torch.Tensor, cmr_tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every ECG phase token with every CMR frame token of the same patient: ``[B, T, T]``.

    Entry ``[b, k, l]`` compares ECG phase ``k`` with frame ``l`` of patient ``b``.
    """
    if ecg_tokens.ndim != 3 or ecg_tokens.shape != cmr_tokens.shape:
        raise ValueError(f"expected two [B, T, D] tensors of one shape, got {tuple(ecg_tokens.shape)} "
                         f"and {tuple(cmr_tokens.shape)}")
    return torch.bmm(F.normalize(ecg_tokens.float(), dim=-1), F.normalize(cmr_tokens.float(), dim=-1).transpose(1, 2))


def local_temporal_loss(ecg_tokens: torch.Tensor, cmr_tokens: torch.Tensor, temperature: float,
                        mask: torch.Tensor | None = None, negatives: str = "within") -> torch.Tensor:
    """Phase contrast: ECG phase ``k`` of patient ``b`` is the positive of CMR frame ``k`` of patient ``b``.

    ``negatives`` says which keys compete with that positive (the paper's exact formulation is not
    public, so all three readings are offered; ``docs/design.md`` §1 says why ``within`` is the default):

    * ``within``: the patient's other frames (a ``T x T`` contrast per patient; no communication);
    * ``cross``:  the other patients' frames at the same phase (a ``B x B`` contrast per phase);
    * ``both``:   the union of the two key sets.

    Symmetric cross-entropy (ECG -> CMR and CMR -> ECG), averaged over valid (patient, phase) pairs.
    A masked phase (``mask[b, k]`` False) is neither a query nor a key, so its token values affect
    neither the loss nor any gradient. Returns 0 when nothing is valid. Cross-patient negatives come
    from the local batch only (no gather under DDP).
    """
    if negatives not in LOCAL_NEGATIVES:
        raise ValueError(f"negatives must be one of {LOCAL_NEGATIVES}, got {negatives!r}")
    if ecg_tokens.ndim != 3 or ecg_tokens.shape != cmr_tokens.shape:
        raise ValueError(f"expected two [B, T, D] tensors of one shape, got {tuple(ecg_tokens.shape)} "
                         f"and {tuple(cmr_tokens.shape)}")
    b, t, _ = ecg_tokens.shape
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=ecg_tokens.device)
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [{b}, {t}], got {tuple(mask.shape)}")
    mask = mask.bool()
    ecg = F.normalize(ecg_tokens.float(), dim=-1)
    cmr = F.normalize(cmr_tokens.float(), dim=-1)
    positive = (ecg * cmr).sum(-1) / temperature  # [B, T]
    parts_e2c: list[torch.Tensor] = []  # log-sum-exp over each key set, per query [B, T]
    parts_c2e: list[torch.Tensor] = []
    if negatives in ("within", "both"):
        within = local_similarity(ecg, cmr) / temperature  # [B, T(ecg), T(cmr)]
        within = within.masked_fill(~(mask[:, :, None] & mask[:, None, :]), _MASKED_LOGIT)
        parts_e2c.append(torch.logsumexp(within, dim=2))
        parts_c2e.append(torch.logsumexp(within, dim=1))
    if negatives in ("cross", "both"):
        cross = torch.einsum("btd,ctd->tbc", ecg, cmr) / temperature  # [T, B(ecg), B(cmr)] per phase
        valid = mask.T[:, :, None] & mask.T[:, None, :]
        if negatives == "both":  # the positive is already among the within keys: count it once
            valid = valid & ~torch.eye(b, dtype=torch.bool, device=mask.device)
        cross = cross.masked_fill(~valid, _MASKED_LOGIT)
        parts_e2c.append(torch.logsumexp(cross, dim=2).T)
        parts_c2e.append(torch.logsumexp(cross, dim=1).T)
    ecg_to_cmr = torch.logsumexp(torch.stack(parts_e2c), dim=0) - positive
    cmr_to_ecg = torch.logsumexp(torch.stack(parts_c2e), dim=0) - positive
    per_phase = torch.where(mask, (ecg_to_cmr + cmr_to_ecg) / 2, 0.0)
    return per_phase.sum() / mask.sum().clamp_min(1)


class PTACLLoss(NamedTuple):
    """The total and its two parts (unpacks as ``total, global_, local``)."""

    total: torch.Tensor
    global_: torch.Tensor
    local: torch.Tensor


def ptacl_loss(ecg_global: torch.Tensor, cmr_global: torch.Tensor, ecg_tokens: torch.Tensor,
               cmr_tokens: torch.Tensor, mask: torch.Tensor | None = None, *, temperature_global: float = 0.1,
               temperature_local: float = 0.1, lambda_local: float = 1.0,
               local_negatives: str = "within") -> PTACLLoss:
    """``global_contrastive_loss + lambda_local * local_temporal_loss``, with both parts."""
    loss_global = global_contrastive_loss(ecg_global, cmr_global, temperature_global)
    loss_local = local_temporal_loss(ecg_tokens, cmr_tokens, temperature_local, mask, local_negatives)
    return PTACLLoss(loss_global + lambda_local * loss_local, loss_global, loss_local)
