"""Caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D, METEOR when Java is present) and localisation scores.

BLEU, ROUGE-L and CIDEr-D come from pycocoevalcap's pure-Python scorers (its ``Cider`` is the
CIDEr-D variant: clipped n-gram counts and a Gaussian length penalty, sigma 6). Text is tokenised
with ``vocab.tokenize`` instead of the Java PTB tokenizer. METEOR needs Java (pycocoevalcap ships the
jar and its paraphrase table, so it runs offline); without ``java`` on PATH it is reported as NaN.
"""

from __future__ import annotations

import math
import shutil
from typing import Any, Collection, Sequence

import numpy as np
from scipy import ndimage

from .mentions import CHEXPERT, observations_present, positive_findings
from .vocab import tokenize

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def meteor_available() -> bool:
    """METEOR runs when a ``java`` executable is on PATH."""
    return shutil.which("java") is not None


METEOR_NO_JAVA = "METEOR needs a Java runtime and no 'java' was found on PATH; it is reported as NaN"


def caption_metrics(candidates: Sequence[str], references: Sequence[str | Sequence[str]],
                    meteor: bool | None = None) -> dict[str, float]:
    """Corpus scores of ``candidates`` against one or more references each.

    ``meteor=None`` computes METEOR only when Java is available; ``False`` skips it (NaN).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need as many candidates as references (got {len(candidates)} and {len(references)})")
    res = {i: [" ".join(tokenize(c))] for i, c in enumerate(candidates)}
    gts = {i: [" ".join(tokenize(r)) for r in ([refs] if isinstance(refs, str) else refs)]
           for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    use_meteor = meteor_available() if meteor is None else meteor
    out["METEOR"] = _meteor(gts, res) if use_meteor else math.nan
    return {k: out[k] for k in CAPTION_METRICS}


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    if not meteor_available():
        raise RuntimeError("METEOR needs a Java runtime ('java' on PATH); pass meteor=False to skip it")
    scorer = Meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()


def finding_scores(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Micro precision/recall/F1 of asserted ``(pathology, side)`` findings, candidate vs reference text."""
    tp = fp = fn = 0
    for cand, ref in zip(candidates, references, strict=True):
        c, r = positive_findings(cand), positive_findings(ref)
        tp, fp, fn = tp + len(c & r), fp + len(c - r), fn + len(r - c)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"finding_precision": precision, "finding_recall": recall, "finding_f1": f1}


def observation_scores(candidates: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Clinical efficacy over the 14 CheXpert observations (``mentions.CHEXPERT``; uncertain counts as present).

    Returns micro precision/recall/F1 over all (text, observation) pairs, the macro F1 over observations
    that occur in the references or candidates, and ``chexpert_f1_per_observation`` (label -> F1).
    """
    return observation_set_scores([observations_present(c) for c in candidates],
                                  [observations_present(r) for r in references])


def observation_set_scores(candidates: Sequence[Collection[str]], references: Sequence[Collection[str]],
                           prefix: str = "chexpert") -> dict[str, Any]:
    """``observation_scores`` for given observation-key sets (e.g. a data set's reference labels); keys ``prefix_*``."""
    counts = {k: [0, 0, 0] for k in CHEXPERT}  # tp, fp, fn
    for cand, ref in zip(candidates, references, strict=True):
        c, r = set(cand), set(ref)
        for k in CHEXPERT:
            counts[k][0] += k in c and k in r
            counts[k][1] += k in c and k not in r
            counts[k][2] += k in r and k not in c
    tp, fp, fn = (sum(v[i] for v in counts.values()) for i in range(3))
    per = {CHEXPERT[k]: _f1(*v) for k, v in counts.items() if sum(v)}
    precision, recall = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
    return {f"{prefix}_micro_precision": precision, f"{prefix}_micro_recall": recall,
            f"{prefix}_micro_f1": _f1(tp, fp, fn), f"{prefix}_macro_f1": float(np.mean(list(per.values()))) if per
            else 0.0, f"{prefix}_f1_per_observation": per}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """Pointing game: is the heatmap's maximum inside ``mask`` (dilated by ``tolerance`` pixels)?"""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
    if not mask.any():
        raise ValueError("empty ground-truth mask")
    region = ndimage.binary_dilation(mask, iterations=tolerance) if tolerance > 0 else mask.astype(bool)
    return bool(region.flat[int(np.argmax(heatmap))])


def heatmap_iou(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of ``heatmap >= threshold * max(heatmap)`` with ``mask``."""
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
    pred = heatmap >= threshold * float(heatmap.max())
    union = np.logical_or(pred, mask).sum()
    return float(np.logical_and(pred, mask).sum() / union) if union else 0.0


def random_point_hit_rate(mask: np.ndarray, region: np.ndarray | None = None, tolerance: int = 0) -> float:
    """Chance that a uniformly random point of ``region`` (default: the whole image) hits ``mask``."""
    target = ndimage.binary_dilation(mask, iterations=tolerance) if tolerance > 0 else mask.astype(bool)
    region = np.ones_like(target, bool) if region is None else region.astype(bool)
    if not region.any():
        raise ValueError("empty sampling region")
    return float((target & region).sum() / region.sum())
