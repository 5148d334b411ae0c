"""DICOM 12-lead ECG Waveform Storage via pydicom, at the file's own sample rate (or resampled on request).

The rhythm multiplex group (label RHYTHM, else the longest group) becomes the strip; a MEDIAN
group, when present, becomes ``meta["median_beats"]``. Leads are identified by their channel
source code (SCPECG ``5.6.3-9-N`` or MDC ``2:N``, DICOM CID 3001), falling back to the code
meaning ("Lead aVR"). Samples are scaled by pydicom (sensitivity x correction + baseline) and
converted from the channel's sensitivity units to mV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..schema import NANOVOLT_TO_MV, file_unit_to_mv
from .records import EcgRecord, ReaderError, assemble_leads, canonical_lead, require_file

#: Suffix N of the SCPECG "5.6.3-9-N" and MDC "2:N" lead codes (DICOM CID 3001).
_LEAD_CODE_NUMBERS: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}


def read_dicom_ecg(path: str | Path, sampling_rate: float | None = None) -> EcgRecord:
    """Read a DICOM ECG waveform file; ``sampling_rate`` resamples the strip (and median beats) on request."""
    path = require_file(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError) as err:
        raise ReaderError(path, "corrupt_file", f"not a readable DICOM file ({err})") from err
    groups = ds.get("WaveformSequence")
    if not groups:
        raise ReaderError(path, "unsupported_format", "DICOM file has no WaveformSequence")
    labels = [str(g.get("MultiplexGroupLabel", "")).upper() for g in groups]
    rhythm = labels.index("RHYTHM") if "RHYTHM" in labels else int(
        np.argmax([int(g.get("NumberOfWaveformSamples", 0)) for g in groups]))
    (signal, derived), rate = _read_group(ds, rhythm, path)
    meta: dict[str, Any] = {"derived_leads": derived, "intervals": {}}
    record = EcgRecord(signal=signal, sampling_rate=rate, source=str(path), meta=meta)
    if "MEDIAN" in labels:
        (median, _), median_rate = _read_group(ds, labels.index("MEDIAN"), path)
        meta["median_beats"], meta["median_sampling_rate"] = median, median_rate
    return record.resampled(sampling_rate)


def _read_group(ds: Dataset, index: int, path: Path) -> tuple[tuple[np.ndarray, tuple[str, ...]], float]:
    """One multiplex group as ([12, S] mV, derived leads) and its sampling frequency."""
    group = ds.WaveformSequence[index]
    try:
        rate = float(group.SamplingFrequency)
        declared = int(group.NumberOfWaveformSamples) * int(group.NumberOfWaveformChannels) * (
            int(group.WaveformBitsAllocated) // 8)
        definitions = list(group.ChannelDefinitionSequence)
    except AttributeError as err:
        raise ReaderError(path, "bad_metadata", f"waveform group {index}: {err}") from err
    if len(group.WaveformData) < declared:
        raise ReaderError(path, "wrong_sample_count",
                          f"waveform group {index} holds {len(group.WaveformData)} bytes, header declares {declared}")
    values = ds.waveform_array(index)  # [samples, channels], sensitivity/baseline applied
    channels: dict[str, np.ndarray] = {}
    for column, definition in enumerate(definitions):
        lead = _lead_name(definition)
        if lead is None:
            continue
        channels[lead] = values[:, column] * _to_mv(definition, path)
    return assemble_leads(channels, path), rate


def _lead_name(definition: Dataset) -> str | None:
    """The lead a channel records, from its source code, else its code meaning."""
    source = definition.get("ChannelSourceSequence")
    if not source:
        return None
    code = source[0]
    value = str(code.get("CodeValue", ""))
    for prefix in ("5.6.3-9-", "2:"):
        if value.startswith(prefix) and value[len(prefix):].isdigit():
            return _LEAD_CODE_NUMBERS.get(int(value[len(prefix):]))
    return canonical_lead(str(code.get("CodeMeaning", "")))


def _to_mv(definition: Dataset, path: Path) -> float:
    """Factor from a channel's sensitivity units to mV (uV when the file does not say)."""
    units = definition.get("ChannelSensitivityUnitsSequence")
    code = str(units[0].get("CodeValue", "uV")) if units else "uV"
    factor = file_unit_to_mv(code, NANOVOLT_TO_MV)
    if factor is None:
        raise ReaderError(path, "bad_metadata", f"unknown channel sensitivity units {code!r}")
    return factor
