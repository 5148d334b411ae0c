"""Input geometry: the ECG rate, cine frames, frame size and short-axis slices a model is trained on.

One named, recorded setting (torch-free, so the CLI starts fast):

* ``demo``: 10 s ECG at 100 Hz, 25 frames of 32 x 32 pixels, 1 mid-ventricular slice. The CPU demo
  and the ``small`` preset use it; it is what every run before the geometry existed was trained on.
* ``ukb``: 10 s ECG at 500 Hz (the UK Biobank CardioSoft rate), 50 frames (the UKB cine's own count),
  96 x 96 pixels after the heart crop, 3 short-axis slices (basal, mid, apical). ``base`` and the
  ``gpu`` demo scale use it.

``--geometry`` picks one (empty: the model preset's, ``MODEL_GEOMETRY``); ``--ecg-hz``, ``--frames``,
``--image-size`` and ``--slices`` override single fields (0: the geometry's). A run records the
resolved values in ``config.json``; resume and ``init_from`` refuse another geometry, naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: The named geometries: ECG rate (Hz), cine frames, frame side (pixels), short-axis slices.
GEOMETRIES: dict[str, dict[str, int]] = {
    "demo": {"ecg_hz": 100, "frames": 25, "image_size": 32, "slices": 1},
    "ukb": {"ecg_hz": 500, "frames": 50, "image_size": 96, "slices": 3},
}
GEOMETRY_NAMES: tuple[str, ...] = tuple(GEOMETRIES)
#: The geometry a model preset trains on when none is named.
MODEL_GEOMETRY: dict[str, str] = {"small": "demo", "base": "ukb"}
#: The fields a run's geometry is compared on (the override flags' names).
GEOMETRY_FIELDS: tuple[str, ...] = ("ecg_hz", "frames", "image_size", "slices")


@dataclass(frozen=True)
class Geometry:
    """A resolved input geometry (``name`` is the preset it started from)."""

    name: str
    ecg_hz: int
    frames: int
    image_size: int
    slices: int

    def __post_init__(self) -> None:
        bad = [f"{k}={getattr(self, k)}" for k in GEOMETRY_FIELDS if int(getattr(self, k)) < 1]
        if bad:
            raise ValueError(f"input geometry fields must be >= 1, got {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the ``geometry`` entry of a run's ``config.json``)."""
        return asdict(self)

    def changes(self, other: "Geometry") -> list[str]:
        """The ``GEOMETRY_FIELDS`` in which ``other`` differs from this geometry."""
        return [k for k in GEOMETRY_FIELDS if getattr(self, k) != getattr(other, k)]


def resolve_geometry(name: str = "", model: str = "small", *, ecg_hz: int = 0, frames: int = 0,
                     image_size: int = 0, slices: int = 0) -> Geometry:
    """The geometry ``name`` (empty: ``model``'s, ``MODEL_GEOMETRY``) with the non-zero overrides applied."""
    name = name or MODEL_GEOMETRY.get(model, "demo")
    if name not in GEOMETRIES:
        raise ValueError(f"unknown input geometry {name!r}; choose from {GEOMETRY_NAMES}")
    overrides = {k: int(v) for k, v in zip(GEOMETRY_FIELDS, (ecg_hz, frames, image_size, slices)) if v}
    negative = [f"{k}={v}" for k, v in overrides.items() if v < 0]
    if negative:
        raise ValueError(f"input geometry overrides must be >= 0 (0: the geometry's own), got {', '.join(negative)}")
    return replace(Geometry(name=name, **GEOMETRIES[name]), **overrides)


def geometry_of(settings: Any) -> Geometry:
    """The resolved geometry of a config that carries ``model``, ``geometry`` and the override fields
    (``TrainConfig``, ``StudyConfig``)."""
    return resolve_geometry(settings.geometry, settings.model,
                            **{k: getattr(settings, k) for k in GEOMETRY_FIELDS})


def geometry_from_record(record: dict[str, Any]) -> Geometry:
    """A geometry from a saved ``geometry`` entry (unknown keys ignored)."""
    names = {f.name for f in fields(Geometry)}
    return Geometry(**{k: v for k, v in record.items() if k in names})


def geometry_field_metadata() -> dict[str, dict[str, Any]]:
    """CLI help of the geometry fields, shared by ``TrainConfig`` and ``StudyConfig``."""
    return {
        "geometry": {"help": "input geometry: demo (100 Hz, 25 frames, 32 px, 1 slice) or ukb (500 Hz, 50 frames, "
                             "96 px, 3 slices); empty: the model preset's (small: demo, base: ukb)",
                     "choices": GEOMETRY_NAMES},
        "ecg_hz": {"help": "override: ECG rate the model reads (Hz); 0: the geometry's"},
        "frames": {"help": "override: cine frames per cycle; 0: the geometry's"},
        "image_size": {"help": "override: cine frame side in pixels; 0: the geometry's"},
        "slices": {"help": "override: short-axis slices (base to apex); 0: the geometry's"},
    }
