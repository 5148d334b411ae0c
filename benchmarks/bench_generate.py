"""Time the synthetic cohort generator: subjects per second, total seconds and disk size.

Usage: python benchmarks/bench_generate.py [--n 2000] [--workers 1 2] [--seed 0]
Target (docs/design.md §2.4): 2,000 subjects in under a minute on 2 cores. CPU time is printed as well:
on a machine shared with other jobs it is the steadier number.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from ptacl_lib.data.synthetic import generate_cohort


def _disk_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2 ** 20


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the process pool), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="subjects per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts to time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate_cohort(tempfile.mkdtemp(prefix="ptacl_bench_warm_"), n_subjects=4, progress=False)  # imports, tables
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="ptacl_bench_") as tmp:
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            manifest = generate_cohort(tmp, n_subjects=args.n, seed=args.seed, progress=False, workers=workers)
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
            print(f"workers={workers}: {args.n} subjects in {seconds:.1f} s wall = {args.n / seconds:.0f} subjects/s "
                  f"({1000 * seconds / args.n:.1f} ms/subject); "
                  f"CPU {cpu:.1f} s ({1000 * cpu / args.n:.1f} ms/subject); "
                  f"{_disk_mib(manifest.parent):.0f} MiB on disk")


if __name__ == "__main__":
    main()
