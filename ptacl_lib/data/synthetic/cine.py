"""Short-axis cine frames drawn from the ventricular volume curves.

The LV is modelled as a cylinder of fixed long-axis length: the blood pool is a disc whose area
is volume / length, and the myocardium an annulus whose area is myocardial volume / (0.65 x
length) (a mid-ventricular slice shows a thicker wall than the LV's average; the wall thickens
as the cavity empties, as incompressible muscle does). The RV blood pool is a crescent: an
ellipse, centred off the LV towards the subject's right and front, minus the LV; its size is
solved so the crescent's area is RV volume / RV length. A thin bright rim of epicardial fat
surrounds the heart. Every frame is drawn at once
from distance fields on the pixel grid, with anti-aliased edges, a textured background and
Rician noise.

Several short-axis slices (``slices`` > 1) are drawn from base to apex at ``slice_positions``
along the long axis. The ventricles taper towards the apex: a slice's cross-sections (LV pool,
myocardium, RV crescent) have ``area_profile(z)`` times the mid slice's area, a profile whose mean
over the long axis is 1, so the volumes swept by the stack are still the latent volumes and the LV
mass is unchanged. Every slice shares the subject's tissue intensities and background, and gets
its own noise. One slice is the mid slice (z = 0.5), drawn with exactly the draws of a
single-slice cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import zoom

from .latent import MYOCARDIAL_DENSITY, SubjectLatent

#: RV cavity: an ellipse centred this many LV epicardial radii from the LV centre, its long axis
#: across that direction (so what lies outside the LV wraps round the septum as a crescent).
_RV_OFFSET = 0.8
_RV_ASPECT = 1.7
_RV_WALL_CM = 0.35
#: Epicardial fat: a bright rim round the heart in balanced SSFP cine.
_FAT_CM = 0.3
#: The mid-ventricular myocardial annulus stands for the whole LV over this fraction of its length.
_MYOCARDIAL_LENGTH_FRACTION = 0.65
#: Slices of a multi-slice stack lie evenly between these fractions of the long axis (0 base, 1 apex).
SLICE_SPAN: tuple[float, float] = (0.2, 0.8)
#: Linear taper of the cross-section area along the long axis: area(z) / area(mid) = 1 + TAPER (0.5 - z).
TAPER = 1.2


def slice_positions(slices: int) -> np.ndarray:
    """Long-axis positions (0 base, 1 apex) of ``slices`` slices: the mid slice alone, or evenly over
    ``SLICE_SPAN``."""
    return np.array([0.5]) if slices == 1 else np.linspace(*SLICE_SPAN, slices)


def area_profile(z: np.ndarray) -> np.ndarray:
    """Cross-section area at long-axis position ``z`` relative to the mid slice's; its mean over [0, 1] is 1."""
    return 1.0 + TAPER * (0.5 - np.asarray(z, dtype=np.float64))


@lru_cache(maxsize=1)
def _crescent_table() -> tuple[np.ndarray, np.ndarray]:
    """Crescent area (in LV epicardial radii squared) against the RV ellipse's short semi-axis (in epicardial radii)."""
    step = 0.01
    x, y = np.meshgrid(np.arange(-6.0, 8.0, step), np.arange(-6.0, 6.0, step), indexing="ij")
    outside_lv = (x ** 2 + y ** 2) > 1.0
    # A point lies inside the ellipse of scale s exactly when its ellipse level is below s.
    level = np.sort(np.sqrt((x[outside_lv] - _RV_OFFSET) ** 2 + (y[outside_lv] / _RV_ASPECT) ** 2))
    scale = np.linspace(0.05, 3.0, 300)
    return np.searchsorted(level, scale) * step ** 2, scale


@dataclass(frozen=True)
class HeartPlacement:
    """Where and how large the heart is drawn."""

    image_size: int
    pixel_mm: float
    centre: tuple[float, float]         # LV centre (row, column), pixels
    rv_angle: float                     # direction of the RV centre from the LV centre, radians
    lv_length_cm: float
    rv_length_cm: float
    myocardial_volume_ml: float

    @property
    def myocardial_length_cm(self) -> float:
        return _MYOCARDIAL_LENGTH_FRACTION * self.lv_length_cm


@dataclass(frozen=True)
class CineFrames:
    """Drawn frames and the radii (cm) that drew them."""

    images: np.ndarray                  # float32 [S, T, H, W] in [0, 1], base to apex
    lv_endo_cm: np.ndarray              # [T] at the mid slice (the stack's mean cross-section)
    lv_epi_cm: np.ndarray               # [T] at the mid slice
    radius_scale: np.ndarray            # [S] each slice's radii against the mid slice's, base to apex


def place_heart(lat: SubjectLatent, rng: np.random.Generator, image_size: int) -> HeartPlacement:
    """Per-subject field of view, heart position and orientation."""
    fov_mm = 175.0 * np.exp(rng.normal(0.0, 0.04))
    jitter = rng.normal(0.0, 0.03 * image_size, 2)
    centre = (0.47 * image_size + jitter[0], 0.58 * image_size + jitter[1])
    return HeartPlacement(
        image_size=image_size, pixel_mm=float(fov_mm / image_size),
        centre=(float(centre[0]), float(centre[1])),
        rv_angle=float(np.deg2rad(rng.normal(160.0, 8.0))),
        lv_length_cm=lat.lv_length_cm, rv_length_cm=lat.lv_length_cm * float(rng.uniform(1.0, 1.15)),
        myocardial_volume_ml=lat.lvm / MYOCARDIAL_DENSITY,
    )


def drawn_lv_mass(placement: HeartPlacement, endo_cm: float, epi_cm: float) -> float:
    """LV mass (g) of the drawn myocardial annulus swept along the long axis."""
    return float(MYOCARDIAL_DENSITY * np.pi * (epi_cm ** 2 - endo_cm ** 2) * placement.myocardial_length_cm)


def _soft_disc(radius: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Anti-aliased disc occupancy (radius [T] in pixels against distance fields)."""
    return np.clip(radius[:, None, None] - distance + 0.5, 0.0, 1.0)


def _soft_ellipse(along: np.ndarray, across: np.ndarray, semi_along: np.ndarray, semi_across: np.ndarray) -> np.ndarray:
    """Anti-aliased occupancy of ellipses with per-frame semi-axes [T] (pixels), from an approximate signed distance."""
    a, b = semi_along[:, None, None], semi_across[:, None, None]
    level = np.sqrt((along / a) ** 2 + (across / b) ** 2) + 1e-6
    gradient = np.sqrt((along / a ** 2) ** 2 + (across / b ** 2) ** 2) / level + 1e-6
    return np.clip((1.0 - level) / gradient + 0.5, 0.0, 1.0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Static tissue: smooth texture, a darker lung field to the subject's left, brighter liver below."""
    texture = zoom(rng.normal(0.0, 0.06, (6, 6)), size / 6.0, order=3)[:size, :size]
    rows, cols = np.mgrid[0:size, 0:size] / size
    lung = np.clip(1.5 - np.hypot((rows - 0.25) / 0.3, (cols - 0.9) / 0.25), 0.0, 1.0)
    liver = np.clip(1.5 - np.hypot((rows - 1.0) / 0.3, (cols - 0.2) / 0.45), 0.0, 1.0)
    base = rng.uniform(0.28, 0.38)
    return (base + texture - 0.22 * lung + 0.12 * liver).astype(np.float32)


def _tissue(rng: np.random.Generator, size: int) -> tuple[float, float, float, np.ndarray, float]:
    """The subject's intensities: LV blood, RV blood, muscle, the static background and fat."""
    blood_lv, blood_rv, muscle = rng.uniform(0.8, 0.92), rng.uniform(0.74, 0.86), rng.uniform(0.16, 0.26)
    background = _background(rng, size)
    fat_level = rng.uniform(0.5, 0.65)
    return blood_lv, blood_rv, muscle, background, fat_level


def _draw_slice(endo: np.ndarray, epi: np.ndarray, rv_semi: np.ndarray, placement: HeartPlacement,
                tissue: tuple[float, float, float, np.ndarray, float]) -> np.ndarray:
    """Noise-free frames [T, H, W] of one slice with per-frame LV radii and RV semi-axis (cm)."""
    size, px_cm = placement.image_size, placement.pixel_mm / 10.0
    offset = _RV_OFFSET * epi / px_cm                                                     # pixels, per frame
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    d_row, d_col = rows - placement.centre[0], cols - placement.centre[1]
    lv_dist = np.hypot(d_row, d_col)[None]
    # Rotate into the RV frame: "along" points from the LV centre to the RV centre (rows grow downwards).
    cos_a, sin_a = np.float32(np.cos(placement.rv_angle)), np.float32(np.sin(placement.rv_angle))
    along = (d_col * cos_a - d_row * sin_a)[None] - offset[:, None, None].astype(np.float32)
    across = (d_col * sin_a + d_row * cos_a)[None]
    lv_pool = _soft_disc((endo / px_cm).astype(np.float32), lv_dist)
    lv_outer = _soft_disc((epi / px_cm).astype(np.float32), lv_dist)
    semi = (rv_semi / px_cm).astype(np.float32)
    wall = np.float32(_RV_WALL_CM / px_cm)
    rv_cavity = _soft_ellipse(along, across, semi, _RV_ASPECT * semi)
    rv_outer = _soft_ellipse(along, across, semi + wall, _RV_ASPECT * semi + wall)
    fat_px = np.float32(_FAT_CM / px_cm)
    fat = np.maximum(_soft_disc((epi / px_cm).astype(np.float32) + fat_px, lv_dist),
                     _soft_ellipse(along, across, semi + wall + fat_px, _RV_ASPECT * semi + wall + fat_px))
    rv_pool = rv_cavity * (1.0 - lv_outer)
    heart = np.maximum(lv_outer, rv_outer)
    blood_lv, blood_rv, muscle, background, fat_level = tissue
    return (background * (1.0 - fat) + fat_level * np.clip(fat - heart, 0.0, 1.0) + muscle * heart
            + (blood_lv - muscle) * lv_pool + (blood_rv - muscle) * rv_pool)


def render_cine(lv_volume: np.ndarray, rv_volume: np.ndarray, placement: HeartPlacement,
                rng: np.random.Generator, image_noise: float, slices: int = 1) -> CineFrames:
    """Frames ``[S, T, H, W]`` (``slices`` of them, base to apex) for the given per-frame LV and RV volumes (mL)."""
    endo = np.sqrt(lv_volume / (np.pi * placement.lv_length_cm))
    epi = np.sqrt(endo ** 2 + placement.myocardial_volume_ml / (np.pi * placement.myocardial_length_cm))
    area, scale = _crescent_table()
    rv_semi = epi * np.interp(rv_volume / placement.rv_length_cm / epi ** 2, area, scale)   # cm, per frame
    tissue = _tissue(rng, placement.image_size)
    radius_scale = np.sqrt(area_profile(slice_positions(slices)))
    images = []
    for k in radius_scale:  # scaling every radius by k scales the LV, myocardial and RV crescent areas by k^2
        image = _draw_slice(endo * k, epi * k, rv_semi * k, placement, tissue)
        noise = rng.standard_normal((2, *image.shape), dtype=np.float32) * np.float32(image_noise)
        image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)              # Rician magnitude noise
        images.append(np.clip(image, 0.0, 1.0).astype(np.float32))
    return CineFrames(images=np.stack(images), lv_endo_cm=endo, lv_epi_cm=epi,
                      radius_scale=radius_scale)
