"""Score a trained captioner on phantoms: caption metrics, finding F1 and heatmap localisation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .decode import DecodedCaption, caption_images
from .heatmaps import pathology_heatmaps
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
