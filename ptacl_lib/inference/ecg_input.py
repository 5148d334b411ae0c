"""A new ECG on its way into a model bundle: read, checked, and preprocessed exactly as training did.

Training read every ECG from its cohort's store, where it lies in mV at the store's rate over
``duration_s`` seconds, then band-passed and resampled it (``data.preprocess.preprocess_ecg``) and divided
each lead by the training split's scale. A new ECG takes the same road (``InputSpec`` holds the bundle's
settings): any format ``data.readers.read_ecg`` reads, or a ``.npy`` array with its rate and units given;
resampled to the store's rate; cut into consecutive windows of the training duration (a recording
longer than one window gives several, up to ``max_windows``, and one answer: ``Predictor`` averages them).

Refused with a reason, never silently predicted (``InputRejected.reason``):

* ``unreadable``: the reader failed (truncated, corrupt, unsupported file), its message kept;
* ``leads``: fewer leads than the model reads, the missing ones named;
* ``rate``: sampled below the model's ECG rate (the library never upsamples what it was not given);
* ``duration``: shorter than one training window;
* ``units``: amplitudes that look like µV or V where mV is expected (the commonest silent failure of
  ECG models: an LV mass predicted from a signal 1,000 times too large);
* ``quality``: no usable lead (every lead flat, saturated or noisy: ``data.ecg_quality``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.ecg_quality import EcgQuality, assess_ecg_quality
from ..data.preprocess import PreprocessConfig, preprocess_ecg
from ..data.readers import ReaderError, read_ecg
from ..data.readers.records import resample_ecg
from ..data.schema import LEADS, UNIT_TO_MV

#: The median over leads of a lead's robust peak-to-peak amplitude (0.5 to 99.5 percentile), in mV, outside
#: which a recording is refused as being in other units: a resting ECG spans about 0.3-5 mV per lead; µV
#: makes that 300-5,000, V makes it 0.0003-0.005.
PLAUSIBLE_SPAN_MV: tuple[float, float] = (0.02, 50.0)
#: Consecutive training-length windows read from a longer recording, at most.
MAX_WINDOWS = 6
REASONS: tuple[str, ...] = ("unreadable", "leads", "rate", "duration", "units", "quality")


class InputRejected(ValueError):
    """An ECG the bundle cannot predict from; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses from a reader process intact
        return (InputRejected, (self.reason, self.detail))


@dataclass(frozen=True)
class InputSpec:
    """What a bundle's model expects (from its ``bundle.json``): the preprocessing, the store's rate and
    window length the ECG is brought to first, and the training split's per-lead scale."""

    preprocess: PreprocessConfig
    stored_ecg_hz: int
    n_samples: int
    lead_scale: np.ndarray  #: [12]
    max_windows: int = MAX_WINDOWS

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.stored_ecg_hz


@dataclass(frozen=True)
class PreparedEcg:
    """One recording, ready for the encoder: ``windows`` float32 ``[W, 12, L]`` (preprocessed and scaled)."""

    windows: np.ndarray
    quality: EcgQuality

    @property
    def quality_flags(self) -> str:
        return ";".join(self.quality.flags)


def units_problem(signal_mv: np.ndarray) -> str | None:
    """``"µV"`` or ``"V"`` when the amplitudes of a ``[12, S]`` signal read as mV look like those units."""
    span = np.percentile(signal_mv, 99.5, axis=-1) - np.percentile(signal_mv, 0.5, axis=-1)
    typical = float(np.median(span[span > 0])) if (span > 0).any() else 0.0
    if typical > PLAUSIBLE_SPAN_MV[1]:
        return "µV"
    if 0.0 < typical < PLAUSIBLE_SPAN_MV[0]:
        return "V"
    return None


def mv_per_unit(units: str) -> np.float32:
    """The factor that brings a signal in ``units`` (``mV``, ``uV`` or ``V``) to mV; other units are refused."""
    if units not in UNIT_TO_MV:
        raise InputRejected("units", f"unknown units {units!r}; choose from {sorted(UNIT_TO_MV)}")
    return np.float32(UNIT_TO_MV[units])


def read_signal(path: str | Path, sampling_rate: float | None = None, units: str = "mV") -> tuple[np.ndarray, float]:
    """``([12, S] mV, rate)`` of a file: any ``read_ecg`` format, or ``.npy`` ``[12, S]`` in ``LEADS`` order with
    ``sampling_rate`` and ``units`` given. Failures are ``InputRejected`` with the reader's reason."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not sampling_rate:
            raise InputRejected("unreadable", f"{path.name}: a .npy ECG needs its sampling rate (--sampling-rate)")
        to_mv = mv_per_unit(units)
        try:
            signal = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise InputRejected("unreadable", f"{path.name}: {err}") from err
        if signal.ndim != 2 or len(LEADS) not in signal.shape:
            raise InputRejected("leads", f"{path.name}: shape {signal.shape}; a .npy ECG is [12, S] in the order "
                                         f"{', '.join(LEADS)}")
        signal = signal if signal.shape[0] == len(LEADS) else signal.T
        return signal.astype(np.float32) * to_mv, float(sampling_rate)
    try:
        record = read_ecg(path)
    except ReaderError as err:
        reason = "leads" if err.reason == "missing_leads" else "unreadable"
        raise InputRejected(reason, f"{path.name}: {err.reason}: {err.detail}") from err
    except Exception as err:  # noqa: BLE001 - any reader failure names the file, never stops the batch
        raise InputRejected("unreadable", f"{path.name}: {type(err).__name__}: {err}") from err
    return record.signal, float(record.sampling_rate)


def prepare_signal(signal_mv: np.ndarray, fs: float, spec: InputSpec) -> PreparedEcg:
    """A ``[12, S]`` mV recording at ``fs`` Hz brought to the model's input (the module docstring's road)."""
    signal = np.asarray(signal_mv, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[0] != len(LEADS):
        raise InputRejected("leads", f"expected [12, S] in the order {', '.join(LEADS)}, got {signal.shape}")
    if not np.isfinite(signal).all():
        raise InputRejected("unreadable", "the signal holds NaN or infinite samples")
    model_hz = spec.preprocess.geometry.ecg_hz
    if fs < model_hz:
        raise InputRejected("rate", f"sampled at {fs:g} Hz, below the model's {model_hz} Hz")
    wrong = units_problem(signal)
    if wrong:
        raise InputRejected("units", f"amplitudes look like {wrong}, not mV (median lead span "
                                     f"{float(np.median(np.ptp(signal, axis=-1))):.3g}); give the units (--units)")
    stored = resample_ecg(signal, fs, spec.stored_ecg_hz) if fs != spec.stored_ecg_hz else signal
    n_windows = min(stored.shape[-1] // spec.n_samples, spec.max_windows)
    if n_windows < 1:
        raise InputRejected("duration", f"{signal.shape[-1] / fs:.2f} s long, shorter than the {spec.duration_s:g} s "
                                        "the model reads")
    quality = assess_ecg_quality(stored[:, :spec.n_samples], spec.stored_ecg_hz)
    if not quality.usable_leads.any():
        raise InputRejected("quality", f"no usable lead ({';'.join(quality.flags)})")
    scale = spec.lead_scale[:, None].astype(np.float32)
    windows = [preprocess_ecg(stored[:, k * spec.n_samples:(k + 1) * spec.n_samples], spec.stored_ecg_hz,
                              spec.preprocess) / scale for k in range(n_windows)]
    return PreparedEcg(np.stack(windows).astype(np.float32), quality)
