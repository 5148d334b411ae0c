"""R-peak detection on real beat-annotated ECGs, cut into 10-s windows like a resting ECG: old vs new detector.

Data (read at run time, never committed): the source distribution of ``wfdb`` 4.3.0 on PyPI ships,
under ``tmp_dl_dir/``, record ``0001``: a 2-lead Holter recording at 250 Hz whose ``atr`` file
annotates 2,278 beats (2,164 normal, 114 premature ventricular) over 30 minutes; ``0201`` in the
same folder is an exact excerpt of those 30 minutes (checked: identical samples), so only ``0001``
is scored. The sdist does not say which PhysioNet database the record comes from; PhysioNet data
are distributed under ODC-By / ODbL-style open licences. Fetch it once with ``--fetch`` (runs
``pip download --no-deps --no-binary :all: wfdb==4.3.0`` into ``--cache``) or by hand.

Because this is the only annotated record the registry gave, each window is also scored under
documented stresses applied to the same real signal: one lead only, amplitude x0.15, baseline
wander (0.8 mV at 0.3 Hz + 0.4 mV at 0.13 Hz), noise (EMG-like 20 Hz+ noise 0.08 mV RMS, 50 Hz
mains 0.05 mV, white 0.03 mV) and inverted polarity. The last block scores the project's
synthetic cohort (true R peaks from the generator).

Scoring: greedy one-to-one matching within ``--tolerance`` (150 ms, the usual beat-matching
window) of all beats of a window; reference beats and unmatched detections within the tolerance of
a window edge are not counted (``match``).
Per row: sensitivity = TP / (TP + FN), PPV = TP / (TP + FP).

Usage: python benchmarks/bench_rpeaks.py [--fetch] [--cache ~/.cache/ptacl-bench] [--synthetic 100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ptacl_lib.data.preprocess import bandpass, detect_rpeaks

BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
WFDB_SDIST = "wfdb==4.3.0"


def legacy_detect_rpeaks(ecg: np.ndarray, fs: float) -> np.ndarray:
    """The detector before this benchmark (commit 0135c0c), kept verbatim except that it takes every lead
    given (it used I, II, V1-V6 of 12): neurokit on the 5-30 Hz magnitude with a silent 1-s pad."""
    import neurokit2 as nk

    filtered = bandpass(ecg, fs, 5.0, min(30.0, 0.45 * fs))
    magnitude = np.sqrt((filtered ** 2).sum(axis=0))
    pad = int(fs)
    _, info = nk.ecg_peaks(np.pad(magnitude, pad), sampling_rate=int(fs), method="neurokit")
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64) - pad
    n, half = len(magnitude), max(1, int(0.04 * fs))
    refined = []
    for p in peaks[(peaks >= -half) & (peaks < n + half)]:
        lo, hi = max(0, p - half), min(n, p + half + 1)
        if hi - lo < 2:
            continue
        q = lo + int(np.argmax(magnitude[lo:hi]))
        if 0 < q < n - 1:
            refined.append(q)
    found = np.unique(np.asarray(refined, dtype=np.int64))
    if len(found) > 2:
        found = found[magnitude[found] >= 0.5 * np.median(magnitude[found])]
    return found


def match(reference: np.ndarray, found: np.ndarray, tolerance: int,
          scored: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """Greedy one-to-one matching within ``tolerance`` samples: (TP, FP, FN).

    With ``scored = (lo, hi)`` every beat is matched but only reference beats in ``[lo, hi)`` count
    (as TP or FN) and only unmatched detections in ``[lo, hi)`` count as FP, so a beat just inside an
    edge and its detection just outside it are neither a miss nor a false detection.
    """
    lo, hi = scored if scored is not None else (-np.inf, np.inf)
    used = np.zeros(len(found), dtype=bool)
    tp = fn = 0
    for r in reference:
        d = np.abs(found - r).astype(float)
        d[used] = np.inf
        hit = len(d) > 0 and d.min() <= tolerance
        if hit:
            used[int(d.argmin())] = True
        if lo <= r < hi:
            tp, fn = tp + int(hit), fn + int(not hit)
    fp = int(np.sum(~used & (found >= lo) & (found < hi)))
    return tp, fp, fn


def stresses(fs: float, seed: int = 0) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Documented perturbations of a real [L, S] window (module docstring)."""
    rng = np.random.default_rng(seed)

    def wander(w: np.ndarray) -> np.ndarray:
        t = np.arange(w.shape[1]) / fs
        return w + 0.8 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) + 0.4 * np.sin(2 * np.pi * 0.13 * t)

    def noise(w: np.ndarray) -> np.ndarray:
        white = rng.standard_normal(w.shape).astype(np.float32)
        emg = bandpass(white, fs, 20.0, 0.45 * fs)
        emg *= 0.08 / max(float(emg.std()), 1e-9)
        t = np.arange(w.shape[1]) / fs
        return w + emg + 0.05 * np.sin(2 * np.pi * 50 * t) + 0.03 * rng.standard_normal(w.shape)

    return {"as recorded": lambda w: w, "one lead": lambda w: w[1:2], "amplitude x0.15": lambda w: 0.15 * w,
            "baseline wander": wander, "noise": noise, "inverted": lambda w: -w}


def fetch(cache: Path) -> Path:
    """The wfdb 4.3.0 sdist's ``tmp_dl_dir`` under ``cache`` (downloaded with pip when asked)."""
    folder = cache / "wfdb-4.3.0" / "tmp_dl_dir"
    if folder.exists():
        return folder
    archive = cache / "wfdb-4.3.0.tar.gz"
    if not archive.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", WFDB_SDIST,
                        "-d", str(cache)], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, members=[m for m in tar.getmembers() if "/tmp_dl_dir/" in m.name],
                       filter="data")
    return folder


def score_windows(signal: np.ndarray, beats: np.ndarray, fs: float, detector: Callable, stress: Callable,
                  tolerance: int, seconds: float = 10.0,
                  span: tuple[int, int] | None = None) -> tuple[int, int, int, float]:
    """Sum of (TP, FP, FN) over non-overlapping windows covering the annotated span (``span``: of
    another beat list, so that a subset of beats is scored on the same windows), and seconds spent."""
    width = int(seconds * fs)
    first, last = span if span is not None else (beats[0], beats[-1])
    tp = fp = fn = 0
    spent = 0.0
    for start in range(max(0, first - int(fs)), last - width, width):
        window = stress(signal[:, start:start + width])
        reference = beats[(beats >= start) & (beats < start + width)] - start
        began = time.perf_counter()
        found = detector(window, fs)
        spent += time.perf_counter() - began
        a, b, c = match(reference, found, tolerance, (tolerance, width - tolerance))
        tp, fp, fn = tp + a, fp + b, fn + c
    return tp, fp, fn, spent


def _row(name: str, old: tuple[int, int, int, float], new: tuple[int, int, int, float]) -> str:
    def cells(r: tuple[int, int, int, float]) -> str:
        tp, fp, fn = (int(v) for v in r[:3])
        return f"{tp / max(tp + fn, 1):.4f} | {tp / max(tp + fp, 1):.4f} | {fn} | {fp}"
    return f"| {name} | {cells(old)} | {cells(new)} | {old[3]:.1f} / {new[3]:.1f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ptacl-bench")
    parser.add_argument("--fetch", action="store_true", help="pip-download the wfdb 4.3.0 sdist if missing")
    parser.add_argument("--tolerance", type=float, default=0.150, help="matching window (s)")
    parser.add_argument("--synthetic", type=int, default=100, help="synthetic subjects scored (0: none)")
    parser.add_argument("--pvc-rate", type=float, default=0.3, help="share of synthetic subjects with PVCs")
    parser.add_argument("--af-rate", type=float, default=0.1, help="share of synthetic subjects in AF")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    header = ("| record / condition | old sens | old PPV | old FN | old FP | new sens | new PPV | new FN | new FP "
              "| time old / new |\n|---|---|---|---|---|---|---|---|---|---|")
    folder = args.cache / "wfdb-4.3.0" / "tmp_dl_dir"
    if args.fetch:
        folder = fetch(args.cache)
    if folder.exists():
        import wfdb

        record = wfdb.rdrecord(str(folder / "0001"))
        annotation = wfdb.rdann(str(folder / "0001"), "atr")
        fs = float(record.fs)
        beats = np.array([s for s, c in zip(annotation.sample, annotation.symbol) if c in BEAT_SYMBOLS])
        signal = record.p_signal.T.astype(np.float32)
        tolerance = int(args.tolerance * fs)
        print(f"wfdb-4.3.0 sdist record 0001: {len(beats)} annotated beats, {fs:.0f} Hz, {signal.shape[0]} leads, "
              f"10-s windows, tolerance {args.tolerance * 1000:.0f} ms")
        print(header)
        pvcs = np.array([s for s, c in zip(annotation.sample, annotation.symbol) if c == "V"])
        pvc_lines = []
        for name, stress in stresses(fs).items():
            old = score_windows(signal, beats, fs, legacy_detect_rpeaks, stress, tolerance)
            new = score_windows(signal, beats, fs, detect_rpeaks, stress, tolerance)
            print(_row(f"0001, {name}", old, new), flush=True)
            pvc = [score_windows(signal, pvcs, fs, d, stress, tolerance, span=(beats[0], beats[-1]))
                   for d in (legacy_detect_rpeaks, detect_rpeaks)]
            pvc_lines.append(f"| 0001, {name}, {len(pvcs)} PVCs only | " + " | ".join(
                f"{r[0] / max(r[0] + r[2], 1):.4f} ({r[2]} missed)" for r in pvc) + " |")
        print("\n| PVC sensitivity | old | new |\n|---|---|---|\n" + "\n".join(pvc_lines))
    else:
        print(f"no annotated records under {folder}; run with --fetch (pip download {WFDB_SDIST})")
    if args.synthetic:
        score_synthetic(args.synthetic, args.tolerance, args.pvc_rate, args.af_rate, header)


def score_synthetic(n: int, tolerance_s: float, pvc_rate: float, af_rate: float, header: str) -> None:
    """Both detectors on a synthetic cohort enriched with ectopy: all beats, then sensitivity per true beat
    label (N sinus, V PVC, A atrial fibrillation) from the generator's own beat annotations."""
    from ptacl_lib.data import open_cohort
    from ptacl_lib.data.synthetic import generate_cohort, true_beats

    with tempfile.TemporaryDirectory() as tmp:
        cohort = open_cohort(generate_cohort(tmp, n_subjects=n, seed=7, progress=False, p_pvc=pvc_rate,
                                             p_af=af_rate))
        fs = float(cohort.geometry.ecg_hz)
        tolerance = int(tolerance_s * fs)
        totals = {"old": np.zeros(4), "new": np.zeros(4)}
        per_label = {(d, lab): np.zeros(2) for d in totals for lab in ("N", "V", "A")}
        per_record: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}  # (sensitivity, PPV) per subject
        for i in range(len(cohort)):
            beats = true_beats(cohort, i)
            ecg = cohort.ecg(i)
            span = (tolerance, ecg.shape[1] - tolerance)
            for name, detector in (("old", legacy_detect_rpeaks), ("new", detect_rpeaks)):
                began = time.perf_counter()
                found = detector(ecg, fs)
                spent = time.perf_counter() - began
                counts = match(beats["sample"].to_numpy(), found, tolerance, span)
                totals[name] += (*counts, spent)
                tp, fp, fn = counts
                per_record[name].append((tp / max(tp + fn, 1), tp / max(tp + fp, 1)))
                for label, group in beats.groupby("label"):
                    tp, _, fn = match(group["sample"].to_numpy(), found, tolerance, span)
                    per_label[name, label] += (tp, fn)
        rhythms = cohort.table["rhythm"].value_counts().to_dict() if "rhythm" in cohort.table else {}
        print(f"\nsynthetic cohort (generator {cohort.store.meta.attrs.get('version', '?')}), {len(cohort)} subjects, "
              f"seed 7, PVC rate {pvc_rate}, AF rate {af_rate} ({rhythms}), 12 leads at {fs:.0f} Hz, "
              f"tolerance {tolerance_s * 1000:.0f} ms")
        print(header)
        print(_row("synthetic (all beats)", tuple(totals["old"]), tuple(totals["new"])))
        for name, records in per_record.items():
            values = np.array(records)
            below = int(((values[:, 0] < 0.98) | (values[:, 1] < 0.98)).sum())
            print(f"{name}: per record (subject), min sensitivity {values[:, 0].min():.3f}, min PPV "
                  f"{values[:, 1].min():.3f}; {below} of {len(values)} records below 0.98 in either")
        print("\n| true beat label | beats | old sensitivity (missed) | new sensitivity (missed) |\n|---|---|---|---|")
        for label in ("N", "V", "A"):
            old, new = per_label["old", label], per_label["new", label]
            if old.sum():
                print(f"| {label} | {int(old.sum())} | {old[0] / old.sum():.4f} ({int(old[1])}) | "
                      f"{new[0] / new.sum():.4f} ({int(new[1])}) |")

if __name__ == "__main__":
    main()
