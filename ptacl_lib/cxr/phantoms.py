"""Synthetic frontal chest X-ray phantoms with known findings, and captions written from the same truth.

Images follow the radiological convention: the patient's **right** side is on the image's **left**.
Coordinates below are fractions of the image width/height, y pointing down.

Anatomy: body soft tissue, two lung fields with vessel markings, mediastinum and spine, a heart
silhouette toward the patient's left, diaphragm domes and curved posterior ribs.
Findings (at most one of each kind per image), each with a ground-truth region mask:

- ``cardiomegaly`` (no side or zone): a widened heart silhouette; mask = the heart.
- ``effusion`` (side; zone always ``lower``): a dependent opacity with a meniscus at the lung base.
- ``nodule`` (side, zone): a round opacity; radius above ``MASS_RADIUS`` is phrased as a "mass".
- ``consolidation`` (side, zone): a patchy airspace opacity.
- ``pneumothorax`` (side; zone always ``upper``, i.e. apical on an erect film): a lucent rim without
  lung markings outside a visible visceral pleural line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

PATHOLOGIES: tuple[str, ...] = ("cardiomegaly", "effusion", "nodule", "consolidation", "pneumothorax")
SIDES: tuple[str, ...] = ("right", "left")
ZONES: tuple[str, ...] = ("upper", "lower")
MASS_RADIUS = 0.055  # nodules larger than this (fraction of the image width) are called a mass

# Lung field geometry, keyed by the patient's side: (centre x, centre y, radius x, radius y).
_LUNG = {"right": (0.31, 0.47, 0.15, 0.29), "left": (0.69, 0.47, 0.14, 0.29)}
_DOME_Y = {"right": 0.70, "left": 0.73}  # top of each diaphragm dome (the right one sits higher)


@dataclass(frozen=True)
class Finding:
    """One ground-truth finding: its kind, where it is, how big, and its pixel mask."""

    pathology: str
    side: str | None
    zone: str | None
    size: str
    mask: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class Phantom:
    """One phantom radiograph, its findings, its findings caption and the chest (lungs + heart) mask."""

    image: np.ndarray = field(repr=False)  # float32 [H, W] in [0, 1]
    findings: tuple[Finding, ...]
    caption: str
    chest_mask: np.ndarray = field(repr=False)  # bool [H, W]: both lung fields and the heart


@dataclass(frozen=True)
class PhantomConfig:
    """How phantoms are drawn."""

    image_size: int = 128
    p_normal: float = 0.2  # probability of a study with no finding
    max_findings: int = 2
    noise: float = 0.02


def lung_boxes(size: int) -> dict[str, tuple[float, float, float, float]]:
    """Each lung field's bounding ellipse as ``(x, y, width, height)`` pixels of a ``size`` phantom (COCO order)."""
    return {side: ((cx - rx) * size, (cy - ry) * size, 2 * rx * size, 2 * ry * size)
            for side, (cx, cy, rx, ry) in _LUNG.items()}


class _Canvas:
    """Pixel grids of one image in fractional coordinates."""

    def __init__(self, size: int) -> None:
        self.size = size
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.y, self.x = np.meshgrid(c, c, indexing="ij")

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0

    def smooth_noise(self, rng: np.random.Generator, sigma_frac: float) -> np.ndarray:
        n = ndimage.gaussian_filter(rng.standard_normal((self.size, self.size)), sigma_frac * self.size)
        return (n / (n.std() + 1e-8)).astype(np.float32)


def _lung_fields(cv: _Canvas, heart: np.ndarray) -> dict[str, np.ndarray]:
    """Each lung field: an ellipse cut by its diaphragm dome and by the heart silhouette."""
    fields = {}
    for side, (cx, cy, rx, ry) in _LUNG.items():
        dome = _DOME_Y[side] + 0.9 * (cv.x - (cx + (0.05 if side == "right" else -0.05))) ** 2
        fields[side] = cv.ellipse(cx, cy, rx, ry) & (cv.y < dome) & ~heart
    return fields


def _zone_band(cv: _Canvas, lung: np.ndarray, zone: str) -> np.ndarray:
    """The upper or lower half of a lung field (split at its vertical midpoint)."""
    rows = np.nonzero(lung.any(axis=1))[0]
    mid = (rows.min() + rows.max() + 1) / 2 / cv.size
    return lung & ((cv.y < mid) if zone == "upper" else (cv.y >= mid))


def _pick_point(rng: np.random.Generator, cv: _Canvas, region: np.ndarray, margin: float) -> tuple[float, float]:
    """A random point of ``region`` at least ``margin`` (fraction of width) inside its border."""
    inner = ndimage.binary_erosion(region, iterations=max(1, int(margin * cv.size)))
    ys, xs = np.nonzero(inner if inner.any() else region)
    k = rng.integers(len(ys))
    return (xs[k] + 0.5) / cv.size, (ys[k] + 0.5) / cv.size


def _sample_findings(rng: np.random.Generator, config: PhantomConfig) -> list[tuple[str, str | None, str | None]]:
    if rng.random() < config.p_normal:
        return []
    n = int(rng.integers(1, config.max_findings + 1))
    kinds = rng.choice(len(PATHOLOGIES), size=n, replace=False)
    out = []
    for k in sorted(kinds):
        kind = PATHOLOGIES[k]
        side = None if kind == "cardiomegaly" else SIDES[rng.integers(2)]
        zone = {"cardiomegaly": None, "effusion": "lower", "pneumothorax": "upper"}.get(kind, ZONES[rng.integers(2)])
        out.append((kind, side, zone))
    return out


def make_phantom(rng: np.random.Generator, config: PhantomConfig = PhantomConfig()) -> Phantom:
    """Draw one phantom radiograph with its findings and caption."""
    cv = _Canvas(config.image_size)
    wanted = _sample_findings(rng, config)
    kinds = {k for k, _, _ in wanted}

    # Heart silhouette: cardiothoracic ratio ~0.3 when normal, ~0.45 when enlarged (of the body width).
    heart_rx = rng.uniform(0.19, 0.22) if "cardiomegaly" in kinds else rng.uniform(0.12, 0.14)
    heart = cv.ellipse(0.53 + 0.5 * (heart_rx - 0.12), 0.6, heart_rx, 0.11)
    lungs = _lung_fields(cv, heart)
    lung_mask = lungs["right"] | lungs["left"]

    img = np.full((cv.size, cv.size), 0.04, np.float32)  # air outside the body
    body = cv.ellipse(0.5, 0.58, 0.49, 0.6)
    img[body] = 0.5
    img[cv.y > 0.72] = np.where(body[cv.y > 0.72], 0.6, img[cv.y > 0.72])  # abdomen below the diaphragm
    markings = 0.05 * cv.smooth_noise(rng, 0.012)
    img[lung_mask] = 0.17 + markings[lung_mask]
    img[heart] = 0.58
    spine = (np.abs(cv.x - 0.5) < 0.045) & body & ~lung_mask
    img[spine] = np.maximum(img[spine], 0.62)
    # Posterior ribs: curved bands crossing each lung field, drawn over lungs and soft tissue.
    thorax = body & (cv.y < 0.78) & (np.abs(cv.x - 0.5) > 0.05)
    for k in range(9):
        y_rib = 0.2 + 0.068 * k + 0.55 * (cv.x - 0.5) ** 2 - 0.02 * np.abs(cv.x - 0.5)
        rib = thorax & (np.abs(cv.y - y_rib) < 0.011)
        img[rib] += 0.1

    findings: list[Finding] = []
    # Pleural findings first: nodules and consolidation are then placed in the lung that remains aerated.
    draw_order = ("cardiomegaly", "pneumothorax", "effusion", "nodule", "consolidation")
    for kind, side, zone in sorted(wanted, key=lambda w: draw_order.index(w[0])):
        if kind == "cardiomegaly":
            findings.append(Finding(kind, None, None, "enlarged", heart))
            continue
        lung = lungs[side]
        if kind == "effusion":
            rows = np.nonzero(lung.any(axis=1))[0]
            depth = rng.uniform(0.12, 0.3)
            size = "small" if depth < 0.2 else "moderate"
            top = rows.max() / cv.size - depth * (rows.max() - rows.min()) / cv.size
            lateral = np.abs(cv.x - 0.5) / 0.35
            mask = lung & (cv.y > top - 0.06 * lateral)  # meniscus rises toward the chest wall
            img[mask] = 0.5 + 0.03 * markings[mask]
        elif kind == "nodule":
            radius = rng.uniform(0.03, 0.045) if rng.random() < 0.6 else rng.uniform(0.06, 0.08)
            size = "mass" if radius > MASS_RADIUS else "nodule"
            cx, cy = _pick_point(rng, cv, _zone_band(cv, lung, zone), radius)
            dist = np.hypot(cv.x - cx, cv.y - cy) / radius
            mask = dist <= 1.0
            img += 0.36 * np.clip((1.25 - dist) / 0.5, 0, 1) * body  # solid core, soft edge
        elif kind == "consolidation":
            band = _zone_band(cv, lung, zone)
            cx, cy = _pick_point(rng, cv, band, 0.05)
            blob = cv.ellipse(cx, cy, 0.085, 0.075) & lung
            patch = cv.smooth_noise(rng, 0.02)
            mask = blob & (patch > -0.6)
            opened = ndimage.binary_opening(mask)
            mask = opened if opened.any() else mask
            size = "patchy"
            img[mask] += 0.26 + 0.04 * patch[mask]
        else:  # pneumothorax: the lung collapses toward the hilum, leaving a lucent apical rim
            cx, cy, rx, ry = _LUNG[side]
            shrink = rng.uniform(0.76, 0.9)
            size = "small" if shrink > 0.83 else "moderate"
            hilum_x = cx + (0.05 if side == "right" else -0.05)
            collapsed = cv.ellipse(hilum_x + (cx - hilum_x) * shrink, cy + 0.1 * (1 - shrink),
                                   rx * shrink, ry * shrink)
            mask = lung & ~collapsed & (cv.y < cy)
            img[mask] = 0.07  # no lung markings
            edge = collapsed & ~ndimage.binary_erosion(collapsed, iterations=1) & lung & (cv.y < cy)
            img[edge] = 0.45  # visceral pleural line
        if kind in ("pneumothorax", "effusion"):
            lungs[side] = lungs[side] & ~mask
        findings.append(Finding(kind, side, zone, size, mask))

    img = ndimage.gaussian_filter(img, 0.6) + config.noise * rng.standard_normal(img.shape)
    caption = write_caption(findings, rng)
    return Phantom(np.clip(img, 0, 1).astype(np.float32), tuple(findings), caption, lung_mask | heart)


# Caption phrasings. {side}/{zone}/{size} are filled from the ground truth.
_POSITIVE = {
    "cardiomegaly": ("the heart is enlarged", "there is cardiomegaly", "the cardiac silhouette is enlarged",
                     "cardiomegaly is present"),
    "effusion": ("{size} {side} pleural effusion", "there is a {size} {side} pleural effusion",
                 "{side} pleural effusion"),
    "nodule": ("{size} in the {side} {zone} zone", "there is a {size} in the {side} {zone} zone",
               "{side} {zone} zone {size}"),
    "consolidation": ("consolidation in the {side} {zone} zone", "{side} {zone} zone airspace consolidation",
                      "there is patchy consolidation in the {side} {zone} zone"),
    "pneumothorax": ("{size} {side} apical pneumothorax", "there is a {side} pneumothorax",
                     "{side} apical pneumothorax"),
}
_NORMAL_HEART = ("the heart size is normal", "the cardiac silhouette is within normal limits", "normal heart size")
_CLEAR_LUNGS = ("the lungs are clear", "no focal consolidation", "the lungs are clear without focal opacity")
_NO_PLEURAL = ("no pleural effusion or pneumothorax", "there is no effusion or pneumothorax",
               "no pneumothorax or pleural effusion")


def write_caption(findings: tuple[Finding, ...] | list[Finding], rng: np.random.Generator) -> str:
    """A findings paragraph for the ground truth: heart first, then lung and pleural findings."""
    by_kind = {f.pathology: f for f in findings}

    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    sentences = []
    sentences.append(_fill(pick(_POSITIVE["cardiomegaly"]), by_kind["cardiomegaly"])
                     if "cardiomegaly" in by_kind else pick(_NORMAL_HEART))
    for kind in ("nodule", "consolidation", "effusion", "pneumothorax"):
        if kind in by_kind:
            sentences.append(_fill(pick(_POSITIVE[kind]), by_kind[kind]))
    if not ({"nodule", "consolidation"} & by_kind.keys()):
        sentences.append(pick(_CLEAR_LUNGS))
    if not ({"effusion", "pneumothorax"} & by_kind.keys()):
        sentences.append(pick(_NO_PLEURAL))
    return " . ".join(sentences) + " ."


def _fill(template: str, f: Finding) -> str:
    size = f.size if f.pathology == "nodule" else ("small" if f.size == "small" else "moderate")
    return template.format(side=f.side, zone=f.zone, size=size)


@dataclass(frozen=True)
class PhantomSet:
    """A batch of phantoms as arrays: images [N, H, W], captions, findings and chest masks [N, H, W]."""

    images: np.ndarray
    captions: list[str]
    findings: list[tuple[Finding, ...]]
    chest_masks: np.ndarray

    def __len__(self) -> int:
        return len(self.captions)


def generate_phantoms(n: int, seed: int = 0, config: PhantomConfig = PhantomConfig()) -> PhantomSet:
    """``n`` phantoms; phantom ``i`` depends only on ``(seed, i)``, so sets of any size agree on a prefix."""
    if n < 1:
        raise ValueError(f"need at least one phantom, got n={n}")
    items = [make_phantom(np.random.default_rng([seed, i]), config) for i in range(n)]
    return PhantomSet(
        images=np.stack([p.image for p in items]),
        captions=[p.caption for p in items],
        findings=[p.findings for p in items],
        chest_masks=np.stack([p.chest_mask for p in items]),
    )
