"""Input geometry: the ECG rate, cine frames, frame size and short-axis slices a model is trained on.

One object, ``Geometry``, resolved once where the command line or a notebook's parameters are read, and
passed as it is to preprocessing, the model config, the cache key, the store writers and the run record
(torch-free, so the CLI starts fast). Its four numbers have these names everywhere in the library:
``ecg_hz``, ``frames``, ``image_size`` and ``slices``.

The named geometries (``GEOMETRIES``):

* ``demo``: 10 s ECG at 100 Hz, 25 frames of 32 x 32 pixels, 1 mid-ventricular slice. The CPU demo
  and the ``small`` preset use it; it is what every run before the geometry existed was trained on.
* ``ukb``: 10 s ECG at 500 Hz (the UK Biobank CardioSoft rate), 50 frames (the UKB cine's own count),
  96 x 96 pixels after the heart crop, 3 short-axis slices (basal, mid, apical). ``base``, the ``gpu``
  demo scale and ``prepare-ukb`` use it.

``--geometry`` picks one (empty: the model preset's, ``MODEL_GEOMETRY``); ``--ecg-hz``, ``--frames``,
``--image-size`` and ``--slices`` override single fields (0: the geometry's). A run and a study record
the resolved geometry once; resume and ``init_from`` compare that record and name the differing field.
A cohort stores its arrays at a geometry too (``StoreMeta.geometry``), at or above what is trained on.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: The fields a geometry is compared on, in this order (the override flags' names).
GEOMETRY_FIELDS: tuple[str, ...] = ("ecg_hz", "frames", "image_size", "slices")
#: What each field counts, for messages ("50 cine frames where 60 are asked").
FIELD_UNITS: dict[str, str] = {"ecg_hz": "Hz ECG", "frames": "cine frames", "image_size": "pixel frames",
                               "slices": "short-axis slice(s)"}


@dataclass(frozen=True)
class Geometry:
    """The four numbers of an input geometry. ``name`` is the preset it started from and takes no part in
    comparisons: two geometries with the same numbers are equal."""

    name: str = field(compare=False)
    ecg_hz: int
    frames: int
    image_size: int
    slices: int

    def __post_init__(self) -> None:
        for k in GEOMETRY_FIELDS:
            object.__setattr__(self, k, int(getattr(self, k)))
        bad = [f"{k}={getattr(self, k)}" for k in GEOMETRY_FIELDS if getattr(self, k) < 1]
        if bad:
            raise ValueError(f"input geometry fields must be >= 1, got {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the ``geometry`` entry of ``config.json``, ``study_config.json``, ``store.json``)."""
        return asdict(self)

    def numbers(self) -> dict[str, int]:
        """The four numbers without the name (what a cache key or a comparison uses)."""
        return {k: getattr(self, k) for k in GEOMETRY_FIELDS}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Geometry":
        """A geometry from its saved form (``name`` optional; unknown keys ignored)."""
        missing = [k for k in GEOMETRY_FIELDS if k not in record]
        if missing:
            raise ValueError(f"a saved input geometry lacks {missing}: {record}")
        return cls(name=str(record.get("name", "custom")), **{k: record[k] for k in GEOMETRY_FIELDS})

    def changes(self, other: "Geometry") -> list[str]:
        """The ``GEOMETRY_FIELDS`` in which ``other`` differs from this geometry."""
        return [k for k in GEOMETRY_FIELDS if getattr(self, k) != getattr(other, k)]

    def shortfalls(self, asked: "Geometry") -> list[str]:
        """The fields in which this (stored) geometry lies below ``asked``, as phrases naming the flag."""
        return [f"{getattr(self, k):g} {FIELD_UNITS[k]} where {getattr(asked, k):g} are asked "
                f"(--{k.replace('_', '-')})" for k in GEOMETRY_FIELDS if getattr(self, k) < getattr(asked, k)]

    def overridden(self, **overrides: int) -> "Geometry":
        """This geometry with the non-zero ``overrides`` applied (the name stays: the preset it started from)."""
        unknown = sorted(set(overrides) - set(GEOMETRY_FIELDS))
        if unknown:
            raise ValueError(f"unknown input geometry field(s) {unknown}; known: {GEOMETRY_FIELDS}")
        negative = [f"{k}={v}" for k, v in overrides.items() if int(v) < 0]
        if negative:
            raise ValueError(f"input geometry overrides must be >= 0 (0: the geometry's own), got "
                             f"{', '.join(negative)}")
        return replace(self, **{k: int(v) for k, v in overrides.items() if v})

    def describe(self, note: str = "") -> str:
        """One phrase: ``ukb (500 Hz, 50 frames, 96 px, 3 slices)``; a ``note`` ends the bracket after a ``;``."""
        return (f"{self.name} ({self.ecg_hz} Hz, {self.frames} frames, {self.image_size} px, "
                f"{self.slices} slice{'s' if self.slices > 1 else ''}{'; ' + note if note else ''})")


#: The named geometries.
GEOMETRIES: dict[str, Geometry] = {
    "demo": Geometry("demo", ecg_hz=100, frames=25, image_size=32, slices=1),
    "ukb": Geometry("ukb", ecg_hz=500, frames=50, image_size=96, slices=3),
}
GEOMETRY_NAMES: tuple[str, ...] = tuple(GEOMETRIES)
#: The geometry a model preset trains on when none is named.
MODEL_GEOMETRY: dict[str, str] = {"small": "demo", "base": "ukb"}
#: The default of every config that holds a geometry (``PreprocessConfig``, ``ModelConfig``).
DEMO = GEOMETRIES["demo"]
#: What the synthetic generator stores by default, and what a manifest of plain files is read at: ``ukb``'s
#: ECG rate and frames, frames of 64 px and one slice. Every field is at or above ``demo``'s, so the CPU demo
#: trains on it, and the generator draws a 32 px input's pixels from 2 x 2 drawn ones.
STORED_DEFAULT = Geometry("stored", ecg_hz=GEOMETRIES["ukb"].ecg_hz, frames=GEOMETRIES["ukb"].frames,
                          image_size=64, slices=1)


def resolve_geometry(name: str = "", model: str = "small", **overrides: int) -> Geometry:
    """The geometry ``name`` (empty: ``model``'s, ``MODEL_GEOMETRY``) with the non-zero ``overrides`` applied."""
    name = name or MODEL_GEOMETRY.get(model, "demo")
    if name not in GEOMETRIES:
        raise ValueError(f"unknown input geometry {name!r}; choose from {GEOMETRY_NAMES}")
    return GEOMETRIES[name].overridden(**overrides)


def as_geometry(value: Geometry | str | dict[str, Any] | None, model: str = "small") -> Geometry:
    """A config's ``geometry`` value as a ``Geometry``: itself, a name, a saved dict, or None (the model's)."""
    if isinstance(value, Geometry):
        return value
    if isinstance(value, dict):
        return Geometry.from_dict(value)
    return resolve_geometry(value or "", model)


def saved_geometry(record: dict[str, Any], model: str = "small") -> Geometry:
    """The geometry of a saved ``config.json`` or ``study_config.json``, whichever version wrote it.

    The current format holds ``geometry`` as a dict. Earlier ones held a name with four override fields
    (studies), the resolved ``input_geometry`` (runs), or only the ``preprocess`` entry (runs trained before
    the geometry had a name, always on ``demo``'s ECG rate, frames and size, one slice)."""
    value = record.get("geometry")
    if isinstance(value, dict):
        return Geometry.from_dict(value)
    if isinstance(record.get("input_geometry"), dict):
        return Geometry.from_dict(record["input_geometry"])
    if isinstance(value, str) and "preprocess" not in record:
        return resolve_geometry(value, model, **{k: int(record.get(k) or 0) for k in GEOMETRY_FIELDS})
    old = record.get("preprocess") or {}
    return Geometry("demo" if not old else "custom", ecg_hz=old.get("target_fs", DEMO.ecg_hz),
                    frames=old.get("n_frames", DEMO.frames), image_size=old.get("image_size", DEMO.image_size),
                    slices=old.get("n_slices", DEMO.slices))


# ----------------------------------------------------------------------------- the command line

#: The metadata of a config's ``geometry`` field (``TrainConfig``, ``StudyConfig``): ``cli.add_dataclass_arguments``
#: puts ``--geometry`` and the four overrides on the command line for it and resolves them into one object.
GEOMETRY_FIELD: dict[str, object] = {"geometry": True, "help": "the input geometry; None: the model preset's"}

GEOMETRY_HELP = (f"input geometry: {' or '.join(g.describe() for g in GEOMETRIES.values())}; empty: the model "
                 f"preset's ({', '.join(f'{model}: {name}' for model, name in MODEL_GEOMETRY.items())})")
_OVERRIDE_HELP = {"ecg_hz": "ECG rate (Hz)", "frames": "cine frames per cycle",
                  "image_size": "cine frame side in pixels", "slices": "short-axis slices (base to apex)"}


def add_geometry_arguments(parser: argparse.ArgumentParser, default: str = "",
                           help: str = GEOMETRY_HELP) -> None:
    """``--geometry NAME`` and the four single-field overrides (``--ecg-hz``, ``--frames``, ``--image-size``,
    ``--slices``; 0: the geometry's), read back by ``geometry_from_args``."""
    group = parser.add_argument_group("input geometry")
    group.add_argument("--geometry", default=default, choices=("", *GEOMETRY_NAMES), help=help)
    for name in GEOMETRY_FIELDS:
        group.add_argument("--" + name.replace("_", "-"), type=int, default=0,
                           help=f"override: {_OVERRIDE_HELP[name]}; 0: the geometry's")


def geometry_from_args(args: argparse.Namespace, model: str = "small") -> Geometry:
    """The one place a command's geometry flags are resolved (see ``add_geometry_arguments``)."""
    return resolve_geometry(args.geometry, model, **{k: getattr(args, k) for k in GEOMETRY_FIELDS})
