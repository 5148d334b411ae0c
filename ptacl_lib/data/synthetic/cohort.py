"""Write a synthetic paired ECG-cine cohort: manifest plus array store.

Each subject gets its own random stream, ``SeedSequence(seed, spawn_key=(index,))``, so subject
``i`` is the same whatever the cohort size; its split (70/15/15) comes from a hash of its id
(``splits.split_of``), so it does not depend on the cohort size either. The first 9 subject ids
already cover all three splits.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ...geometry import GEOMETRY_FIELDS, STORED_DEFAULT, Geometry
from ..schema import ARRAY_PREFIX, DEFAULT_DURATION_S, PHENOTYPES
from ..splits import split_of
from ..store import ArrayStoreWriter, StoreMeta
from .cine import CineFrames, HeartPlacement, drawn_lv_mass, place_heart, render_cine, slice_positions
from .ecg import BEAT_LABELS, EcgRecord, simulate_ecg
from .latent import ECG_LATENTS, AbnormalityRates, ecg_latent_vector, sample_latent
from .mechanics import chamber_timings, ventricular_volume

if TYPE_CHECKING:
    from ..cohort import Cohort

#: 2.0: heart size, habitus, sex, cardiac output, RV forces, orientation and rhythm in the ECG
#: (docs/cohort.md); ``ecg_latents`` and ``beat_labels`` extras. 2.1: several short-axis slices from
#: base to apex (``cine``); one slice draws exactly what 2.0 drew. Frozen: change it with any change to the draws.
GENERATOR_VERSION = "2.1"
MANIFEST_NAME = "manifest.csv"
ARRAYS_DIR = "arrays"
#: Order of the fiducial columns in the ``fiducials`` extra.
FIDUCIALS: tuple[str, ...] = ("p_on", "qrs_on", "r", "qrs_off", "t_end")
#: Sampling rate of the ``volume_trace`` extra (volumes aligned with the ECG).
TRACE_HZ = 50
SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)

EXTRA_DESCRIPTIONS: dict[str, str] = {
    "volumes": "float32 [2, frames]: LV and RV volume (mL) at each cine frame; "
               "frame k lies k/frames of the mean RR after R",
    "rpeaks": "int32 [max_beats]: sample index of each true R maximum at the ECG rate, padded with -1",
    "fiducials": "int32 [max_beats, 5]: p_on, qrs_on, r, qrs_off, t_end samples of the same beats, "
                 "-1 if padded or outside the recording",
    "volume_trace": f"float32 [2, duration_s * {TRACE_HZ}]: LV and RV volume (mL) at {TRACE_HZ} Hz "
                    "aligned with the ECG (each beat's curve stretched to that beat's RR)",
    "heart_placement": "float32 [3]: LV centre row, LV centre column (pixels) and pixel spacing (mm)",
    "ecg_latents": "float32 [n_latents]: the ECG-side latent variables the ECG was drawn from, "
                   "named in attrs['ecg_latents'] (the latent oracle's features)",
    "beat_labels": "int8 [max_beats]: class of each beat in rpeaks, an index into attrs['beat_labels'] "
                   "(N sinus, V premature ventricular, A atrial fibrillation), padded with -1",
}


@dataclass(frozen=True)
class SyntheticOptions:
    """Everything that shapes a synthetic cohort besides its size and seed."""

    geometry: Geometry = STORED_DEFAULT  # what the store holds: ECG rate, frames, frame side, slices
    duration_s: float = DEFAULT_DURATION_S
    ecg_noise_scale: float = 1.0
    image_noise_scale: float = 1.0
    p_dilated: float = 0.07
    p_hypertrophied: float = 0.07
    p_rbbb: float = 0.03
    p_lbbb: float = 0.02
    p_lbbb_low_ef: float = 0.35
    p_af: float = 0.012
    p_pvc: float = 0.06
    workers: int = 1
    id_prefix: str = "SYN"  # subject ids are <prefix><6-digit index>: a held-out cohort takes another prefix

    def __post_init__(self) -> None:
        checks = {
            "frames must be >= 8": self.geometry.frames >= 8,
            "image_size must be >= 32": self.geometry.image_size >= 32,
            "duration_s must be >= 3": self.duration_s >= 3.0,
            "ecg_hz must be >= 200 (the ECG carries 50 Hz mains hum)": self.geometry.ecg_hz >= 200,
            "noise scales must be >= 0": min(self.ecg_noise_scale, self.image_noise_scale) >= 0.0,
            "p_dilated + p_hypertrophied must be <= 1": 0.0 <= self.p_dilated + self.p_hypertrophied <= 1.0,
            "p_af and p_pvc must lie in [0, 1]": 0.0 <= self.p_af <= 1.0 and 0.0 <= self.p_pvc <= 1.0,
            "workers must be >= 1": self.workers >= 1,
        }
        failed = [msg for msg, ok in checks.items() if not ok]
        if failed:
            raise ValueError("invalid synthetic cohort options: " + "; ".join(failed))

    @property
    def rates(self) -> AbnormalityRates:
        return AbnormalityRates(p_dilated=self.p_dilated, p_hypertrophied=self.p_hypertrophied,
                                p_rbbb=self.p_rbbb, p_lbbb=self.p_lbbb, p_lbbb_low_ef=self.p_lbbb_low_ef,
                                p_af=self.p_af, p_pvc=self.p_pvc)

    @property
    def max_beats(self) -> int:
        """R-peak slots per subject: 32 for 10 s, more for longer recordings (up to 180 bpm)."""
        return max(32, int(np.ceil(self.duration_s * 3.0)) + 2)

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.geometry.ecg_hz))


@dataclass(frozen=True)
class SubjectRecord:
    """One simulated subject, ready to be written."""

    ecg: np.ndarray                    # float32 [12, n_samples]
    cine: np.ndarray                   # float32 [S, T, H, W]
    extras: dict[str, np.ndarray]
    row: dict[str, Any]


def _padded(values: np.ndarray, length: int) -> np.ndarray:
    out = np.full((length, *values.shape[1:]), -1, dtype=np.int32)
    out[: values.shape[0]] = values[:length]
    return out


def _measured_phenotypes(volumes: np.ndarray, placement: HeartPlacement, frames: CineFrames) -> dict[str, float]:
    """CMR phenotypes measured from the per-frame volumes and the myocardium that drew the frames."""
    out: dict[str, float] = {}
    for side, curve in zip(("lv", "rv"), volumes.astype(np.float64)):
        edv, esv = float(curve.max()), float(curve.min())
        out.update({f"{side}edv": edv, f"{side}esv": esv, f"{side}sv": edv - esv,
                    f"{side}ef": 100.0 * (edv - esv) / edv})
    ed = int(np.argmax(volumes[0]))
    out["lvm"] = drawn_lv_mass(placement, frames.lv_endo_cm[ed], frames.lv_epi_cm[ed])
    return {name: out[name] for name in PHENOTYPES}


def _fiducial_samples(record: EcgRecord, fs: float, n_samples: int) -> np.ndarray:
    """[recorded beats, 5] fiducial samples (``FIDUCIALS`` order); -1 where outside the recording."""
    b = record.beats
    fid = np.rint(np.stack([b.p_on, b.qrs_on, b.r, b.qrs_off, b.t_end], axis=1)[record.recorded] * fs)
    fid = fid.astype(np.int64)
    fid[:, FIDUCIALS.index("r")] = record.rpeaks
    fid[record.labels != BEAT_LABELS.index("N"), FIDUCIALS.index("p_on")] = -1  # no P wave before a PVC or in AF
    fid[(fid < 0) | (fid >= n_samples)] = -1
    return fid


def simulate_subject(index: int, seed: int, options: SyntheticOptions) -> SubjectRecord:
    """Simulate subject ``index`` of the cohort drawn with ``seed``."""
    latent_rng, ecg_rng, cine_rng = (np.random.default_rng(s)
                                     for s in np.random.SeedSequence(seed, spawn_key=(index,)).spawn(3))
    lat = sample_latent(latent_rng, options.rates)
    fs, g = float(options.geometry.ecg_hz), options.geometry
    record = simulate_ecg(lat, ecg_rng, options.duration_s, fs, options.ecg_noise_scale)
    beats = record.beats
    beat_rr = np.diff(beats.r)
    rr = float(np.mean(np.diff(record.rpeaks)) / fs) if record.rpeaks.size >= 2 else float(np.mean(beat_rr))

    # One cardiac cycle from the R peak, at the subject's mean RR: the cine's time base.
    timings = chamber_timings(lat, beats.r_lag, rr)
    chambers = ((lat.lvedv, lat.lvedv * (1.0 - lat.lvef / 100.0)), (lat.rvedv, lat.rvedv * (1.0 - lat.rvef / 100.0)))
    frame_t = np.arange(g.frames) * rr / g.frames
    volumes = np.stack([ventricular_volume(frame_t, rr, edv, esv, timing)
                        for (edv, esv), timing in zip(chambers, timings)]).astype(np.float32)
    placement = place_heart(lat, cine_rng, g.image_size)
    frames = render_cine(volumes[0].astype(float), volumes[1].astype(float), placement, cine_rng,
                         lat.image_noise * options.image_noise_scale, g.slices)

    # The same curves along the ECG, each beat's cycle stretched to that beat's RR.
    trace_t = np.arange(int(round(options.duration_s * TRACE_HZ))) / TRACE_HZ
    beat = np.searchsorted(beats.r, trace_t, side="right") - 1
    trace = np.stack([ventricular_volume(trace_t - beats.r[beat], beat_rr[beat], edv, esv, timing)
                      for (edv, esv), timing in zip(chambers, timings)]).astype(np.float32)

    subject_id = f"{options.id_prefix}{index + 1:06d}"
    row: dict[str, Any] = {
        "subject_id": subject_id, "split": split_of(subject_id, SPLIT_FRACTIONS),
        "ecg_path": f"{ARRAY_PREFIX}{index}", "cmr_path": f"{ARRAY_PREFIX}{index}",
        **_measured_phenotypes(volumes, placement, frames),
        "age": round(lat.age, 1), "sex": lat.sex, "bsa": round(lat.bsa, 3), "heart_rate": round(60.0 / rr, 2),
        "conduction": lat.conduction, "lvh": lat.lvh, "phenotype_class": lat.phenotype_class,
        "rhythm": "AF" if lat.af else "sinus", "pvc_beats": int((record.labels == BEAT_LABELS.index("V")).sum()),
        "pr_ms": round(lat.pr_ms, 1), "qrs_ms": round(lat.qrs_ms, 1), "qt_ms": round(lat.qt_ms, 1),
        "emd_ms": round(lat.emd_ms, 1), "es_ms": round(1000.0 * timings[0].end_systole, 1),
    }
    extras = {
        "volumes": volumes,
        "rpeaks": _padded(record.rpeaks, options.max_beats),
        "fiducials": _padded(_fiducial_samples(record, fs, options.n_samples), options.max_beats),
        "volume_trace": trace,
        "heart_placement": np.array([*placement.centre, placement.pixel_mm], dtype=np.float32),
        "ecg_latents": ecg_latent_vector(lat),
        "beat_labels": _padded(record.labels, options.max_beats).astype(np.int8),
    }
    return SubjectRecord(ecg=record.signal, cine=frames.images, extras=extras, row=row)


def _store_meta(n_subjects: int, seed: int, options: SyntheticOptions) -> StoreMeta:
    t, k = options.geometry.frames, options.max_beats
    shapes = {"volumes": ((2, t), "float32"), "rpeaks": ((k,), "int32"), "fiducials": ((k, len(FIDUCIALS)), "int32"),
              "volume_trace": ((2, int(round(options.duration_s * TRACE_HZ))), "float32"),
              "heart_placement": ((3,), "float32"), "ecg_latents": ((len(ECG_LATENTS),), "float32"),
              "beat_labels": ((k,), "int8")}
    return StoreMeta(
        n_subjects=n_subjects, geometry=options.geometry, n_samples=options.n_samples,
        extras={name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in shapes.items()},
        attrs={"generator": "ptacl_lib.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
               "options": asdict(options), "fiducials": list(FIDUCIALS), "volume_trace_hz": TRACE_HZ,
               "extras": EXTRA_DESCRIPTIONS, "ecg_latents": list(ECG_LATENTS), "beat_labels": list(BEAT_LABELS),
               "slice_positions": slice_positions(options.geometry.slices).tolist()},
    )


def _single_threaded_blas() -> None:
    """The generator's matrix products are tiny; a threaded BLAS only adds contention (10x slower under load)."""
    threadpool_limits(limits=1, user_api="blas")


def _records(n_subjects: int, seed: int, options: SyntheticOptions) -> Iterator[SubjectRecord]:
    """Subjects in index order, simulated here or in a process pool."""
    make = partial(simulate_subject, seed=seed, options=options)
    if options.workers == 1:
        with threadpool_limits(limits=1, user_api="blas"):
            yield from map(make, range(n_subjects))
        return
    chunk = max(1, min(32, n_subjects // (4 * options.workers)))
    with ProcessPoolExecutor(max_workers=options.workers, initializer=_single_threaded_blas) as pool:
        yield from pool.map(make, range(n_subjects), chunksize=chunk)


def store_geometry_for(geometry: Geometry) -> Geometry:
    """What a synthetic cohort stores for training at ``geometry``: the generator's default (``STORED_DEFAULT``)
    raised where ``geometry`` asks for more, with its slices (``demo`` keeps the default exactly)."""
    raised = {k: max(getattr(STORED_DEFAULT, k), getattr(geometry, k)) for k in GEOMETRY_FIELDS}
    return Geometry("stored", **{**raised, "slices": geometry.slices})


def generate_cohort(out_dir: str | Path, n_subjects: int, seed: int = 0, *, geometry: Geometry = STORED_DEFAULT,
                    progress: bool = True, **options: Any) -> Path:
    """Write ``n_subjects`` synthetic subjects to ``out_dir``, stored at ``geometry``; returns the manifest path.

    ``options`` are the remaining fields of :class:`SyntheticOptions` (duration, noise scales, abnormality
    rates, ``workers``). The store's extras are described in ``EXTRA_DESCRIPTIONS``.
    """
    known = {f.name for f in fields(SyntheticOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown synthetic cohort option(s) {unknown}; known: {sorted(known)}")
    if int(n_subjects) < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    opts = SyntheticOptions(geometry=geometry, **options)
    out = Path(out_dir)
    writer = ArrayStoreWriter(out / ARRAYS_DIR, _store_meta(int(n_subjects), int(seed), opts))
    rows = []
    with tqdm(total=int(n_subjects), disable=not progress, desc="synthetic cohort", unit="subject") as bar:
        for index, rec in enumerate(_records(int(n_subjects), int(seed), opts)):
            writer.write(index, rec.ecg, rec.cine, **rec.extras)
            rows.append(rec.row)
            bar.update()
    writer.flush()
    manifest = out / MANIFEST_NAME
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def true_beats(cohort: Cohort, index: int) -> pd.DataFrame:
    """The true beats of synthetic subject ``index``: columns ``sample`` (R maximum at the cohort's
    ECG rate) and ``label`` (``BEAT_LABELS``: N sinus, V PVC, A atrial fibrillation).

    Raises ``ValueError`` when the cohort's store has no ``beat_labels`` (not a generator >= 2.0 cohort).
    """
    peaks, labels = cohort.extra("rpeaks", index), cohort.extra("beat_labels", index)
    if peaks is None or labels is None:
        raise ValueError(f"{cohort.manifest_path}: subject {index} has no 'rpeaks'/'beat_labels' extras "
                         "(a synthetic cohort of generator version >= 2.0 has both)")
    keep = peaks >= 0
    return pd.DataFrame({"sample": peaks[keep].astype(np.int64),
                         "label": np.asarray(BEAT_LABELS, dtype=object)[labels[keep].astype(np.int64)]})
