"""UK Biobank resting ECG (field 20205, GE CardioSoft XML) via lxml.

Layout (root ``CardiologyXML``)::

    RestingECGMeasurements/   device measurements: VentricularRate, PQInterval, QRSDuration, ...
        MedianSamples/        median beats, same layout as StripData
    StripData/
        SampleRate units="Hz", ChannelSampleCountTotal, Resolution units="uVperLsb",
        WaveformData lead="I" ... lead="V6"   comma-separated integers (tabs/newlines allowed)

Samples become mV through the file's own Resolution; the file's own SampleRate is kept.
The integers are parsed with ``numpy.fromstring`` straight from the element text, which is
what makes this reader fast (``benchmarks/bench_xml_parse.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree

from .records import EcgRecord, ReaderError, assemble_leads, require_file

#: Amplitude-resolution units CardioSoft writes, as a factor to millivolts.
_RESOLUTION_TO_MV: dict[str, float] = {"uvperlsb": 1e-3, "uv": 1e-3, "mvperlsb": 1.0, "mv": 1.0, "nvperlsb": 1e-6}

_PARSER = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True, remove_comments=True)


def read_ukb_xml(path: str | Path, sampling_rate: float | None = None, median_beats: bool = True) -> EcgRecord:
    """Read the 10 s strip (mV), median beats and device intervals of one CardioSoft XML.

    The file's own sample rate is kept unless ``sampling_rate`` asks for another;
    ``median_beats=False`` skips parsing the median beats (bulk work that does not use them).
    """
    path = require_file(path)
    try:
        root = etree.parse(str(path), _PARSER).getroot()
    except etree.XMLSyntaxError as err:
        raise ReaderError(path, "corrupt_file", f"not well-formed XML ({err})") from err
    if root.tag != "CardiologyXML":
        raise ReaderError(path, "unsupported_format", f"root element is <{root.tag}>, expected <CardiologyXML>")
    strip = root.find("StripData")
    if strip is None:
        raise ReaderError(path, "bad_metadata", "no <StripData> element")
    channels, rate = _read_waveform_block(strip, path, "StripData")
    signal, derived = assemble_leads(channels, path)
    meta: dict[str, Any] = {"derived_leads": derived, "intervals": {}, "interval_units": {}}
    measurements = root.find("RestingECGMeasurements")
    if measurements is not None:
        meta["intervals"], meta["interval_units"] = _read_intervals(measurements)
        median = measurements.find("MedianSamples")
        if median_beats and median is not None and median.find("WaveformData") is not None:
            median_channels, median_rate = _read_waveform_block(median, path, "MedianSamples")
            meta["median_beats"], _ = assemble_leads(median_channels, path)
            meta["median_sampling_rate"] = median_rate
    record = EcgRecord(signal=signal, sampling_rate=rate, source=str(path), meta=meta)
    return record.resampled(sampling_rate)


def _number(block: etree._Element, tag: str, path: Path, where: str) -> tuple[float, str]:
    """The numeric text of ``block/tag`` and its ``units`` attribute."""
    node = block.find(tag)
    if node is None or not (node.text or "").strip():
        raise ReaderError(path, "bad_metadata", f"<{where}> has no <{tag}>")
    try:
        return float(node.text), node.get("units", "")
    except ValueError as err:
        raise ReaderError(path, "bad_metadata", f"<{where}/{tag}> is not a number: {node.text!r}") from err


def _read_waveform_block(block: etree._Element, path: Path, where: str) -> tuple[dict[str, np.ndarray], float]:
    """Lead name -> samples in mV for a StripData / MedianSamples block, and its sample rate."""
    rate, _ = _number(block, "SampleRate", path, where)
    count, _ = _number(block, "ChannelSampleCountTotal", path, where)
    resolution, units = _number(block, "Resolution", path, where)
    to_mv = _RESOLUTION_TO_MV.get(units.lower())
    if to_mv is None:
        raise ReaderError(path, "bad_metadata", f"<{where}/Resolution> has unknown units {units!r}")
    if rate <= 0:
        raise ReaderError(path, "bad_metadata", f"<{where}/SampleRate> is {rate}")
    scale = resolution * to_mv
    channels: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():  # older numpy only warns on unparsable text: make that an error
        warnings.simplefilter("error", DeprecationWarning)
        for node in block.iterfind("WaveformData"):
            lead = node.get("lead", "")
            try:
                samples = np.fromstring(node.text or "", dtype=np.int32, sep=",")
            except (ValueError, DeprecationWarning) as err:
                raise ReaderError(path, "corrupt_file", f"<{where}> lead {lead} holds non-integer samples") from err
            if samples.size != int(count):
                raise ReaderError(path, "wrong_sample_count",
                                  f"<{where}> lead {lead} has {samples.size} samples, header says {int(count)}")
            channels[lead] = samples.astype(np.float32) * np.float32(scale)
    return channels, rate


def _read_intervals(measurements: etree._Element) -> tuple[dict[str, float], dict[str, str]]:
    """Every numeric leaf of RestingECGMeasurements (VentricularRate, QRSDuration, QTInterval, ...)."""
    values: dict[str, float] = {}
    units: dict[str, str] = {}
    for node in measurements:
        if not isinstance(node.tag, str) or len(node) or not (node.text or "").strip():
            continue
        try:
            values[node.tag] = float(node.text)
        except ValueError:
            continue
        units[node.tag] = node.get("units", "")
    return values, units
