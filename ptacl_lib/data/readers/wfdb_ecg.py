"""PhysioNet-style WFDB records (``.hea`` + signal files) via the ``wfdb`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from ..schema import file_unit_to_mv
from .records import EcgRecord, ReaderError, assemble_leads, require_file


def read_wfdb_ecg(path: str | Path, sampling_rate: float | None = None) -> EcgRecord:
    """Read a 12-lead WFDB record given its ``.hea`` path (or record path without extension), in mV."""
    header = require_file(Path(path).with_suffix(".hea"))
    record_name = str(header.with_suffix(""))
    try:
        record = wfdb.rdrecord(record_name, physical=True)
    except (ValueError, OSError, IndexError) as err:
        raise ReaderError(header, "corrupt_file", f"wfdb cannot read the record ({err})") from err
    if record.p_signal is None:
        raise ReaderError(header, "corrupt_file", "record holds no physical signal")
    expected = int(record.sig_len)
    if record.p_signal.shape[0] != expected:
        raise ReaderError(header, "wrong_sample_count",
                          f"{record.p_signal.shape[0]} samples, header says {expected}")
    channels: dict[str, np.ndarray] = {}
    for column, (name, unit) in enumerate(zip(record.sig_name, record.units)):
        factor = file_unit_to_mv(str(unit))
        if factor is None:
            raise ReaderError(header, "bad_metadata", f"lead {name} has unknown units {unit!r}")
        channels[name] = record.p_signal[:, column] * factor
    if any(np.isnan(values).any() for values in channels.values()):
        raise ReaderError(header, "corrupt_file", "record holds missing (NaN) samples")
    signal, derived = assemble_leads(channels, header)
    ecg = EcgRecord(signal=signal, sampling_rate=float(record.fs), source=str(header),
                    meta={"derived_leads": derived, "intervals": {}, "comments": list(record.comments)})
    return ecg.resampled(sampling_rate)
