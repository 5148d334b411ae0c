"""Beam search that keeps, for every generated word, the attention map used to produce it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .model import ShowAttendTell
from .vocab import Vocabulary


@dataclass(frozen=True)
class DecodedCaption:
    """A generated caption: its words, log-probability, and per-word attention ``[len(words), G, G]``."""

    words: tuple[str, ...]
    score: float
    attention: np.ndarray = field(repr=False)
    gates: np.ndarray = field(repr=False)  # beta per word

    @property
    def text(self) -> str:
        return " ".join(self.words)


@torch.no_grad()
def beam_search(model: ShowAttendTell, vocab: Vocabulary, image: np.ndarray | torch.Tensor,
                beam_size: int = 3, max_len: int = 40, length_penalty: float = 0.0) -> DecodedCaption:
    """Decode one image ``[H, W]``. Beams that emit ``<end>`` are set aside; the best finished one wins.

    Finished beams are ranked by ``logprob / len**length_penalty`` (0 = plain log-probability).
    """
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(image, np.float32), device=device).reshape(1, *np.shape(image)[-2:])
    state = model.start(x)
    k = beam_size
    state = state.select(torch.zeros(k, dtype=torch.long, device=device))
    words = torch.full((k,), vocab.start, dtype=torch.long, device=device)
    scores = torch.zeros(k, device=device)
    scores[1:] = -float("inf")  # all beams start identical; keep only one alive at step 0
    seqs: list[list[int]] = [[] for _ in range(k)]
    alphas: list[list[torch.Tensor]] = [[] for _ in range(k)]
    betas: list[list[float]] = [[] for _ in range(k)]
    finished: list[tuple[float, list[int], list[torch.Tensor], list[float]]] = []
    for _ in range(max_len):
        logits, alpha, beta, state = model.step(words, state)
        logp = logits.float().log_softmax(-1) + scores.unsqueeze(1)  # [k, V]
        top, flat = logp.flatten().topk(k)
        src, tok = flat // logp.shape[1], flat % logp.shape[1]
        new_seqs, new_alphas, new_betas, keep, keep_scores = [], [], [], [], []
        for s, b, t in zip(top.tolist(), src.tolist(), tok.tolist()):
            if s == -float("inf"):
                continue
            seq, al, be = seqs[b] + [t], alphas[b] + [alpha[b]], betas[b] + [float(beta[b])]
            if t == vocab.end:
                finished.append((s / max(len(seq), 1) ** length_penalty, seq, al, be))
            else:
                new_seqs.append(seq)
                new_alphas.append(al)
                new_betas.append(be)
                keep.append(b)
                keep_scores.append(s)
        if not keep or (finished and len(finished) >= beam_size):
            break
        seqs, alphas, betas = new_seqs, new_alphas, new_betas
        index = torch.tensor(keep, device=device)
        state = state.select(index)
        words = torch.tensor([q[-1] for q in seqs], device=device)
        scores = torch.tensor(keep_scores, device=device)
    if not finished:  # ran out of length: take the best open beam
        finished = [(float(scores[0]) / max(len(seqs[0]), 1) ** length_penalty, seqs[0], alphas[0], betas[0])]
    score, seq, al, be = max(finished, key=lambda f: f[0])
    g = model.config.grid_size
    kept = [i for i, t in enumerate(seq) if t not in (vocab.pad, vocab.start, vocab.end, vocab.unk)]
    att = (torch.stack([al[i] for i in kept]).reshape(len(kept), g, g).float().cpu().numpy()
           if kept else np.zeros((0, g, g), np.float32))
    return DecodedCaption(tuple(vocab.words[seq[i]] for i in kept), float(score), att,
                          np.asarray([be[i] for i in kept], np.float32))

def caption_images(model: ShowAttendTell, vocab: Vocabulary, images: np.ndarray, beam_size: int = 3,
                   max_len: int = 40) -> list[DecodedCaption]:
    """Beam-search every image of ``images`` [N, H, W]."""
    return [beam_search(model, vocab, img, beam_size, max_len) for img in images]
