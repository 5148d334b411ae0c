"""Preprocess a whole cohort once into a memory-mapped cache that training reads at full speed.

Layout (``<cohort>/cache/prep-<key>/``)::

    meta.json     the PreprocessConfig (geometry and filters), per-lead scale, shapes, the manifest
    ecg.npy       float32 [N, 12, L]  band-passed, resampled, divided by the per-lead scale
    cmr.npy       uint8   [N, S, T, H, W] resized cine (S short-axis slices, base to apex), min-max
                  normalised per subject
    rpeaks.npy    int32   [N, K]       R peaks at the geometry's ECG rate, padded with -1
    ok.npy        bool    [N]          False for subjects that could not be read
    errors.csv    subject_id, column, reason  (one line per skipped subject)
    beats.csv     per preprocessed subject: ECG quality (``ecg_quality``) and beats left out of phase
                  pooling (``rhythm``): ecg_quality, ecg_noise, ecg_flags, n_beats, n_excluded_beats,
                  median_rr_ms, rhythm_flag

R peaks come from the consensus detector on the leads that quality control found usable. A
subject with too few regular beats is kept (its phase mask is empty where no beat is usable, so
the local loss leaves it out) and counted in a warning; ``CACHE_VERSION`` enters the key, so a
change to what the cache holds rebuilds stale caches.

A broken subject is skipped and reported; every other subject's result is kept. The cache is
built in a temporary directory and renamed into place, so an interrupted build leaves nothing
half-written, and a manifest edit changes the key so a stale cache is never reused.

The config's geometry (ECG rate, frames, frame size, slices) enters the key. A cohort stored below it
(fewer slices, frames or pixels, or a lower ECG rate than asked) is refused with a clear error before
anything is built: the library never upsamples. A stack stored with more slices than asked gives the
asked number by ``readers.cine_ops.spread_slices`` (one slice: the middle one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from .cohort import Cohort, SubjectDataError
from .ecg_quality import assess_ecg_quality
from .preprocess import PreprocessConfig, detect_rpeaks, preprocess_ecg, rescale_peaks, resize_cine
from .readers.cine_ops import spread_slices
from .rhythm import MIN_USABLE_BEATS, rhythm_summary

MAX_BEATS = 40  # 10 s at 240 bpm
#: Bumped whenever the cached arrays change for the same config (2: consensus R peaks on usable leads;
#: 3: the cine as [N, S, T, H, W]).
CACHE_VERSION = 3


def check_cohort_geometry(cohort: Cohort, config: PreprocessConfig) -> None:
    """A clear error when ``cohort`` is stored below the geometry ``config`` asks for (never upsampled)."""
    short = cohort.geometry.shortfalls(config.geometry)
    if short:
        raise ValueError(f"{cohort.manifest_path} is stored below the input geometry asked for: "
                         f"{'; '.join(short)}. The library does not upsample: ask for the stored geometry "
                         "(e.g. --geometry demo, or the overrides) or prepare the cohort again at the larger one")


class PreprocessingNotice(UserWarning):
    """Subjects that preprocessing left out or flagged. Said once when a cache is built and once per split a
    dataset serves; ``ptacl study`` states it once itself and silences the repeats."""


def cache_key(cohort: Cohort, config: PreprocessConfig) -> str:
    """Fingerprint of the manifest bytes, the rows ``open_cohort`` left out, and the preprocessing config."""
    h = hashlib.sha1(cohort.manifest_path.read_bytes())
    if len(cohort.rejected):  # the cache holds the kept rows only, so which were left out is part of the key
        h.update(",".join(cohort.rejected["subject_id"].astype(str)).encode())
    h.update(json.dumps({**config.to_dict(), "cache_version": CACHE_VERSION}, sort_keys=True).encode())
    return h.hexdigest()[:12]


@dataclass
class PreprocessedCohort:
    """Memory-mapped, model-ready arrays for every row of a cohort."""

    root: Path
    config: PreprocessConfig
    ecg: np.ndarray
    cmr: np.ndarray
    rpeaks: np.ndarray
    ok: np.ndarray
    lead_scale: np.ndarray
    errors: pd.DataFrame
    n_too_few_beats: int = 0

    @classmethod
    def load(cls, root: Path) -> "PreprocessedCohort":
        """Map an existing cache directory."""
        meta = json.loads((root / "meta.json").read_text())
        errors_path = root / "errors.csv"
        errors = pd.read_csv(errors_path) if errors_path.stat().st_size > 0 else pd.DataFrame()
        return cls(root=root, config=PreprocessConfig.from_dict(meta["config"]),
                   ecg=np.load(root / "ecg.npy", mmap_mode="r"), cmr=np.load(root / "cmr.npy", mmap_mode="r"),
                   rpeaks=np.load(root / "rpeaks.npy", mmap_mode="r"), ok=np.load(root / "ok.npy"),
                   lead_scale=np.asarray(meta["lead_scale"], dtype=np.float32), errors=errors,
                   n_too_few_beats=int(meta.get("n_too_few_beats", 0)))

    @classmethod
    def build_or_load(cls, cohort: Cohort, config: PreprocessConfig = PreprocessConfig(),
                      progress: bool = True) -> "PreprocessedCohort":
        """Return the cohort's cache for ``config``, building it first if it does not exist."""
        check_cohort_geometry(cohort, config)
        root = cohort.root / "cache" / f"prep-{cache_key(cohort, config)}"
        if (root / "meta.json").exists():
            return cls.load(root)
        build_cache(cohort, config, root, progress=progress)
        cache = cls.load(root)
        for line in cache.notices():
            warnings.warn(line, PreprocessingNotice, stacklevel=2)
        return cache

    def skip_reasons(self) -> pd.Series:
        """How many subjects preprocessing skipped for each reason, commonest first (the reason without its
        subject id and details, e.g. "no usable ECG lead")."""
        reasons = self.errors["reason"].astype(str) if len(self.errors) else pd.Series([], dtype=str)
        return reasons.str.split(" \\(").str[0].str.replace(r"^subject \S+: ", "", regex=True).value_counts()

    def notices(self) -> list[str]:
        """What preprocessing left out or flagged, in plain sentences (none when every subject is fine)."""
        n, lines = len(self.ok), []
        if len(self.errors):
            reasons = "; ".join(f"{k} × {r}" for r, k in self.skip_reasons().head(3).items())
            lines.append(f"preprocessing skipped {len(self.errors)} of {n} subjects ({reasons}); the list is in "
                         f"{self.root / 'errors.csv'}")
        if self.n_too_few_beats:
            lines.append(f"{self.n_too_few_beats} of {n} subjects have fewer than {MIN_USABLE_BEATS} beats regular "
                         f"enough to pool (rhythm_flag too_few_beats); see {self.root / 'beats.csv'}")
        return lines

    def rpeaks_of(self, i: int) -> np.ndarray:
        """R peaks of row ``i`` at the geometry's ECG rate (padding removed)."""
        peaks = np.asarray(self.rpeaks[i])
        return peaks[peaks >= 0].astype(np.int64)


def stored_ecg_samples(cohort: Cohort) -> int:
    """Samples per lead of the cohort's stored ECGs (at ``cohort.geometry.ecg_hz``)."""
    return cohort.store.meta.n_samples if cohort.store is not None else cohort.ecg(0).shape[-1]


def ecg_samples(cohort: Cohort, config: PreprocessConfig) -> int:
    """Samples per lead of the cohort's ECGs once preprocessed by ``config`` (at its geometry's ECG rate)."""
    return int(round(stored_ecg_samples(cohort) * config.geometry.ecg_hz / cohort.geometry.ecg_hz))


def build_cache(cohort: Cohort, config: PreprocessConfig, root: Path, progress: bool = True) -> Path:
    """Preprocess every subject into ``root`` (atomically); skip and report unreadable ones."""
    n, length, g = len(cohort), ecg_samples(cohort, config), config.geometry
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root.parent))
    ecg = open_memmap(tmp / "ecg.npy", mode="w+", dtype=np.float32, shape=(n, 12, length))
    cmr = open_memmap(tmp / "cmr.npy", mode="w+", dtype=np.uint8, shape=(n, g.slices, g.frames, g.image_size,
                                                                         g.image_size))
    slices = spread_slices(cohort.geometry.slices, g.slices)
    rpeaks = np.full((n, MAX_BEATS), -1, dtype=np.int32)
    ok = np.zeros(n, dtype=bool)
    errors: list[dict[str, str]] = []
    beats: list[dict[str, object]] = []
    fs = float(cohort.geometry.ecg_hz)
    for i in tqdm(range(n), desc="preprocessing", disable=not progress, unit="subject"):
        sid = str(cohort.table["subject_id"].iloc[i])
        try:
            raw = cohort.ecg(i)
            x = preprocess_ecg(raw, fs, config)
            if x.shape[-1] != length:
                raise SubjectDataError(f"subject {sid}: ECG has {raw.shape[-1]} samples, expected "
                                       f"{int(round(length * fs / g.ecg_hz))}")
            quality = assess_ecg_quality(raw, fs)
            if not quality.usable_leads.any():
                raise SubjectDataError(f"subject {sid}: no usable ECG lead ({';'.join(quality.flags)})")
            found = quality.rpeaks if config.rpeak_method == "consensus" else \
                detect_rpeaks(raw, fs, config.rpeak_method, leads=quality.usable_leads)
            peaks = rescale_peaks(found, fs, g.ecg_hz)
            if len(peaks) < 2:
                raise SubjectDataError(f"subject {sid}: fewer than 2 R peaks detected")
            frames = resize_cine(cohort.cmr(i)[slices], g.frames, g.image_size)
        except (SubjectDataError, ValueError, OSError) as err:
            errors.append({"subject_id": sid, "reason": str(err)})
            continue
        ecg[i] = x
        cmr[i] = np.rint(frames * 255.0).astype(np.uint8)
        peaks = peaks[:MAX_BEATS]
        rpeaks[i, : len(peaks)] = peaks
        ok[i] = True
        beats.append({"subject_id": sid, **quality.columns(), **rhythm_summary(peaks, g.ecg_hz).columns()})
    if not ok.any():
        shutil.rmtree(tmp, ignore_errors=True)
        if not errors:
            raise SubjectDataError(f"{cohort.manifest_path} lists no subject (did every subject fail the "
                                   "preparation? see the errors.csv beside it)")
        raise SubjectDataError(f"no subject of {cohort.manifest_path} could be preprocessed; "
                               f"first error: {errors[0]['reason']}")
    # Per-lead scale from the training split: one number per lead for the whole cohort, so that
    # between-subject voltage differences (LV mass!) are kept while leads are put on one scale.
    train = ok & (cohort.table["split"].to_numpy() == "train")
    ref = np.flatnonzero(train if train.any() else ok)
    scale = np.sqrt(np.mean(np.stack([np.asarray(ecg[i]).var(axis=-1) for i in ref]), axis=0))
    scale = np.maximum(scale, 1e-6).astype(np.float32)
    for i in np.flatnonzero(ok):
        ecg[i] = ecg[i] / scale[:, None]
    ecg.flush()
    cmr.flush()
    np.save(tmp / "rpeaks.npy", rpeaks)
    np.save(tmp / "ok.npy", ok)
    pd.DataFrame(errors, columns=["subject_id", "reason"]).to_csv(tmp / "errors.csv", index=False)
    beat_table = pd.DataFrame(beats)
    beat_table.to_csv(tmp / "beats.csv", index=False)
    too_few = int((beat_table["rhythm_flag"] != "ok").sum())
    (tmp / "meta.json").write_text(json.dumps({
        "config": config.to_dict(), "lead_scale": scale.tolist(), "n_subjects": n, "ecg_length": length,
        "manifest": str(cohort.manifest_path), "n_skipped": len(errors), "cache_version": CACHE_VERSION,
        "n_too_few_beats": too_few, "n_excluded_beats": int(beat_table["n_excluded_beats"].sum())}, indent=2))
    del ecg, cmr
    if root.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, root)
    return root
