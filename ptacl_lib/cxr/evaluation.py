"""Score heatmap localisation: on phantom masks (``evaluate_captioner``), on real lung boxes (``lung_localisation``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .decode import DecodedCaption, caption_images
from .heatmaps import pathology_heatmaps, upsample
from .mentions import CHEXPERT
from .metrics import caption_metrics, finding_scores, heatmap_iou, pointing_hit, random_point_hit_rate
from .phantoms import PhantomSet
from .train import TrainedCaptioner


@dataclass
class CaptionEvaluation:
    """Decoded captions, one row per ground-truth finding, and the summary metrics."""

    decoded: list[DecodedCaption] = field(repr=False)
    localisation: pd.DataFrame = field(repr=False)
    metrics: dict[str, float]

    def per_pathology(self) -> pd.DataFrame:
        """Pointing game, chance levels and IoU per pathology (rows) over the localised findings."""
        cols = ["hit", "chance_image", "chance_chest", "iou"]
        table = self.localisation.groupby("pathology")[cols].mean()
        table.insert(0, "n", self.localisation.groupby("pathology").size())
        return table.rename(columns={"hit": "pointing_game"})

    def save(self, run_dir: str | Path) -> Path:
        """Write ``metrics.json``, ``localisation.csv`` and ``captions.csv`` (generated text) to ``run_dir``."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(self.metrics, indent=1))
        self.localisation.to_csv(run_dir / "localisation.csv", index=False)
        pd.DataFrame({"generated": [d.text for d in self.decoded]}).to_csv(run_dir / "captions.csv", index=False)
        return run_dir / "metrics.json"


def localisation_table(decoded: list[DecodedCaption], phantoms: PhantomSet, tolerance: int = 0,
                       words: str = "phrase") -> pd.DataFrame:
    """One row per ground-truth finding whose pathology the generated caption asserts.

    Columns: ``image, pathology, side, hit, iou, chance_image, chance_chest`` where the two chance
    columns are the hit probability of a uniformly random point over the image / the chest (lungs+heart).
    ``words`` picks which words' attention makes a heatmap (see ``pathology_heatmaps``).
    """
    rows = []
    shape = phantoms.images.shape[-2:]
    for i, (dec, truth) in enumerate(zip(decoded, phantoms.findings, strict=True)):
        maps = pathology_heatmaps(dec, shape, words)
        for f in truth:
            if f.pathology not in maps:
                continue
            heat = maps[f.pathology]
            rows.append({"image": i, "pathology": f.pathology, "side": f.side,
                         "hit": pointing_hit(heat, f.mask, tolerance), "iou": heatmap_iou(heat, f.mask),
                         "chance_image": random_point_hit_rate(f.mask, tolerance=tolerance),
                         "chance_chest": random_point_hit_rate(f.mask, phantoms.chest_masks[i], tolerance)})
    return pd.DataFrame(rows, columns=["image", "pathology", "side", "hit", "iou", "chance_image", "chance_chest"])


def evaluate_captioner(trained: TrainedCaptioner, phantoms: PhantomSet, beam_size: int = 3,
                       max_len: int = 40, meteor: bool | None = None, tolerance: int = 0,
                       words: str = "phrase") -> CaptionEvaluation:
    """Beam-decode every phantom and score captions against the reference captions and masks.

    Real data (Open-I, MIMIC-CXR) has no masks: score it with ``pipeline.evaluate_run`` (``ptacl cxr evaluate``).
    """
    if not isinstance(phantoms, PhantomSet):
        raise TypeError(f"evaluate_captioner scores a PhantomSet, got {type(phantoms).__name__}; for real data use "
                        "ptacl_lib.cxr.pipeline.evaluate_run (ptacl cxr evaluate)")
    decoded = caption_images(trained.model, trained.vocab, phantoms.images, beam_size, max_len)
    texts = [d.text for d in decoded]
    metrics = caption_metrics(texts, phantoms.captions, meteor=meteor)
    metrics.update(finding_scores(texts, phantoms.captions))
    loc = localisation_table(decoded, phantoms, tolerance, words)
    n_truth = sum(len(f) for f in phantoms.findings)
    metrics.update({
        "findings_localised": float(len(loc)),
        "findings_total": float(n_truth),
        "pointing_game": float(loc["hit"].mean()) if len(loc) else float("nan"),
        "pointing_chance_image": float(loc["chance_image"].mean()) if len(loc) else float("nan"),
        "pointing_chance_chest": float(loc["chance_chest"].mean()) if len(loc) else float("nan"),
        "heatmap_iou": float(loc["iou"].mean()) if len(loc) else float("nan"),
    })
    return CaptionEvaluation(decoded, loc, metrics)


def box_mask(boxes: Sequence[tuple[float, float, float, float]], width: int, height: int, size: int) -> np.ndarray:
    """bool ``[size, size]``: the union of ``(x, y, w, h)`` boxes given in a ``width x height`` image, resized as the
    model's input is (each axis scaled on its own; a pixel is inside when its centre is)."""
    mask = np.zeros((size, size), bool)
    centres = np.arange(size) + 0.5
    for x, y, w, h in boxes:
        cols = (centres >= x * size / width) & (centres < (x + w) * size / width)
        rows = (centres >= y * size / height) & (centres < (y + h) * size / height)
        mask |= rows[:, None] & cols[None, :]
    return mask


def lung_localisation(decoded: Sequence[DecodedCaption], masks: Sequence[np.ndarray]) -> dict[str, Any]:
    """Attention against real lung boxes: per asserted finding (``pathology_heatmaps``) and over all words.

    For each image with a lung mask and each finding its caption asserts: ``attention_in_lungs`` = the share of
    the heatmap's mass inside the lungs; its chance level ``lung_area_share`` = the lungs' share of the image
    (what a uniform map would give); ``pointing_game`` = whether the heatmap's maximum is inside the lungs
    (chance: the same area share). ``all_words_*`` repeat the first two for the mean attention of every word of
    the caption, so every captioned image counts. Means over (image, finding) pairs; ``per_finding`` by
    CheXpert label.
    """
    rows, all_words = [], []
    for dec, mask in zip(decoded, masks, strict=True):
        if not mask.any() or not len(dec.attention):
            continue
        shape = mask.shape
        area = float(mask.mean())
        mean_map = upsample(dec.attention.mean(0), shape)
        all_words.append((float((mean_map * mask).sum() / max(mean_map.sum(), 1e-12)), area))
        for pathology, heat in pathology_heatmaps(dec, shape).items():
            rows.append({"finding": CHEXPERT[pathology], "attention_in_lungs": float((heat * mask).sum() / heat.sum()),
                         "lung_area_share": area, "pointing_game": float(pointing_hit(heat, mask))})
    table = pd.DataFrame(rows, columns=["finding", "attention_in_lungs", "lung_area_share", "pointing_game"])
    cols = ["attention_in_lungs", "lung_area_share", "pointing_game"]
    out: dict[str, Any] = {"n_images": len(all_words), "n_heatmaps": len(table)}
    out.update({k: float(table[k].mean()) if len(table) else float("nan") for k in cols})
    out["all_words_attention_in_lungs"] = float(np.mean([a for a, _ in all_words])) if all_words else float("nan")
    out["all_words_lung_area_share"] = float(np.mean([c for _, c in all_words])) if all_words else float("nan")
    out["per_finding"] = {name: {"n": int(len(g)), **{k: float(g[k].mean()) for k in cols}}
                          for name, g in table.groupby("finding")}
    return out
