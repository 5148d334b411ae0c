"""A model bundle: one folder that carries what a finished study trained to any ECG, with no study behind it.

``export_bundle(study, out, arm="ptacl")`` writes (the Hugging Face layout: a config, safetensors weights,
a README model card, so ``huggingface_hub`` can share the folder as it is)::

    bundle.json                      format and library version, commit, every preprocessing setting (geometry,
                                     store rate and window, lead order, units, filters, per-lead scale), the
                                     model preset and architecture, phenotype names and units, the calibration,
                                     the training cohort, the measured test numbers, and a sha256 per file
    ecg-encoder-seed<k>.safetensors  each seed's ECG encoder and projection head (``models.ECGEmbedder``)
    probes.safetensors               each seed's ridge probe (``evaluate.regression.LinearProbe``)
    calibration.safetensors          the validation subjects' conformal scores, so any coverage can be asked
    reference.safetensors            the training subjects' ECG embeddings [seeds, N, E] (``--no-reference``: none)
    reference.csv                    their subject ids and measured phenotypes
    README.md                        the model card (``inference.card``)
    ecg-encoder-seed<k>.onnx         with ``onnx=True``: the same encoders for ONNX Runtime

``load_bundle`` reads it back with no pickle anywhere (JSON, CSV, safetensors) and refuses a bundle whose
files do not match their checksums.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..data.schema import LEADS, PHENOTYPE_UNITS, PHENOTYPES
from ..evaluate.calibration import DEFAULT_COVERAGE, DEFAULT_METHOD, Calibration
from ..evaluate.regression import LinearProbe
from .ecg_input import InputSpec

FORMAT = "ptacl-model-bundle"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
PROBES_FILE = "probes.safetensors"
CALIBRATION_FILE = "calibration.safetensors"
REFERENCE_FILE = "reference.safetensors"
REFERENCE_TABLE = "reference.csv"
CARD_FILE = "README.md"
#: A query ECG is out of distribution when its distance to the nearest reference subject is past this quantile
#: of the reference subjects' own nearest-neighbour distances.
OOD_QUANTILE = 0.99


def encoder_file(seed: int, suffix: str = "safetensors") -> str:
    """The file name of one seed's ECG encoder in a bundle."""
    return f"ecg-encoder-seed{seed}.{suffix}"


class BundleError(ValueError):
    """A folder that is not a usable model bundle; the message says why."""


@dataclass(frozen=True)
class Reference:
    """The training subjects a bundle retrieves from: ids, measured phenotypes, and L2-normalised embeddings."""

    subject_ids: np.ndarray  #: str [N]
    phenotypes: pd.DataFrame  #: [N, 9] in ``PHENOTYPES`` order
    embeddings: np.ndarray  #: float32 [S, N, E], one unit-length embedding per seed
    ood_threshold: float

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """``[Q, N]`` ensemble distances ``1 - mean over seeds of the cosine similarity`` of ``[Q, S, E]`` queries."""
        unit = queries / np.maximum(np.linalg.norm(queries, axis=-1, keepdims=True), 1e-12)
        return 1.0 - np.einsum("qse,sne->qn", unit, self.embeddings) / self.embeddings.shape[0]


def ensemble_distances_within(embeddings: np.ndarray) -> np.ndarray:
    """Each of ``[S, N, E]`` unit embeddings' distance to its nearest other subject (``Reference.distances``)."""
    similarity = np.einsum("sne,sme->nm", embeddings, embeddings) / embeddings.shape[0]
    np.fill_diagonal(similarity, -np.inf)
    return 1.0 - similarity.max(axis=1)


@dataclass(frozen=True)
class Bundle:
    """A loaded model bundle: its record, input specification, encoders, probes, calibration and reference."""

    root: Path
    meta: dict[str, Any]
    spec: InputSpec
    encoders: list[dict[str, Any]]  #: one state dict per seed (``models.ECGEmbedder``)
    probes: list[LinearProbe]
    calibration: Calibration
    reference: Reference | None

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.meta["seeds"]]

    def model_config(self) -> Any:
        """The ``ModelConfig`` of every seed's encoder (architecture at the bundle's geometry)."""
        from ..models import ModelConfig

        return ModelConfig.from_record(self.meta["model"]["architecture"], self.spec.preprocess.geometry)

    def embedders(self, device: str = "cpu") -> list[Any]:
        """Every seed's ``ECGEmbedder``, in eval mode on ``device``."""
        import torch

        from ..models import ECGEmbedder

        config = self.model_config()
        out = []
        for state in self.encoders:
            embedder = ECGEmbedder(config)
            embedder.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
            out.append(embedder.to(device).eval())
        return out


# ----------------------------------------------------------------------------- files


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_tensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def _load_tensors(path: Path, data: bytes | None = None) -> dict[str, np.ndarray]:
    """The arrays of the safetensors file ``path``, parsed from ``data`` when its bytes are already read."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(path.read_bytes() if data is None else data)
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{path} is not a safetensors file ({err}); a bundle holds no other kind of weights") from err


def library_commit() -> str | None:
    """The git commit of the library's checkout (None outside one)."""
    from ..paths import REPO_ROOT

    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# ----------------------------------------------------------------------------- export


def _arm_runs(study: Path, arm: str) -> list[Path]:
    from ..runs import arm_run_dir, discover_runs, read_config

    runs = [r for r in discover_runs(study) if r.parent == arm_run_dir(study, arm, 0).parent]
    if not runs:
        raise BundleError(f"{study} holds no runs of arm {arm!r}")
    missing = [str(r) for r in runs if not (r / "embeddings.npz").exists()]
    if missing:
        raise BundleError(f"run(s) {missing} are not evaluated yet (no embeddings.npz): finish the study first")
    return sorted(runs, key=lambda r: read_config(r).seed)


def training_record(cohort: Any, runs: list[Path]) -> dict[str, Any]:
    """What the training cohort was: synthetic or real, its size per split, where it came from."""
    from ..runs import read_evaluation

    attrs = cohort.store.meta.attrs if cohort.store is not None else {}
    synthetic = "generator" in attrs
    splits = cohort.table["split"].value_counts().reindex(["train", "val", "test"], fill_value=0)
    record = {"kind": "synthetic" if synthetic else "real", "manifest": str(cohort.manifest_path.resolve()),
              "n_subjects": int(len(cohort)), "splits": {k: int(v) for k, v in splits.items()},
              "source": attrs.get("generator") or attrs.get("source") or "a manifest of files",
              "sites": attrs.get("sites", "not recorded"),
              "test_set": read_evaluation(runs[0])["settings"].get("test_set", "")}
    if synthetic:
        record["generator_version"] = attrs.get("version")
    return record


def test_r2(study: Path, arm: str) -> dict[str, float]:
    """The arm's test R² per phenotype, the mean over its seeds (``comparison.csv``)."""
    table = pd.read_csv(study / "comparison.csv")
    rows = table[(table["arm"] == arm) & (table["task"] == "regression") & (table["metric"] == "r2")]
    return {str(k): float(v) for k, v in rows.groupby("target")["value"].mean().items()}


def export_bundle(study: str | Path, out: str | Path, arm: str = "ptacl", reference: bool = True,
                  onnx: bool = False, coverage: float = DEFAULT_COVERAGE, method: str = DEFAULT_METHOD,
                  device: str = "auto") -> Path:
    """Write the model bundle of ``arm``'s seed ensemble of a finished study to ``out`` (module docstring)."""
    import torch

    from ..data import PreprocessedCohort, open_cohort
    from ..data.cache import ecg_samples, stored_ecg_samples
    from ..evaluate.calibration import calibration_from_scores, ensemble_runs
    from ..evaluate.embeddings import Embeddings
    from ..runs import read_config, run_model_config, run_preprocess_config
    from ..study import read_study_here
    from .card import model_card

    study = Path(study)
    saved = read_study_here(study)
    if saved is None:
        raise BundleError(f"{study} holds no study_config.json: export takes a folder `ptacl study` wrote")
    runs = _arm_runs(study, arm)
    cohort = open_cohort(saved.manifest)
    if len(cohort.indices("val")) == 0:
        raise BundleError(f"{saved.manifest} has no validation split: the intervals are calibrated on it")
    preprocess = run_preprocess_config(runs[0])
    ensemble = ensemble_runs(runs, cohort, device=device, embedders=True)
    scores, floor = ensemble.scores(method)
    calibration = calibration_from_scores(scores, floor, coverage, method)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    files: list[str] = []
    onnx_files: list[str] = []
    for seed, embedder in zip(ensemble.seeds, ensemble.embedders):
        state = embedder.state_dict()
        _save_tensors(out / encoder_file(seed), {k: v.detach().cpu().numpy() for k, v in state.items()})
        files.append(encoder_file(seed))
        if onnx:
            from .onnx_export import export_onnx

            export_onnx(embedder, out / encoder_file(seed, "onnx"), n_samples=ecg_samples(cohort, preprocess))
            onnx_files.append(encoder_file(seed, "onnx"))
    _save_tensors(out / PROBES_FILE, {f"seed{seed}.{name}": value
                                      for seed, probe in zip(ensemble.seeds, ensemble.probes)
                                      for name, value in probe.arrays().items()})
    _save_tensors(out / CALIBRATION_FILE, {"scores": scores, "spread_floor": floor})
    files += [PROBES_FILE, CALIBRATION_FILE]
    reference_meta = None
    if reference:
        trains = [Embeddings.load(r).subset("train") for r in runs]
        stacked = np.stack([t.ecg / np.maximum(np.linalg.norm(t.ecg, axis=1, keepdims=True), 1e-12)
                            for t in trains]).astype(np.float32)
        nearest = ensemble_distances_within(stacked)
        threshold = float(np.quantile(nearest, OOD_QUANTILE))
        _save_tensors(out / REFERENCE_FILE, {"embeddings": stacked})
        pd.DataFrame(trains[0].phenotypes, columns=list(PHENOTYPES)).assign(
            subject_id=trains[0].subject_ids)[["subject_id", *PHENOTYPES]].to_csv(out / REFERENCE_TABLE, index=False)
        files += [REFERENCE_FILE, REFERENCE_TABLE]
        reference_meta = {"n": int(stacked.shape[1]), "distance": "1 - mean over seeds of the cosine similarity",
                          "ood_quantile": OOD_QUANTILE, "ood_threshold": threshold}
    files += onnx_files  # listed after the reference set, as ``bundle.json`` always had them

    lead_scale = PreprocessedCohort.build_or_load(cohort, preprocess, progress=False).lead_scale
    test = ensemble.test_coverage(calibration)
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "library": {"name": "ptacl_lib", "version": __version__, "commit": library_commit(),
                    "torch": torch.__version__},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "arm": arm, "seeds": list(ensemble.seeds),
        "model": {"preset": read_config(runs[0]).model, "architecture": run_model_config(runs[0]).architecture()},
        "preprocessing": {
            "geometry": preprocess.geometry.to_dict(), "leads": list(LEADS), "units": "mV",
            "stored_ecg_hz": int(cohort.geometry.ecg_hz), "n_samples": int(stored_ecg_samples(cohort)),
            "filters": preprocess.filters(),
            "normalisation": {"kind": "each lead divided by its scale on the training split", "lead_scale":
                              [float(v) for v in lead_scale]},
            "road": "any rate at or above the geometry's is resampled to stored_ecg_hz, cut into windows of "
                    "n_samples, band-passed and resampled to the geometry's rate, then divided by lead_scale"},
        "phenotypes": [{"name": p, "unit": PHENOTYPE_UNITS[p]} for p in PHENOTYPES],
        "calibration": {**calibration.to_dict(), "calibration_set": f"the validation split of {cohort.manifest_path}"},
        "reference": reference_meta,
        "training": training_record(cohort, runs),
        "evaluation": {"test_r2": test_r2(study, arm),
                       "test_intervals": test.set_index("target")[["n", "coverage", "mean_width", "mae"]]
                       .to_dict(orient="index")},
    }
    (out / CARD_FILE).write_text(model_card(meta))
    files.append(CARD_FILE)
    meta["files"] = {name: sha256_of(out / name) for name in files}
    (out / BUNDLE_JSON).write_text(json.dumps(meta, indent=1))
    return out


# ----------------------------------------------------------------------------- load


def read_bundle_json(path: str | Path) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder, checked to be one."""
    root = Path(path)
    file = root / BUNDLE_JSON
    if not file.exists():
        raise BundleError(f"{root} is not a model bundle (no {BUNDLE_JSON}); write one with `ptacl export`")
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(f"{file}: format {meta.get('format')!r} version {meta.get('format_version')} is not one "
                          f"this library reads ({FORMAT} up to version {FORMAT_VERSION})")
    return meta


def load_bundle(path: str | Path, mains_hz: float | None = None, coverage: float | None = None) -> Bundle:
    """Read a bundle (module docstring), every file checked against its checksum; ``mains_hz`` replaces the
    mains frequency the training recordings had with the new recordings' own (60 Hz in the Americas);
    ``coverage`` asks for intervals of another coverage than the exported one (the same calibration scores)."""
    from ..data.preprocess import PreprocessConfig
    from ..evaluate.calibration import calibration_from_scores
    from ..geometry import Geometry

    root = Path(path)
    meta = read_bundle_json(root)
    contents: dict[str, bytes] = {}  # each file read once: checked, then parsed from the same bytes
    for name, digest in meta["files"].items():
        if not (root / name).exists():
            raise BundleError(f"{root}: {name} is missing")
        contents[name] = (root / name).read_bytes()
        if hashlib.sha256(contents[name]).hexdigest() != digest:
            raise BundleError(f"{root}: {name} does not match its checksum in {BUNDLE_JSON} (changed or truncated)")
    prep = meta["preprocessing"]
    preprocess = PreprocessConfig.from_dict(prep["filters"], geometry=Geometry.from_dict(prep["geometry"]))
    if mains_hz:
        from dataclasses import replace

        preprocess = replace(preprocess, mains_hz=float(mains_hz))
    spec = InputSpec(preprocess, int(prep["stored_ecg_hz"]), int(prep["n_samples"]),
                     np.asarray(prep["normalisation"]["lead_scale"], dtype=np.float32))
    seeds = [int(s) for s in meta["seeds"]]
    encoders = [_load_tensors(root / encoder_file(s), contents.get(encoder_file(s))) for s in seeds]
    arrays = _load_tensors(root / PROBES_FILE, contents.get(PROBES_FILE))
    probes = [LinearProbe.from_arrays(PHENOTYPES, {k.split(".", 1)[1]: v for k, v in arrays.items()
                                                   if k.startswith(f"seed{s}.")}) for s in seeds]
    reference = None
    if meta.get("reference"):
        csv = contents[REFERENCE_TABLE] if REFERENCE_TABLE in contents else (root / REFERENCE_TABLE).read_bytes()
        table = pd.read_csv(io.BytesIO(csv), dtype={"subject_id": str})
        reference = Reference(table["subject_id"].to_numpy(), table[list(PHENOTYPES)],
                              _load_tensors(root / REFERENCE_FILE, contents.get(REFERENCE_FILE))["embeddings"],
                              float(meta["reference"]["ood_threshold"]))
    saved = _load_tensors(root / CALIBRATION_FILE, contents.get(CALIBRATION_FILE))
    calibration = calibration_from_scores(saved["scores"], saved["spread_floor"],
                                          coverage or float(meta["calibration"]["coverage"]),
                                          str(meta["calibration"]["method"]), PHENOTYPES)
    return Bundle(root, meta, spec, encoders, probes, calibration, reference)
