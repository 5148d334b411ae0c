"""UK Biobank ECG XML parsing speed: ``read_ukb_xml`` against a plain xmltodict parser.

The baseline is written the way community UKB ECG scripts usually are: ``xmltodict.parse`` the
whole file, walk the dict to StripData, split each lead's text on commas and convert with
``int``. Both parsers must return the same millivolt arrays before anything is timed.

Usage: python benchmarks/bench_xml_parse.py [--n 200] [--repeats 3]
Target: at least 5x the baseline's files per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xmltodict

from ptacl_lib.data.readers import read_ukb_xml
from ptacl_lib.data.readers.writers import subject_ecg_raw, write_cardiosoft_xml
from ptacl_lib.data.schema import LEADS


def parse_with_xmltodict(path: Path) -> np.ndarray:
    """The community-style baseline: dict of the whole document, str.split and int per sample."""
    with open(path, "rb") as handle:
        document = xmltodict.parse(handle.read())
    strip = document["CardiologyXML"]["StripData"]
    scale = float(strip["Resolution"]["#text"]) / 1000.0
    leads = {}
    for waveform in strip["WaveformData"]:
        text = waveform["#text"].replace("\n", "").replace("\t", "")
        leads[waveform["@lead"]] = np.array([int(v) for v in text.split(",")], dtype=np.float32) * scale
    return np.stack([leads[lead] for lead in LEADS])


def parse_with_reader(path: Path) -> np.ndarray:
    """The library reader (strip only, to compare like with like; it also parses median beats)."""
    return read_ukb_xml(path).signal


def parse_strip_only(path: Path) -> np.ndarray:
    """The library reader without median beats: the same work as the baseline."""
    return read_ukb_xml(path, median_beats=False).signal


def files_per_second(parse: Callable[[Path], np.ndarray], files: list[Path], repeats: int) -> float:
    """Best of ``repeats`` passes over all files."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in files:
            parse(path)
        best = min(best, time.perf_counter() - start)
    return len(files) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="XML files to parse per pass")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptacl_bench_xml_") as tmp:
        files = []
        for k in range(args.n):
            raw = subject_ecg_raw(k)
            files.append(write_cardiosoft_xml(
                Path(tmp) / f"{1000001 + k}_20205_2_0.xml", raw, median_raw={lead: v[:600] for lead, v in raw.items()},
                intervals={"VentricularRate": (60, "BPM"), "QRSDuration": (90, "ms"), "QTInterval": (400, "ms")}))
        for path in files[:5]:
            np.testing.assert_allclose(parse_with_reader(path), parse_with_xmltodict(path), rtol=1e-6)
        size_kib = np.mean([p.stat().st_size for p in files]) / 1024
        baseline = files_per_second(parse_with_xmltodict, files, args.repeats)
        ours = files_per_second(parse_with_reader, files, args.repeats)
        strip_only = files_per_second(parse_strip_only, files, args.repeats)
    print(f"{args.n} CardioSoft XML files, {size_kib:.0f} KiB each (12 x 5000 strip + 12 x 600 median beats)")
    print(f"xmltodict baseline : {baseline:8.1f} files/s")
    print(f"read_ukb_xml       : {ours:8.1f} files/s  (strip + median beats + intervals)")
    print(f"  strip only       : {strip_only:8.1f} files/s  (median_beats=False: the baseline's work)")
    print(f"speed-up           : {ours / baseline:8.1f}x full, {strip_only / baseline:.1f}x strip only (target >= 5x)")
    print(f"load average       : {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
