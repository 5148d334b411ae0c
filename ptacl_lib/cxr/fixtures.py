"""A tiny Open-I data set in the Kaggle layout, drawn from phantoms, for tests, the notebook and trying the CLI.

It follows the real Kaggle conventions (``indiana_reports.csv``, ``indiana_projections.csv``,
``images/images_normalized/<uid>_IM-<nnnn>-<nnnn>.dcm.png``, Frontal/Lateral views, ``XXXX`` placeholders)
but every image and report is synthetic (``phantoms``), so nothing of Open-I's CC BY-NC-ND data is copied.
Optionally one listed image is missing and one is a truncated PNG, as in damaged real downloads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .phantoms import PhantomConfig, generate_phantoms
from .readers import KAGGLE_IMAGES, KAGGLE_PROJECTIONS, KAGGLE_REPORTS


def _sentence_case(caption: str) -> str:
    sentences = [s.strip() for s in caption.split(" . ") if s.strip(" .")]
    return " ".join(s[0].upper() + s[1:].rstrip(" .") + "." for s in sentences)


def write_kaggle_fixture(root: str | Path, n_studies: int = 12, image_size: int = 64, seed: int = 0,
                         damaged: bool = True) -> dict[str, Path]:
    """Write the fixture under ``root``; returns the paths of the missing and truncated images (if ``damaged``).

    Study ``uid`` (1-based) has a frontal image ``<uid>_IM-<uid+1000>-1001.dcm.png`` and, for odd uids, a
    lateral ``...-2001.dcm.png``. The last study has no findings text (readers skip it).
    """
    root = Path(root)
    images = root / KAGGLE_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    phantoms = generate_phantoms(2 * n_studies, seed, PhantomConfig(image_size=image_size))
    reports, projections = [], []
    for k in range(n_studies):
        uid = k + 1
        findings = _sentence_case(phantoms.captions[k]) + " The XXXX are intact."
        if uid == n_studies:
            findings = ""
        reports.append({"uid": uid, "MeSH": "normal", "Problems": "normal", "image": "Xray Chest PA and Lateral",
                        "indication": "XXXX-year-old with chest pain.", "comparison": "None.", "findings": findings,
                        "impression": "No acute cardiopulmonary process."})
        views = [("Frontal", phantoms.images[k], 1001)]
        if uid % 2:
            views.append(("Lateral", phantoms.images[n_studies + k][:, ::-1], 2001))
        for view, pixels, number in views:
            name = f"{uid}_IM-{1000 + uid:04d}-{number}.dcm.png"
            Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(images / name)
            projections.append({"uid": uid, "filename": name, "projection": view})
    pd.DataFrame(reports).to_csv(root / KAGGLE_REPORTS, index=False)
    pd.DataFrame(projections).to_csv(root / KAGGLE_PROJECTIONS, index=False)
    out: dict[str, Path] = {}
    if damaged:
        missing, truncated = images / projections[0]["filename"], images / projections[2]["filename"]
        missing.unlink()
        data = truncated.read_bytes()
        truncated.write_bytes(data[: len(data) // 2])
        out = {"missing": missing, "truncated": truncated}
    return out
