"""``prepare-ukb``: UK Biobank downloads -> manifest + array store, the same format as the synthetic cohort.

Inputs: a folder of ECGs (field 20205 ``EID_20205_2_0.xml``; DICOM ``.dcm`` and WFDB ``.hea`` also
work), a folder of cines (field 20209 ``EID_20209_2_0.zip``, a DICOM folder, or ``sa.nii.gz``) and
the IDP CSV (fields 24100-24109). The subject id is the UKB ``eid`` at the start of a
``EID_FIELD_INSTANCE_ARRAY`` name (only ``instance`` is used, lowest array index first), else the
file or folder name without extension.

The output's geometry (``ptacl_lib.geometry``: ECG rate, cine frames, frame side, slices) is one setting,
``geometry`` (``--geometry``, default ``ukb``: 500 Hz, 50 frames, 96 px, 3 slices), with single-field overrides
(``--ecg-hz``, ``--frames``, ``--image-size``, ``--slices``). Train at it or at any geometry below it.

Per subject (in worker processes):
- ECG: read in mV at the file's rate, resampled to the geometry's ``ecg_hz`` (polyphase), then the first
  ``duration_s`` seconds are kept. A strip short by at most ``SHORTFALL_TOLERANCE`` of the
  duration (resampling rounding) is padded by repeating its last sample; a shorter one is skipped.
- ECG quality and rhythm (``ecg_quality``, ``rhythm``): flat, saturated and noisy leads, arm-lead
  reversal, a 0-1 score and the noise level; R peaks (consensus detector) and the beats that phase
  pooling will leave out. A subject scoring below ``min_ecg_quality`` is skipped (``ecg_quality``);
  every other subject is kept and its manifest row carries ``ecg_quality``, ``ecg_noise``,
  ``ecg_flags``, ``n_beats``, ``n_excluded_beats``, ``median_rr_ms`` and ``rhythm_flag``
  (``too_few_beats`` below ``rhythm.MIN_USABLE_BEATS`` usable beats). The summary counts them.
- Cine: the geometry's N slices spread over the stack by slice position (``readers.cine_ops.spread_slices``:
  the centre slice of each of N equal runs of the sorted stack; one slice is the mid-ventricular one, or
  ``slice_index``), all cropped round the middle slice's heart centre (``readers.cine_ops``), resampled to the
  geometry's frames over the cycle and pixels, and scaled to [0, 1] together -> uint8: the store holds
  ``[N, frames, image_size, image_size]`` per subject, one prepare path for one slice and many.

The main process writes rows into a preallocated memory-mapped store (row = the subject's
position in the sorted list of subjects that have both files), so memory stays flat as the
cohort grows; at most ``2 * workers`` subjects are in flight.

Rows of skipped subjects stay unused (zeros) in the store; no manifest row points at them.

Skip reasons (``errors.csv``): the readers' codes (``readers.READER_REASONS``) plus
``PAIRING_REASONS`` (missing_ecg, missing_cmr, missing_idp, incomplete_idp, implausible_idp), ``ecg_too_short``,
``ecg_quality`` (the score, the flags and the noise level in ``detail``) and ``unreadable`` (an unexpected
error inside a reader, with its message).

IDP plausibility (``phenotype_checks``), before any file is read: a subject with an impossible or
contradictory phenotype (an EF of 105 %, a negative mass, an ESV above its EDV, ...) is skipped as
``implausible_idp``, its ``detail`` naming each field and value; a value past the wide reference limits is
kept and named in the manifest's ``phenotype_flags`` column (e.g. ``lvm_extreme_high``).

Resume and atomicity: state lives in ``OUT/.prepare/``. Every ``commit_every`` subjects the
store is flushed, and only then are those subjects' manifest rows appended to ``done.jsonl``
(flushed and fsynced). A re-run with the same inputs and settings skips subjects listed there;
a subject whose arrays were written but not yet marked is simply redone. ``manifest.csv`` and
``errors.csv`` are written through a temporary file and ``os.replace`` at the end of a run, so an
interrupted run never leaves a manifest with unfinished rows. Failed subjects are retried on a
re-run (their files may have been fixed).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import os
import re
import time
import typing
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..atomic import replacing
from ..geometry import GEOMETRIES, GEOMETRY_FIELDS, Geometry, add_geometry_arguments, as_geometry, geometry_from_args
from .cohort import STORE_DIR
from .ecg_quality import assess_ecg_quality
from .phenotype_checks import FLAGS_COLUMN, details_by_row, extreme_flags, find_implausible
from .readers import (
    ECG_SUFFIXES,
    ReaderError,
    read_cine_slices,
    read_ecg,
    read_idp_csv,
    standardise_stack,
)
from .rhythm import rhythm_summary
from .schema import ARRAY_PREFIX, DEFAULT_DURATION_S, PHENOTYPES
from .splits import DEFAULT_FRACTIONS, check_fractions, split_of
from .store import ECG_FILE, ArrayStoreWriter, StoreMeta

MANIFEST = "manifest.csv"
ERRORS = "errors.csv"
STATE_DIR = ".prepare"
#: A strip may fall short of ``duration_s`` by this fraction (resampling rounding) and be edge-padded.
SHORTFALL_TOLERANCE = 0.01
PAIRING_REASONS: tuple[str, ...] = ("missing_ecg", "missing_cmr", "missing_idp", "incomplete_idp", "implausible_idp")
_UKB_NAME = re.compile(r"^(?P<eid>\d+)_(?P<field>\d+)_(?P<instance>\d+)_(?P<array>\d+)")
_CINE_SUFFIXES = (".zip", ".nii.gz", ".nii")


def _option(default: Any, help: str, **argparse_extra: Any) -> Any:
    """A dataclass field that also carries its command-line help (``add_prepare_arguments``)."""
    return field(default=default, metadata={"help": help, **argparse_extra})


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that shapes the output; a resumed run must use the same values.

    The one declaration of prepare-ukb's settings: ``prepare_ukb``'s keyword arguments and the
    ``ptacl prepare-ukb`` options are built from these fields (and ``RunOptions``); the geometry's flags come
    from ``geometry.add_geometry_arguments``.
    """

    geometry: Geometry = field(default=GEOMETRIES["ukb"], metadata={"geometry": True})
    duration_s: float = _option(DEFAULT_DURATION_S, "ECG seconds kept")
    fractions: tuple[float, float, float] = _option(DEFAULT_FRACTIONS, "split fractions", nargs=3,
                                                    metavar=("TRAIN", "VAL", "TEST"))
    min_frames: int = _option(10, "fewer cine frames than this: subject skipped")
    crop_mm: float = _option(140.0, "side of the heart crop in mm")
    slice_index: int | None = _option(None, "short-axis slice (default: mid-ventricular); only with --slices 1")
    instance: int = _option(2, "UKB instance (2 = first imaging visit)")
    min_ecg_quality: float = _option(0.5, "ECG quality score (0-1, ptacl_lib.data.ecg_quality) below which a "
                                          "subject is skipped (reason ecg_quality); 0 keeps every subject, "
                                          "flagged in the manifest")

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        object.__setattr__(self, "geometry", as_geometry(self.geometry))
        if self.geometry.slices > 1 and self.slice_index is not None:
            raise ValueError("slice_index picks one slice; it cannot be combined with slices > 1")

    def record(self) -> dict[str, Any]:
        """The settings as saved for resumption."""
        return {**asdict(self), "geometry": self.geometry.numbers()}

    @property
    def n_samples(self) -> int:
        """ECG samples per subject in the store."""
        return int(round(self.duration_s * self.geometry.ecg_hz))


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, not what it writes (a resumed run may change these)."""

    workers: int = _option(1, "parallel reader processes")
    commit_every: int = _option(16, "subjects between two durable commits of the store and done list")
    progress: bool = _option(True, "progress bar")


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--option`` per field of ``PrepareSettings`` and ``RunOptions`` (help from the field), and the
    geometry's flags (default ``ukb``; read back by ``prepare_options``).

    Use with ``argument_default=argparse.SUPPRESS`` so that options left out keep the dataclass defaults.
    """
    add_geometry_arguments(parser, default="ukb", help=f"the store's input geometry: "
                                                       f"{GEOMETRIES['ukb'].describe('the default')} or demo; "
                                                       "train at it or below it")
    hints = {**typing.get_type_hints(PrepareSettings), **typing.get_type_hints(RunOptions)}
    for option in (*fields(PrepareSettings), *fields(RunOptions)):
        if option.metadata.get("geometry"):
            continue
        extra = {k: v for k, v in option.metadata.items() if k != "help"}
        flag, kind = "--" + option.name.replace("_", "-"), hints[option.name]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=option.metadata["help"])
            continue
        if typing.get_origin(kind) is tuple:
            kind = typing.get_args(kind)[0]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        parser.add_argument(flag, type=base, help=option.metadata["help"], **extra)


def prepare_options(args: argparse.Namespace, paths: tuple[str, ...]) -> dict[str, Any]:
    """``prepare_ukb``'s keyword options from parsed ``add_prepare_arguments`` (the geometry resolved once)."""
    options = {k: v for k, v in vars(args).items() if k not in (*paths, *GEOMETRY_FIELDS)}
    return {**options, "geometry": geometry_from_args(args)}


def split_options(options: dict[str, Any]) -> tuple[PrepareSettings, RunOptions]:
    """Keyword options -> ``(PrepareSettings, RunOptions)``; an unknown name is a clear error. ``geometry`` may be
    a ``Geometry`` or a name, and ``ecg_hz``, ``frames``, ``image_size``, ``slices`` override its fields."""
    settings_names = {f.name for f in fields(PrepareSettings)}
    run_names = {f.name for f in fields(RunOptions)}
    unknown = sorted(set(options) - settings_names - run_names - set(GEOMETRY_FIELDS))
    if unknown:
        known = sorted(settings_names | run_names | set(GEOMETRY_FIELDS))
        raise TypeError(f"prepare_ukb got unknown option(s) {unknown}; known: {known}")
    overrides = {k: options[k] for k in GEOMETRY_FIELDS if k in options}
    geometry = as_geometry(options.get("geometry", GEOMETRIES["ukb"])).overridden(**overrides)
    options = {**options, "geometry": geometry}
    return (PrepareSettings(**{k: v for k, v in options.items() if k in settings_names}),
            RunOptions(**{k: v for k, v in options.items() if k in run_names}))


@dataclass(frozen=True)
class SubjectTask:
    """One subject's files and its row in the store."""

    subject_id: str
    row: int
    ecg: Path
    cmr: Path


@dataclass(frozen=True)
class SubjectFailure:
    """Why one subject was skipped (a row of ``errors.csv``)."""

    subject_id: str
    file: str
    reason: str
    detail: str


@dataclass(frozen=True)
class SubjectArrays:
    """One subject ready to write: ECG float32 [12, n_samples] mV, cine uint8 [S, T, H, W], manifest extras."""

    task: SubjectTask
    ecg: np.ndarray
    cmr: np.ndarray
    columns: dict[str, Any]


@dataclass
class PrepareSummary:
    """What a run did: subjects ok (this run and before), skipped and why."""

    manifest: Path
    errors: Path
    n_ok: int
    n_resumed: int
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    quality_flagged: int = 0  #: subjects written this run with an ECG quality flag
    too_few_beats: int = 0  #: subjects written this run with rhythm_flag too_few_beats
    beats: int = 0  #: complete beats of the subjects written this run
    excluded_beats: int = 0  #: of which left out of phase pooling (rhythm rule)

    @property
    def n_skipped(self) -> int:
        """Subjects listed in errors.csv."""
        return sum(self.skipped.values())

    def __str__(self) -> str:
        lines = [f"prepare-ukb: {self.n_ok} subjects ok ({self.n_resumed} from an earlier run), "
                 f"{self.n_skipped} skipped, {self.seconds:.1f} s", f"  manifest: {self.manifest}",
                 f"  ECG (subjects written this run): {self.quality_flagged} with a quality flag, "
                 f"{self.too_few_beats} with too few regular beats; {self.excluded_beats} of {self.beats} beats "
                 f"left out of phase pooling (columns ecg_flags, rhythm_flag, n_excluded_beats)"]
        if self.skipped:
            lines.append(f"  skipped subjects: {self.errors}")
            lines += [f"    {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        return "\n".join(lines)


def subject_id_of(path: Path, instance: int) -> str | None:
    """The subject id of an input file or folder; None for a UKB name of another instance."""
    match = _UKB_NAME.match(path.name)
    if match:
        return match["eid"] if int(match["instance"]) == instance else None
    name = path.name
    for suffix in (*_CINE_SUFFIXES, *ECG_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _index_inputs(paths: Iterable[Path], instance: int) -> dict[str, Path]:
    """subject id -> input, the lowest UKB array index (sorted name) winning."""
    found: dict[str, Path] = {}
    for path in sorted(paths):
        subject = subject_id_of(path, instance)
        if subject is not None and subject not in found:
            found[subject] = path
    return found


def find_inputs(ecg_dir: Path, cmr_dir: Path, instance: int) -> tuple[dict[str, Path], dict[str, Path]]:
    """ECG files and cine inputs (zips, NIfTIs, folders) by subject id."""
    for directory in (ecg_dir, cmr_dir):
        if not directory.is_dir():
            raise FileNotFoundError(f"input folder does not exist: {directory}")
    ecgs = (p for p in ecg_dir.iterdir() if p.is_file() and p.suffix.lower() in ECG_SUFFIXES)
    cines = (p for p in cmr_dir.iterdir() if p.is_dir() or p.name.lower().endswith(_CINE_SUFFIXES))
    return _index_inputs(ecgs, instance), _index_inputs(cines, instance)


def fit_duration(signal: np.ndarray, n_samples: int, source: str) -> np.ndarray:
    """The first ``n_samples`` of [12, S]; a shortfall within ``SHORTFALL_TOLERANCE`` is edge-padded."""
    length = signal.shape[1]
    if length >= n_samples:
        return signal[:, :n_samples]
    if length < n_samples * (1.0 - SHORTFALL_TOLERANCE):
        raise ReaderError(source, "ecg_too_short", f"{length} samples after resampling, need {n_samples}")
    return np.pad(signal, ((0, 0), (0, n_samples - length)), mode="edge")


def load_subject(task: SubjectTask, settings: PrepareSettings) -> SubjectArrays | SubjectFailure:
    """Read, check and standardise one subject (runs in a worker); a failure names the file and reason."""
    current, g = task.ecg, settings.geometry
    try:
        record = read_ecg(task.ecg).resampled(g.ecg_hz)
        ecg = fit_duration(record.signal, settings.n_samples, str(task.ecg))
        if not np.isfinite(ecg).all():
            raise ReaderError(task.ecg, "corrupt_file", "ECG holds NaN or infinite samples")
        quality = assess_ecg_quality(ecg, g.ecg_hz)
        if quality.score < settings.min_ecg_quality:
            raise ReaderError(task.ecg, "ecg_quality", f"score {quality.score:.2f} < {settings.min_ecg_quality} "
                              f"(flags: {';'.join(quality.flags) or 'none'}; noise {quality.noise_level:.2f})")
        rhythm = rhythm_summary(quality.rpeaks, g.ecg_hz)
        current = task.cmr
        cines = read_cine_slices(task.cmr, g.slices, slice_index=settings.slice_index, min_frames=settings.min_frames)
        frames = standardise_stack(cines, g.frames, g.image_size, settings.crop_mm)
    except ReaderError as err:
        return SubjectFailure(task.subject_id, str(current), err.reason, err.detail)
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the cohort; it is reported
        return SubjectFailure(task.subject_id, str(current), "unreadable", f"{type(err).__name__}: {err}")
    columns = {"heart_rate": record.meta.get("intervals", {}).get("VentricularRate", np.nan),
               "ecg_source": str(task.ecg), "cmr_source": str(task.cmr),
               "cmr_slice_location": cines[len(cines) // 2].slice_location, **quality.columns(), **rhythm.columns()}
    if len(cines) > 1:
        columns["cmr_slice_locations"] = ";".join(f"{c.slice_location:g}" for c in cines)
    cmr = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
    return SubjectArrays(task, ecg.astype(np.float32), cmr, columns)


class _Progress:
    """The state folder: plan, settings and the append-only done list."""

    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir / STATE_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.plan_path = self.root / "plan.csv"
        self.settings_path = self.root / "settings.json"
        self.done_path = self.root / "done.jsonl"

    def start(self, plan: list[SubjectTask], settings: PrepareSettings) -> bool:
        """Record a new plan, or check it matches the earlier one; True when resuming."""
        planned = pd.DataFrame({"subject_id": [t.subject_id for t in plan], "row": [t.row for t in plan],
                                "ecg": [str(t.ecg) for t in plan], "cmr": [str(t.cmr) for t in plan]})
        wanted = json.dumps(settings.record(), sort_keys=True)
        if self.plan_path.exists() and self.settings_path.exists():
            earlier = pd.read_csv(self.plan_path, dtype=str)
            if self.settings_path.read_text() != wanted:
                raise ValueError(f"{self.root.parent} was prepared with other settings "
                                 f"({self.settings_path.read_text()}); use a new output folder")
            if earlier["subject_id"].tolist() != planned["subject_id"].tolist():
                added = sorted(set(planned["subject_id"]) - set(earlier["subject_id"]))
                gone = sorted(set(earlier["subject_id"]) - set(planned["subject_id"]))
                raise ValueError(f"the inputs changed since {self.root.parent} was started ({len(added)} new "
                                 f"subjects e.g. {added[:3]}, {len(gone)} gone e.g. {gone[:3]}); "
                                 "use a new output folder")
            self._drop_torn_tail()
            return True
        _write_atomic_csv(planned, self.plan_path)
        self.settings_path.write_text(wanted)
        self.done_path.write_text("")
        return False

    def _drop_torn_tail(self) -> None:
        """Cut a last line left unfinished by a crash, so the next append starts on a line of its own."""
        if not self.done_path.exists():
            return
        with self.done_path.open("rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def done_offsets(self) -> dict[str, int]:
        """Finished subject -> byte offset of its manifest row in done.jsonl (unparsable lines are skipped).

        Only offsets are kept in memory, so the main process stays small however large the cohort.
        """
        offsets: dict[str, int] = {}
        with self.done_path.open("rb") as handle:
            offset = handle.tell()
            for line in iter(handle.readline, b""):
                try:
                    offsets[str(json.loads(line)["subject_id"])] = offset
                except (json.JSONDecodeError, KeyError, TypeError):
                    pass
                offset = handle.tell()
        return offsets

    def mark_done(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Append finished rows durably (call only after their arrays are flushed); returns their offsets."""
        offsets: dict[str, int] = {}
        if not rows:
            return offsets
        with self.done_path.open("ab") as handle:
            for row in rows:
                offsets[row["subject_id"]] = handle.tell()
                handle.write(json.dumps(row, default=float).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return offsets

    def write_manifest(self, plan: list[SubjectTask], done: dict[str, int], path: Path) -> int:
        """Write the finished rows in store order to ``path`` atomically, streaming from done.jsonl."""
        count = 0
        with replacing(path) as temporary, self.done_path.open("rb") as source, \
                temporary.open("w", newline="") as target:
            writer: csv.DictWriter | None = None
            for task in plan:
                if task.subject_id not in done:
                    continue
                source.seek(done[task.subject_id])
                row = json.loads(source.readline())
                if writer is None:
                    writer = csv.DictWriter(target, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                count += 1
            if writer is None:
                target.write(",".join(("subject_id", "split", "ecg_path", "cmr_path", *PHENOTYPES)) + "\n")
        return count


def _write_atomic_csv(table: pd.DataFrame, path: Path) -> None:
    """``table`` as CSV at ``path``, atomically."""
    with replacing(path) as temporary:
        table.to_csv(temporary, index=False)


def _open_store(root: Path, meta: StoreMeta, resuming: bool) -> ArrayStoreWriter:
    """A new preallocated store, or the earlier run's store (checked to have the planned shape)."""
    if resuming and not (root / ECG_FILE).exists():
        raise ValueError(f"{root} is missing although {root.parent / STATE_DIR} records a started run; "
                         "use a new output folder")
    writer = ArrayStoreWriter(root, meta, overwrite=not resuming)
    expected = (meta.n_subjects, len(meta.leads), meta.n_samples)
    if writer.ecg.shape != expected:
        raise ValueError(f"{root / ECG_FILE} has shape {writer.ecg.shape}, this run needs {expected}")
    return writer


def _run(tasks: list[SubjectTask], settings: PrepareSettings,
         workers: int) -> Iterator[SubjectArrays | SubjectFailure]:
    """Results as they finish, at most ``2 * workers`` subjects in flight (inline when ``workers == 1``)."""
    if workers <= 1:
        for task in tasks:
            yield load_subject(task, settings)
        return
    pool = cf.ProcessPoolExecutor(max_workers=workers)
    try:
        queue = iter(tasks)
        pending = {pool.submit(load_subject, t, settings) for t in _take(queue, 2 * workers)}
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                yield future.result()
            pending |= {pool.submit(load_subject, t, settings) for t in _take(queue, len(finished))}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _take(items: Iterator[SubjectTask], n: int) -> list[SubjectTask]:
    return [task for _, task in zip(range(n), items)]


def _phenotype_failures(tasks: list[SubjectTask], idp: pd.DataFrame,
                        idp_csv: Path) -> tuple[list[SubjectTask], list[SubjectFailure]]:
    """Split tasks into those with a complete, plausible IDP row and failures (missing or incomplete row, or
    impossible or contradictory phenotypes: ``phenotype_checks``)."""
    by_row = details_by_row(find_implausible(idp))
    implausible = dict(zip(idp.index[by_row.index], by_row))
    ready: list[SubjectTask] = []
    failures: list[SubjectFailure] = []
    for task in tasks:
        if task.subject_id not in idp.index:
            failures.append(SubjectFailure(task.subject_id, str(idp_csv), "missing_idp", "no row for this eid"))
            continue
        missing = [name for name in PHENOTYPES if pd.isna(idp.at[task.subject_id, name])]
        if missing:
            failures.append(SubjectFailure(task.subject_id, str(idp_csv), "incomplete_idp",
                                           f"empty phenotype(s) {missing}"))
        elif task.subject_id in implausible:
            failures.append(SubjectFailure(task.subject_id, str(idp_csv), "implausible_idp",
                                           implausible[task.subject_id]))
        else:
            ready.append(task)
    return ready, failures


def prepare_ukb(ecg_dir: str | Path, cmr_dir: str | Path, idp_csv: str | Path, out_dir: str | Path,
                **options: Any) -> PrepareSummary:
    """Turn UK Biobank ECG/CMR/IDP downloads into ``out_dir/manifest.csv`` + ``out_dir/arrays`` (module doc).

    ``options``: any field of ``PrepareSettings`` (what the output is) or ``RunOptions`` (how the run goes).
    """
    started = time.perf_counter()
    settings, run = split_options(options)
    workers, commit_every, progress, instance = run.workers, run.commit_every, run.progress, settings.instance
    check_fractions(settings.fractions)
    ecg_dir, cmr_dir, idp_csv, out_dir = Path(ecg_dir), Path(cmr_dir), Path(idp_csv), Path(out_dir)
    ecgs, cines = find_inputs(ecg_dir, cmr_dir, instance)
    idp = read_idp_csv(idp_csv, instance)
    idp[FLAGS_COLUMN] = extreme_flags(idp)
    failures = [SubjectFailure(s, str(p), "missing_cmr", f"no cine for this subject in {cmr_dir}")
                for s, p in ecgs.items() if s not in cines]
    failures += [SubjectFailure(s, str(p), "missing_ecg", f"no ECG for this subject in {ecg_dir}")
                 for s, p in cines.items() if s not in ecgs]
    paired = sorted(set(ecgs) & set(cines))
    plan = [SubjectTask(s, row, ecgs[s], cines[s]) for row, s in enumerate(paired)]

    out_dir.mkdir(parents=True, exist_ok=True)
    state = _Progress(out_dir)
    resuming = state.start(plan, settings)
    meta = StoreMeta(n_subjects=len(plan), geometry=settings.geometry, n_samples=settings.n_samples,
                     attrs={"source": "prepare-ukb", **settings.record()})
    writer = _open_store(out_dir / STORE_DIR, meta, resuming)
    done = state.done_offsets()
    n_resumed = sum(1 for t in plan if t.subject_id in done)
    todo, idp_failures = _phenotype_failures([t for t in plan if t.subject_id not in done], idp, idp_csv)
    failures += idp_failures

    pending_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()

    def commit() -> None:
        writer.flush()
        done.update(state.mark_done(pending_rows))
        pending_rows.clear()

    bar = tqdm(total=len(plan), initial=n_resumed, disable=not progress, desc="prepare-ukb", unit="subject")
    results = _run(todo, settings, workers)
    try:
        for result in results:
            if isinstance(result, SubjectFailure):
                failures.append(result)
            else:
                writer.write(result.task.row, result.ecg, result.cmr)
                counts.update(quality_flagged=bool(result.columns["ecg_flags"]),
                              too_few_beats=result.columns["rhythm_flag"] == "too_few_beats",
                              beats=result.columns["n_beats"], excluded_beats=result.columns["n_excluded_beats"])
                pending_rows.append(_manifest_row(result, idp, settings))
                if len(pending_rows) >= commit_every:
                    commit()
            bar.update(1)
            bar.set_postfix(skipped=len(failures), refresh=False)
    finally:
        results.close()  # stops the worker pool on an interruption
        commit()  # every row in pending_rows was fully written; an interrupted write never got there
        bar.close()

    n_ok = state.write_manifest(plan, done, out_dir / MANIFEST)
    errors = pd.DataFrame([asdict(f) for f in failures], columns=["subject_id", "file", "reason", "detail"])
    _write_atomic_csv(errors.sort_values("subject_id", kind="stable"), out_dir / ERRORS)
    return PrepareSummary(manifest=out_dir / MANIFEST, errors=out_dir / ERRORS, n_ok=n_ok,
                          n_resumed=n_resumed, skipped=dict(Counter(f.reason for f in failures)),
                          seconds=time.perf_counter() - started, **{k: int(v) for k, v in counts.items()})


def _manifest_row(result: SubjectArrays, idp: pd.DataFrame, settings: PrepareSettings) -> dict[str, Any]:
    """The manifest row of a written subject: ids, split, array refs, phenotypes, covariates, provenance."""
    task = result.task
    row: dict[str, Any] = {"subject_id": task.subject_id, "split": split_of(task.subject_id, settings.fractions),
                           "ecg_path": f"{ARRAY_PREFIX}{task.row}", "cmr_path": f"{ARRAY_PREFIX}{task.row}"}
    phenotypes = idp.loc[task.subject_id]
    row.update({name: float(phenotypes[name]) for name in PHENOTYPES})
    row[FLAGS_COLUMN] = phenotypes[FLAGS_COLUMN]
    for covariate in ("age", "sex", "bsa"):
        if covariate in phenotypes.index:
            value = phenotypes[covariate]
            row[covariate] = None if pd.isna(value) else value
    row.update(result.columns)
    return row
