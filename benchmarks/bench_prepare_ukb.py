"""prepare-ukb throughput (subjects/s at 1 and 2 workers) and main-process memory at two cohort sizes.

A UK Biobank-shaped fixture cohort is written first (``writers.write_ukb_like_cohort``:
CardioSoft XML 12 x 5000 + a 20209-style zip of 3 slices x 20 frames of 64 x 64 per subject).
Memory is measured in a fresh process per run: peak Python/numpy allocations (tracemalloc),
peak anonymous resident memory (``RssAnon``, sampled every 20 ms) and ``ru_maxrss``. The
last also counts the store's file-backed pages that the kernel may drop at any time, so it
grows with the store; the first two are what "holds subjects in memory" would inflate.

Usage: python benchmarks/bench_prepare_ukb.py [--n 500] [--small 100] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from ptacl_lib.data.prepare_ukb import prepare_ukb
from ptacl_lib.data.readers.writers import write_ukb_like_cohort


def _rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def measure_child(ecg_dir: str, cmr_dir: str, idp_csv: str, out: str) -> None:
    """Run prepare-ukb (1 worker) in this process and print its memory peaks as JSON."""
    peak_anon = [_rss_anon_kib()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak_anon[0] = max(peak_anon[0], _rss_anon_kib())

    baseline_anon = _rss_anon_kib()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    # min_ecg_quality=0: the fixture ECGs are sinusoids, which quality control would (rightly) skip
    summary = prepare_ukb(ecg_dir, cmr_dir, idp_csv, out, workers=1, progress=False, min_ecg_quality=0.0)
    _, traced_peak = tracemalloc.get_traced_memory()
    stop.set()
    sampler.join()
    print(json.dumps({"n_ok": summary.n_ok, "tracemalloc_peak_mib": traced_peak / 2**20,
                      "rss_anon_growth_mib": (peak_anon[0] - baseline_anon) / 1024,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _cpu_seconds() -> tuple[float, float]:
    """(this process, its finished children) user + system CPU seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _subset(paths: dict[str, Path], n: int, root: Path) -> dict[str, Path]:
    """The first ``n`` subjects of a fixture cohort, as symlinks."""
    subset = {"ecg_dir": root / "ecg", "cmr_dir": root / "cmr", "idp_csv": paths["idp_csv"]}
    for key in ("ecg_dir", "cmr_dir"):
        subset[key].mkdir(parents=True)
        for source in sorted(paths[key].iterdir())[:n]:
            (subset[key] / source.name).symlink_to(source)
    return subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="subjects in the fixture cohort")
    parser.add_argument("--small", type=int, default=100, help="smaller cohort for the memory comparison")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=4, metavar=("ECG", "CMR", "IDP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="ptacl_bench_ukb_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        paths = write_ukb_like_cohort(root / "in", args.n)
        print(f"fixture cohort: {args.n} subjects written in {time.perf_counter() - start:.0f} s")
        for workers in args.workers:
            cpu_before = _cpu_seconds()
            summary = prepare_ukb(paths["ecg_dir"], paths["cmr_dir"], paths["idp_csv"], root / f"out_w{workers}",
                                  workers=workers, progress=False, min_ecg_quality=0.0)
            main_cpu, worker_cpu = (after - before for after, before in zip(_cpu_seconds(), cpu_before))
            assert summary.n_ok == args.n, str(summary)
            print(f"workers={workers}: {summary.seconds:6.1f} s wall, {args.n / summary.seconds:6.1f} subjects/s; "
                  f"CPU {main_cpu:5.1f} s main + {worker_cpu:5.1f} s workers "
                  f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        for n in (args.small, args.n):
            cohort = paths if n == args.n else _subset(paths, n, root / f"subset_{n}")
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(cohort["ecg_dir"]), str(cohort["cmr_dir"]),
                 str(cohort["idp_csv"]), str(root / f"mem_{n}")], check=True, capture_output=True, text=True)
            peaks = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"memory, {n:5d} subjects: tracemalloc peak {peaks['tracemalloc_peak_mib']:6.1f} MiB, "
                  f"RssAnon growth {peaks['rss_anon_growth_mib']:6.1f} MiB, "
                  f"ru_maxrss {peaks['ru_maxrss_mib']:6.1f} MiB")


if __name__ == "__main__":
    main()
