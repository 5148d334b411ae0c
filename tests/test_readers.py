"""Readers of real formats: fixtures with known content are written here, read back and compared value by value."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptacl_lib.data.readers import (
    CineRecord,
    ReaderError,
    read_cine,
    read_cine_dicom,
    read_cine_nifti,
    read_dicom_ecg,
    read_ecg,
    read_idp_csv,
    read_ukb_xml,
    read_wfdb_ecg,
    resample_cycle,
    standardise_stack,
)
from ptacl_lib.data.readers.cine_ops import crop_heart, heart_centre
from ptacl_lib.data.readers.writers import (
    cine_frame_datasets,
    subject_ecg_raw,
    write_cardiosoft_xml,
    write_cine_dicom,
    write_cine_nifti,
    write_dicom_ecg,
    write_idp_csv,
    write_wfdb_ecg,
)
from ptacl_lib.data.schema import LEADS, PHENOTYPES


def _raises(reason: str, path: Path, func, *args, **kwargs) -> ReaderError:
    """Call ``func``; it must raise ReaderError with ``reason`` and a message naming ``path``."""
    with pytest.raises(ReaderError) as info:
        func(*args, **kwargs)
    assert info.value.reason == reason, str(info.value)
    assert str(path) in str(info.value)
    return info.value


# ---- UK Biobank CardioSoft XML -----------------------------------------------------------------

def test_ukb_xml_strip_median_and_intervals_value_by_value(tmp_path: Path) -> None:
    raw = subject_ecg_raw(seed=1)
    median = {lead: (values[:600] // 2) for lead, values in raw.items()}
    path = write_cardiosoft_xml(tmp_path / "1000001_20205_2_0.xml", raw, resolution_uv=4.88, median_raw=median,
                                intervals={"VentricularRate": (63, "BPM"), "QRSDuration": (94, "ms"),
                                           "QTInterval": (402, "ms")})
    assert "\t" in path.read_text(encoding="latin-1")  # values are broken over tab-indented lines
    record = read_ukb_xml(path)
    assert record.sampling_rate == 500 and record.units == "mV" and record.leads == LEADS
    assert record.signal.dtype == np.float32 and record.signal.shape == (12, 5000)
    for k, lead in enumerate(LEADS):
        np.testing.assert_allclose(record.signal[k], raw[lead] * 4.88e-3, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(record.meta["median_beats"][k], median[lead] * 4.88e-3, rtol=1e-6, atol=1e-7)
    assert record.meta["intervals"] == {"VentricularRate": 63.0, "QRSDuration": 94.0, "QTInterval": 402.0}
    assert record.meta["interval_units"]["QRSDuration"] == "ms"
    assert record.meta["derived_leads"] == ()


def test_ukb_xml_derives_missing_limb_leads_and_resamples_on_request(tmp_path: Path) -> None:
    raw = subject_ecg_raw(seed=2)
    eight = {lead: raw[lead] for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")}
    record = read_ukb_xml(write_cardiosoft_xml(tmp_path / "e.xml", eight))
    assert set(record.meta["derived_leads"]) == {"III", "aVR", "aVL", "aVF"}
    i, ii = record.signal[0], record.signal[1]
    np.testing.assert_allclose(record.signal[LEADS.index("III")], ii - i, atol=1e-6)
    np.testing.assert_allclose(record.signal[LEADS.index("aVR")], -(i + ii) / 2, atol=1e-6)
    half = read_ukb_xml(tmp_path / "e.xml", sampling_rate=250)
    assert half.sampling_rate == 250 and half.signal.shape == (12, 2500)
    # slow (1.1 Hz) waves survive decimation: compare away from the filter's edge effects
    np.testing.assert_allclose(half.signal[:, 100:-100], record.signal[:, 200:-200:2], atol=0.01)


def test_ukb_xml_bad_inputs_name_the_file(tmp_path: Path) -> None:
    raw = subject_ecg_raw(seed=3)
    no_v3 = {k: v for k, v in raw.items() if k != "V3"}
    _raises("missing_leads", tmp_path / "a.xml", read_ukb_xml, write_cardiosoft_xml(tmp_path / "a.xml", no_v3))
    _raises("wrong_sample_count", tmp_path / "b.xml", read_ukb_xml,
            write_cardiosoft_xml(tmp_path / "b.xml", raw, sample_count=5500))
    short_lead = {**raw, "V5": raw["V5"][:4000]}
    _raises("wrong_sample_count", tmp_path / "c.xml", read_ukb_xml,
            write_cardiosoft_xml(tmp_path / "c.xml", short_lead, sample_count=5000))
    good = write_cardiosoft_xml(tmp_path / "d.xml", raw).read_bytes()
    (tmp_path / "truncated.xml").write_bytes(good[: len(good) // 2])
    _raises("corrupt_file", tmp_path / "truncated.xml", read_ukb_xml, tmp_path / "truncated.xml")
    (tmp_path / "garbled.xml").write_bytes(good.replace(b",", b",x", 1))
    _raises("corrupt_file", tmp_path / "garbled.xml", read_ukb_xml, tmp_path / "garbled.xml")
    (tmp_path / "other.xml").write_text("<?xml version='1.0'?><AnnotatedECG/>")
    _raises("unsupported_format", tmp_path / "other.xml", read_ukb_xml, tmp_path / "other.xml")
    _raises("missing_file", tmp_path / "absent.xml", read_ukb_xml, tmp_path / "absent.xml")


# ---- DICOM ECG waveform and WFDB --------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["SCPECG", "MDC"])
def test_dicom_ecg_scaling_lead_order_and_resampling(tmp_path: Path, scheme: str) -> None:
    rng = np.random.default_rng(0)
    file_order = list(reversed(LEADS))  # channels stored in a non-standard order
    raw = rng.integers(-2000, 2000, size=(12, 2000)).astype(np.int16)
    median = rng.integers(-500, 500, size=(12, 300)).astype(np.int16)
    path = write_dicom_ecg(tmp_path / "ecg.dcm", raw, file_order, sampling_rate=1000, sensitivity_uv=2.5,
                           baseline_uv=10.0, median_raw=median, scheme=scheme)
    record = read_dicom_ecg(path)
    assert record.sampling_rate == 1000 and record.signal.shape == (12, 2000) and record.units == "mV"
    for k, lead in enumerate(LEADS):
        column = file_order.index(lead)
        np.testing.assert_allclose(record.signal[k], (raw[column] * 2.5 + 10.0) / 1000.0, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(record.meta["median_beats"][k], (median[column] * 2.5 + 10.0) / 1000.0,
                                   rtol=1e-6, atol=1e-6)
    resampled = read_dicom_ecg(path, sampling_rate=500)
    assert resampled.sampling_rate == 500 and resampled.signal.shape == (12, 1000)
    assert resampled.meta["median_beats"].shape == (12, 150)
    assert read_ecg(path).signal.tobytes() == record.signal.tobytes()  # dispatch by suffix


def test_dicom_ecg_bad_inputs(tmp_path: Path) -> None:
    raw = np.zeros((11, 500), dtype=np.int16)
    path = write_dicom_ecg(tmp_path / "eleven.dcm", raw, [lead for lead in LEADS if lead != "V6"])
    _raises("missing_leads", path, read_dicom_ecg, path)
    import pydicom

    ds = pydicom.dcmread(write_dicom_ecg(tmp_path / "t.dcm", np.zeros((12, 500), dtype=np.int16)))
    ds.WaveformSequence[0].WaveformData = ds.WaveformSequence[0].WaveformData[:4000]  # truncated samples
    ds.save_as(tmp_path / "t.dcm")
    _raises("wrong_sample_count", tmp_path / "t.dcm", read_dicom_ecg, tmp_path / "t.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 64)
    _raises("corrupt_file", tmp_path / "junk.dcm", read_dicom_ecg, tmp_path / "junk.dcm")


def test_wfdb_record_in_millivolts_with_derived_limb_leads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = ["i", "ii", "v1", "v2", "v3", "v4", "v5", "v6"]  # PhysioNet-style lower-case, 8 leads
    signal = np.round(rng.normal(0, 0.5, size=(8, 1000)), 3)
    header = write_wfdb_ecg(tmp_path / "rec001", signal, names, sampling_rate=250)
    record = read_wfdb_ecg(header)
    assert record.sampling_rate == 250 and record.signal.shape == (12, 1000)
    for name, values in zip(names, signal):
        np.testing.assert_allclose(record.signal[LEADS.index(name.upper())], values, atol=1e-6)
    np.testing.assert_allclose(record.signal[LEADS.index("aVF")], signal[1] - signal[0] / 2, atol=1e-5)
    assert read_ecg(tmp_path / "rec001.dat").signal.shape == (12, 1000)
    (tmp_path / "rec001.dat").write_bytes((tmp_path / "rec001.dat").read_bytes()[:1000])
    with pytest.raises(ReaderError) as info:
        read_wfdb_ecg(header)
    assert info.value.reason in {"corrupt_file", "wrong_sample_count"} and "rec001" in str(info.value)


# ---- DICOM cine ------------------------------------------------------------------------------

def _known_stack(n_slices: int = 3, n_frames: int = 12, size: int = 24) -> np.ndarray:
    """uint16 [Z, T, H, W] where every pixel says which slice and frame it is in."""
    z, t, y, x = np.meshgrid(*(np.arange(n) for n in (n_slices, n_frames, size, size)), indexing="ij")
    return (1000 * z + 10 * t + (y + x) % 7).astype(np.uint16)


@pytest.mark.parametrize("container", ["cine.zip", "folder"])
def test_cine_dicom_groups_by_position_orders_by_trigger_time(tmp_path: Path, container: str) -> None:
    stack = _known_stack()
    times = np.arange(12) * 40.0 + 5.0
    path = write_cine_dicom(tmp_path / container, cine_frame_datasets(stack, times, nominal_interval=490.0), seed=3)
    record = read_cine(path)
    assert isinstance(record, CineRecord)
    assert record.slice_index == 1 and record.n_slices == 3 and record.slice_location == 10.0
    np.testing.assert_array_equal(record.frames, stack[1].astype(np.float32))
    np.testing.assert_array_equal(record.frame_times, times)
    assert record.cycle_ms == 490.0 and record.pixel_spacing == (1.8, 1.8)
    first = read_cine_dicom(path, slice_index=0)
    np.testing.assert_array_equal(first.frames, stack[0])
    assert first.slice_location == 0.0
    np.testing.assert_array_equal(read_cine_dicom(path, slice_index=-1).frames, stack[2])
    _raises("bad_metadata", path, read_cine_dicom, path, slice_index=3)


def test_cine_dicom_cycle_without_nominal_interval_and_duplicate_series(tmp_path: Path) -> None:
    stack = _known_stack(n_slices=1)
    times = np.arange(12) * 40.0
    extra = cine_frame_datasets(_known_stack(n_slices=1, n_frames=5) + 5000, np.arange(5) * 10.0)  # shorter copy
    path = write_cine_dicom(tmp_path / "c.zip", cine_frame_datasets(stack, times) + extra)
    record = read_cine_dicom(path)
    assert record.cycle_ms == pytest.approx(480.0)  # last trigger time + one frame step
    np.testing.assert_array_equal(record.frames, stack[0])  # the series with more frames wins the position


def test_cine_dicom_bad_inputs(tmp_path: Path) -> None:
    stack = _known_stack(n_slices=2)
    times = np.arange(12) * 40.0
    instances = np.tile(np.arange(1, 13), (2, 1))
    instances[1, [3, 7]] = instances[1, [7, 3]]  # acquisition order disagrees with trigger times
    path = write_cine_dicom(tmp_path / "nonmono.zip", cine_frame_datasets(stack, times, instance_numbers=instances))
    error = _raises("non_monotonic_trigger_times", path, read_cine_dicom, path)
    assert "instance" in str(error)
    repeated = times.copy()
    repeated[5] = repeated[4]
    path = write_cine_dicom(tmp_path / "dup.zip", cine_frame_datasets(stack, repeated))
    _raises("non_monotonic_trigger_times", path, read_cine_dicom, path)
    path = write_cine_dicom(tmp_path / "few.zip", cine_frame_datasets(stack, times))
    _raises("too_few_frames", path, read_cine_dicom, path, min_frames=20)
    (tmp_path / "cut.zip").write_bytes(path.read_bytes()[:5000])
    _raises("corrupt_file", tmp_path / "cut.zip", read_cine_dicom, tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as archive:
        archive.writestr("1.2.3.dcm", b"not a dicom file")
    _raises("corrupt_file", tmp_path / "junk.zip", read_cine_dicom, tmp_path / "junk.zip")
    _raises("missing_file", tmp_path / "absent.zip", read_cine, tmp_path / "absent.zip")


# ---- NIfTI cine ------------------------------------------------------------------------------

def test_cine_nifti_slice_frames_and_times(tmp_path: Path) -> None:
    stack = _known_stack(n_slices=3, n_frames=15, size=20)[..., :16]  # [Z, T, H, W=16]: rows != columns
    volume = stack.transpose(3, 2, 0, 1)  # NIfTI [X=W, Y=H, Z, T]
    (tmp_path / "subj").mkdir()
    path = write_cine_nifti(tmp_path / "subj" / "sa.nii.gz", volume, pixel_spacing=(1.5, 2.0), dt_ms=32.0)
    record = read_cine(tmp_path / "subj")  # a folder holding sa.nii.gz
    assert record.slice_index == 1 and record.n_slices == 3
    np.testing.assert_array_equal(record.frames, stack[1])
    np.testing.assert_allclose(record.frame_times, np.arange(15) * 32.0)
    assert record.cycle_ms == pytest.approx(480.0) and record.pixel_spacing == (2.0, 1.5)
    assert record.slice_location == pytest.approx(10.0)
    _raises("too_few_frames", path, read_cine_nifti, path, min_frames=16)
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:2000]))
    _raises("corrupt_file", tmp_path / "cut.nii.gz", read_cine_nifti, tmp_path / "cut.nii.gz")


# ---- cine standardisation ----------------------------------------------------------------------

def _disc_record(n_frames: int = 16, size: int = 80, centre: tuple[int, int] = (25, 50)) -> CineRecord:
    yy, xx = np.mgrid[:size, :size]
    radius = 8 + 4 * np.cos(2 * np.pi * np.arange(n_frames) / n_frames)
    frames = np.stack([100.0 + 800.0 * ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < r ** 2) for r in radius])
    return CineRecord(frames=frames.astype(np.float32), frame_times=np.arange(n_frames) * 50.0,
                      cycle_ms=n_frames * 50.0, pixel_spacing=(2.0, 2.0), slice_location=0.0, slice_index=0,
                      n_slices=1, source="disc")


def test_heart_crop_centres_on_the_moving_region() -> None:
    record = _disc_record()
    row, col = heart_centre(record.frames, record.pixel_spacing)
    assert abs(row - 25) <= 1 and abs(col - 50) <= 1
    cropped = crop_heart(record, image_size=32, crop_mm=64.0)
    assert cropped.frames.shape == (16, 32, 32) and cropped.pixel_spacing == (2.0, 2.0)
    # the disc sits in the middle of the crop: its centre pixel is bright in every frame
    assert (cropped.frames[:, 16, 16] > 800).all() and (cropped.frames[:, 0, 0] < 200).all()


def test_resample_cycle_is_periodic_linear_interpolation() -> None:
    record = _disc_record(n_frames=16)
    same = resample_cycle(record, 16)
    np.testing.assert_allclose(same.frames, record.frames)
    double = resample_cycle(record, 32)
    np.testing.assert_allclose(double.frames[::2], record.frames, atol=1e-4)
    np.testing.assert_allclose(double.frames[1], (record.frames[0] + record.frames[1]) / 2, atol=1e-4)
    np.testing.assert_allclose(double.frames[-1], (record.frames[-1] + record.frames[0]) / 2, atol=1e-4)  # wraps
    np.testing.assert_allclose(double.frame_times, np.arange(32) * 25.0)
    out = standardise_stack([record], 20, 24)  # one slice: [1, T, H, W], as every stack
    assert out.shape == (1, 20, 24, 24) and out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    flat = CineRecord(**{**record.__dict__, "frames": np.ones_like(record.frames)})
    _raises("corrupt_file", Path("disc"), standardise_stack, [flat], 20, 24)


# ---- IDP table -----------------------------------------------------------------------------

def test_idp_csv_maps_fields_onto_manifest_names(tmp_path: Path) -> None:
    values = {"1000001": {name: 10.0 + k for k, name in enumerate(PHENOTYPES)},
              "1000002": {name: 50.5 + k for k, name in enumerate(PHENOTYPES)}}
    path = write_idp_csv(tmp_path / "idp.csv", values)
    table = pd.read_csv(path)
    assert "24104-2.0" in table.columns and "24100-2.0" in table.columns
    table["31-0.0"] = [1, 0]
    table["21003-2.0"] = [61, 70]
    table.to_csv(path, index=False)
    idp = read_idp_csv(path)
    assert list(idp.index) == ["1000001", "1000002"]
    for subject, expected in values.items():
        assert idp.loc[subject, list(PHENOTYPES)].tolist() == [expected[name] for name in PHENOTYPES]
    assert idp["sex"].tolist() == ["M", "F"] and idp["age"].tolist() == [61.0, 70.0]
    assert idp["lvco"].isna().all()  # 24104 (LV cardiac output) kept aside, not a phenotype
    rap = table.rename(columns={c: f"p{c.split('-')[0]}_i2" for c in table.columns if c.endswith("-2.0")})
    rap.to_csv(tmp_path / "rap.csv", index=False)
    assert read_idp_csv(tmp_path / "rap.csv").loc["1000002", "lvedv"] == 50.5


def test_idp_csv_bad_inputs(tmp_path: Path) -> None:
    path = write_idp_csv(tmp_path / "idp.csv", {"7": {name: 1.0 for name in PHENOTYPES}})
    table = pd.read_csv(path)
    table.drop(columns=["24105-2.0"]).to_csv(tmp_path / "nolvm.csv", index=False)
    error = _raises("bad_metadata", tmp_path / "nolvm.csv", read_idp_csv, tmp_path / "nolvm.csv")
    assert "24105" in str(error)
    table["24100-2.0"] = ["abc"]
    table.to_csv(tmp_path / "text.csv", index=False)
    error = _raises("corrupt_file", tmp_path / "text.csv", read_idp_csv, tmp_path / "text.csv")
    assert "subject 7" in str(error)


def test_dispatch_rejects_unknown_types(tmp_path: Path) -> None:
    (tmp_path / "x.edf").write_bytes(b"0")
    _raises("unsupported_format", tmp_path / "x.edf", read_ecg, tmp_path / "x.edf")
    (tmp_path / "x.png").write_bytes(b"0")
    _raises("unsupported_format", tmp_path / "x.png", read_cine, tmp_path / "x.png")
