"""Writers of every format the readers read, with exactly known content.

They build the test fixtures, the benchmark cohorts and a small UK Biobank-shaped cohort
(``write_ukb_like_cohort``) that exercises ``prepare-ukb`` without UK Biobank access. The files
follow the real layouts (CardioSoft XML, DICOM 12-lead ECG Waveform Storage, WFDB, single-frame
MR cine DICOM in a zip with UID-like file names, NIfTI ``sa.nii.gz``, UKB showcase-style CSV).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
import wfdb
from lxml import etree
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..schema import LEADS, PHENOTYPES
from .idp import IDP_FIELDS

ECG_WAVEFORM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage
MR_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.4"
#: SCPECG code numbers of the 12 leads (DICOM CID 3001): "5.6.3-9-N".
SCPECG_NUMBERS: dict[str, int] = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
                                  "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}


def _waveform_text(samples: np.ndarray, per_line: int = 16) -> str:
    """Comma-separated integers broken into tab-indented lines, as CardioSoft writes them."""
    lines = [",".join(map(str, samples[i:i + per_line].tolist())) for i in range(0, samples.size, per_line)]
    return "\n\t\t" + ",\n\t\t".join(lines) + "\n\t"


def _waveform_block(parent: etree._Element, tag: str, raw: Mapping[str, np.ndarray], sampling_rate: float,
                    resolution_uv: float, sample_count: int | None) -> None:
    block = etree.SubElement(parent, tag)
    etree.SubElement(block, "NumberOfLeads").text = str(len(raw))
    etree.SubElement(block, "SampleRate", units="Hz").text = f"{sampling_rate:g}"
    count = sample_count if sample_count is not None else len(next(iter(raw.values())))
    etree.SubElement(block, "ChannelSampleCountTotal").text = str(count)
    etree.SubElement(block, "Resolution", units="uVperLsb").text = f"{resolution_uv:g}"
    for lead, samples in raw.items():
        etree.SubElement(block, "WaveformData", lead=lead).text = _waveform_text(np.asarray(samples))


def write_cardiosoft_xml(path: str | Path, raw: Mapping[str, np.ndarray], *, sampling_rate: float = 500,
                         resolution_uv: float = 5, median_raw: Mapping[str, np.ndarray] | None = None,
                         intervals: Mapping[str, tuple[float, str]] | None = None,
                         sample_count: int | None = None) -> Path:
    """A CardioSoft XML with integer samples ``raw`` (lead -> ints in units of ``resolution_uv`` uV).

    ``intervals`` maps a measurement tag to (value, units); ``sample_count`` overrides the
    declared ChannelSampleCountTotal (to build inconsistent files).
    """
    root = etree.Element("CardiologyXML")
    etree.SubElement(root, "ObservationType").text = "RestECG"
    measurements = etree.SubElement(root, "RestingECGMeasurements")
    for tag, (value, units) in (intervals or {}).items():
        etree.SubElement(measurements, tag, units=units).text = f"{value:g}"
    if median_raw is not None:
        _waveform_block(measurements, "MedianSamples", median_raw, sampling_rate, resolution_uv, None)
    _waveform_block(root, "StripData", raw, sampling_rate, resolution_uv, sample_count)
    path = Path(path)
    etree.ElementTree(root).write(str(path), xml_declaration=True, encoding="ISO-8859-1", pretty_print=True)
    return path


def file_dataset(sop_class: str, modality: str) -> Dataset:
    """An empty DICOM dataset with file meta for ``sop_class``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "ANON"
    return ds


def _multiplex_group(raw: np.ndarray, leads: Sequence[str], label: str, sampling_rate: float,
                     sensitivity_uv: float, baseline_uv: float, scheme: str) -> Dataset:
    group = Dataset()
    group.MultiplexGroupLabel = label
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(leads)
    group.NumberOfWaveformSamples = raw.shape[1]
    group.SamplingFrequency = f"{sampling_rate:g}"
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for lead in leads:
        source = Dataset()
        if scheme == "MDC":
            source.CodeValue, source.CodingSchemeDesignator = f"2:{SCPECG_NUMBERS[lead]}", "MDC"
        else:
            source.CodeValue, source.CodingSchemeDesignator = f"5.6.3-9-{SCPECG_NUMBERS[lead]}", "SCPECG"
        source.CodeMeaning = f"Lead {lead}"
        units = Dataset()
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
        channel = Dataset()
        channel.ChannelSourceSequence = [source]
        channel.ChannelSensitivity = f"{sensitivity_uv:g}"
        channel.ChannelSensitivityUnitsSequence = [units]
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = f"{baseline_uv:g}"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    group.WaveformData = np.ascontiguousarray(raw.T.astype("<i2")).tobytes()
    return group


def write_dicom_ecg(path: str | Path, raw: np.ndarray, leads: Sequence[str] = LEADS, *, sampling_rate: float = 500,
                    sensitivity_uv: float = 2.5, baseline_uv: float = 0.0, median_raw: np.ndarray | None = None,
                    scheme: str = "SCPECG") -> Path:
    """A 12-lead ECG Waveform Storage file: int16 ``raw`` [C, S]; value in uV = raw * sensitivity + baseline."""
    ds = file_dataset(ECG_WAVEFORM_SOP_CLASS, "ECG")
    groups = [_multiplex_group(raw, leads, "RHYTHM", sampling_rate, sensitivity_uv, baseline_uv, scheme)]
    if median_raw is not None:
        groups.append(_multiplex_group(median_raw, leads, "MEDIAN", sampling_rate, sensitivity_uv, baseline_uv, scheme))
    ds.WaveformSequence = groups
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_wfdb_ecg(path: str | Path, signal_mv: np.ndarray, leads: Sequence[str] = LEADS,
                   sampling_rate: float = 500) -> Path:
    """A WFDB record (format 16, 1000 adu/mV) of float [C, S] mV; returns the ``.hea`` path."""
    path = Path(path)
    wfdb.wrsamp(path.stem, fs=sampling_rate, units=["mV"] * len(leads), sig_name=list(leads),
                p_signal=np.asarray(signal_mv, dtype=np.float64).T, fmt=["16"] * len(leads),
                adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads), write_dir=str(path.parent))
    return path.with_suffix(".hea")


def cine_frame_datasets(stack: np.ndarray, trigger_times: Sequence[float], *, pixel_spacing: float = 1.8,
                        slice_gap_mm: float = 10.0, nominal_interval: float | None = None,
                        instance_numbers: np.ndarray | None = None) -> list[Dataset]:
    """Single-frame MR DICOMs of a short-axis stack uint16 [Z, T, H, W], one series per slice (as UKB).

    Slices are axial-like planes ``slice_gap_mm`` apart; ``instance_numbers`` [Z, T] overrides the
    acquisition numbering (to build non-monotonic trigger times).
    """
    n_slices, n_frames, rows, cols = stack.shape
    study = generate_uid()
    datasets = []
    for z in range(n_slices):
        series = generate_uid()
        for t in range(n_frames):
            ds = file_dataset(MR_IMAGE_SOP_CLASS, "MR")
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SeriesNumber, ds.SeriesDescription = z + 1, f"CINE_segmented_SAX_b{z + 1}"
            ds.InstanceNumber = int(instance_numbers[z, t]) if instance_numbers is not None else t + 1
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-50.0, -60.0, z * slice_gap_mm]
            ds.SliceLocation = z * slice_gap_mm
            ds.TriggerTime = f"{trigger_times[t]:g}"
            if nominal_interval is not None:
                ds.NominalInterval = f"{nominal_interval:g}"
            ds.PixelSpacing = [pixel_spacing, pixel_spacing]
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.ascontiguousarray(stack[z, t].astype("<u2")).tobytes()
            datasets.append(ds)
    return datasets


def write_cine_dicom(path: str | Path, datasets: Sequence[Dataset], seed: int = 0) -> Path:
    """Write cine DICOMs in shuffled order with UID file names: into a zip (``.zip`` path) or a folder.

    A zip also gets UKB's ``manifest.cvs`` member, which readers must ignore.
    """
    path = Path(path)
    order = np.random.default_rng(seed).permutation(len(datasets))
    named = [(f"{datasets[i].SOPInstanceUID}.dcm", datasets[i]) for i in order]
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("manifest.cvs", "filename,date\n" + "".join(f"{n},20150101\n" for n, _ in named))
            for name, ds in named:
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                archive.writestr(name, buffer.getvalue())
    else:
        path.mkdir(parents=True, exist_ok=True)
        for name, ds in named:
            ds.save_as(path / name, enforce_file_format=True)
    return path


def write_cine_nifti(path: str | Path, volume: np.ndarray, *, pixel_spacing: tuple[float, float] = (1.8, 1.8),
                     slice_gap_mm: float = 10.0, dt_ms: float = 20.0) -> Path:
    """A 4D cine NIfTI [X, Y, Z, T] with time step ``dt_ms`` (time unit msec in the header)."""
    affine = np.diag([pixel_spacing[0], pixel_spacing[1], slice_gap_mm, 1.0])
    image = nib.Nifti1Image(np.asarray(volume), affine)
    image.header.set_zooms((pixel_spacing[0], pixel_spacing[1], slice_gap_mm, dt_ms))
    image.header.set_xyzt_units(xyz="mm", t="msec")
    path = Path(path)
    nib.save(image, str(path))
    return path


def write_idp_csv(path: str | Path, phenotypes: Mapping[str, Mapping[str, float]], instance: int = 2) -> Path:
    """A UKB showcase-style CSV (``eid``, ``24100-2.0`` ...) from subject -> {manifest name: value}."""
    by_name = {name: field for field, name in IDP_FIELDS.items()}
    rows = [{"eid": subject, **{f"{by_name[k]}-{instance}.0": v for k, v in values.items()}}
            for subject, values in phenotypes.items()]
    columns = ["eid", *(f"{field}-{instance}.0" for field in IDP_FIELDS)]
    path = Path(path)
    pd.DataFrame(rows).reindex(columns=columns).to_csv(path, index=False)
    return path


def subject_ecg_raw(seed: int, n_samples: int = 5000, sampling_rate: float = 500) -> dict[str, np.ndarray]:
    """Known integer strips (5 uV/LSB) for one subject: lead-specific sinusoids, Einthoven-consistent limb leads."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sampling_rate
    i = np.rint(120 * np.sin(2 * np.pi * 1.1 * t + rng.uniform(0, 6))).astype(np.int32)
    ii = np.rint(200 * np.sin(2 * np.pi * 1.1 * t + rng.uniform(0, 6))).astype(np.int32)
    raw = {"I": i, "II": ii, "III": ii - i, "aVR": -(i + ii) // 2, "aVL": i - ii // 2, "aVF": ii - i // 2}
    for k, lead in enumerate(("V1", "V2", "V3", "V4", "V5", "V6")):
        raw[lead] = np.rint(150 * np.sin(2 * np.pi * (1.1 + 0.1 * k) * t + rng.uniform(0, 6))).astype(np.int32)
    return {lead: raw[lead] for lead in LEADS}


def subject_ecg_synthetic(seed: int) -> dict[str, np.ndarray]:
    """Integer strips (5 uV/LSB, 10 s at 500 Hz) of a real-shaped 12-lead ECG: subject ``seed`` of the
    synthetic generator (P-QRS-T morphology, noise, sometimes ectopy), for fixtures that pass ECG quality."""
    from ..synthetic.cohort import SyntheticOptions, simulate_subject

    ecg = simulate_subject(seed, 0, SyntheticOptions()).ecg  # [12, 5000] in mV
    return {lead: np.rint(ecg[k] / 0.005).astype(np.int32) for k, lead in enumerate(LEADS)}


def beating_stack(seed: int, n_slices: int = 3, n_frames: int = 20, size: int = 64) -> np.ndarray:
    """uint16 [Z, T, H, W]: a bright disc (blood pool) whose radius beats over the cycle, off-centre, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size * 0.4 + rng.uniform(-3, 3), size * 0.6 + rng.uniform(-3, 3)
    radius = size * (0.12 + 0.05 * np.cos(2 * np.pi * np.arange(n_frames) / n_frames))
    stack = np.empty((n_slices, n_frames, size, size), dtype=np.uint16)
    for z in range(n_slices):
        scale = 1.0 - 0.2 * abs(z - n_slices // 2)
        for t in range(n_frames):
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (radius[t] * scale) ** 2
            stack[z, t] = 100 + 800 * disc + rng.integers(0, 20, (size, size))
    return stack


def ukb_like_phenotypes(seed: int) -> dict[str, float]:
    """Plausible, mutually consistent phenotypes of one subject, varying with ``seed``: EDV > ESV, SV = EDV - ESV,
    EF = 100 * SV / EDV, both ventricles ejecting about one stroke volume, volumes and LV mass well inside the
    healthy UK Biobank ranges (``data.phenotype_checks``). Volumes to 0.1 mL, EFs to 0.01 %, as in the IDPs."""
    rng = np.random.default_rng(seed)
    values: dict[str, float] = {"lvm": round(float(rng.uniform(70.0, 130.0)), 1)}
    lvedv = round(float(rng.uniform(110.0, 190.0)), 1)
    volumes = {"lv": (lvedv, round(lvedv * float(rng.uniform(0.35, 0.45)), 1))}
    rvedv = round(lvedv * float(rng.uniform(1.0, 1.15)), 1)
    volumes["rv"] = (rvedv, round(rvedv - (lvedv - volumes["lv"][1]) * float(rng.uniform(0.95, 1.05)), 1))
    for side, (edv, esv) in volumes.items():
        sv = round(edv - esv, 1)
        values.update({f"{side}edv": edv, f"{side}esv": esv, f"{side}sv": sv, f"{side}ef": round(100.0 * sv / edv, 2)})
    return {name: values[name] for name in PHENOTYPES}


def write_ukb_like_cohort(root: str | Path, n_subjects: int, *, seed: int = 0, first_eid: int = 1000001,
                          n_slices: int = 3, n_frames: int = 20, size: int = 64,
                          realistic_ecg: bool = False) -> dict[str, Path]:
    """A UKB-shaped cohort: ``ecg/EID_20205_2_0.xml``, ``cmr/EID_20209_2_0.zip`` and ``idp.csv``.

    ECGs are known sinusoid strips (``subject_ecg_raw``), or real-shaped ones (``subject_ecg_synthetic``)
    with ``realistic_ecg``; phenotypes are ``ukb_like_phenotypes``. Returns the paths as
    {"ecg_dir", "cmr_dir", "idp_csv"}.
    """
    ecg_raw = subject_ecg_synthetic if realistic_ecg else subject_ecg_raw
    root = Path(root)
    ecg_dir, cmr_dir = root / "ecg", root / "cmr"
    ecg_dir.mkdir(parents=True, exist_ok=True)
    cmr_dir.mkdir(parents=True, exist_ok=True)
    rr = 1000.0
    times = np.arange(n_frames) * (rr / n_frames)
    phenotypes: dict[str, dict[str, float]] = {}
    for k in range(n_subjects):
        eid = str(first_eid + k)
        write_cardiosoft_xml(ecg_dir / f"{eid}_20205_2_0.xml", ecg_raw(seed * 100003 + k),
                             intervals={"VentricularRate": (60 + k % 30, "BPM"), "QRSDuration": (90, "ms")})
        stack = beating_stack(seed * 100003 + k, n_slices, n_frames, size)
        write_cine_dicom(cmr_dir / f"{eid}_20209_2_0.zip",
                         cine_frame_datasets(stack, times, nominal_interval=rr), seed=k)
        phenotypes[eid] = ukb_like_phenotypes(seed * 100003 + k)
    idp_csv = write_idp_csv(root / "idp.csv", phenotypes)
    return {"ecg_dir": ecg_dir, "cmr_dir": cmr_dir, "idp_csv": idp_csv}


def write_cohort_ecgs(cohort: Any, rows: Sequence[int], out_dir: str | Path,
                      resolution_uv: float = 5.0) -> list[Path]:
    """The ECGs of ``rows`` of a cohort as CardioSoft XML files, ``<subject_id>.xml`` (integer samples of
    ``resolution_uv`` µV, as the device writes them): real files of a held-out cohort to predict from."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in rows:
        ecg = cohort.ecg(int(row))
        raw = {lead: np.rint(ecg[k] * 1000.0 / resolution_uv).astype(np.int32) for k, lead in enumerate(LEADS)}
        paths.append(write_cardiosoft_xml(out / f"{cohort.table['subject_id'].iloc[int(row)]}.xml", raw,
                                          sampling_rate=cohort.geometry.ecg_hz, resolution_uv=resolution_uv))
    return paths
