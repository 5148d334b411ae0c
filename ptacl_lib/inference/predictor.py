"""Apply a model bundle to ECGs that have no CMR: phenotypes with calibrated intervals, similar patients.

    predictor = Predictor.from_bundle("runs/demo/bundle")
    table = predictor.predict(["a.xml", "b.hea"])          # one row per ECG
    row = predictor.predict_signal(signal, fs=500, leads=names, units="uV")
    neighbours = predictor.similar(predictor.embed(["a.xml"]), k=5)

One row per ECG (``predict``): ``id``, ``path``, ``status`` (``ok`` or ``error``) and ``reason`` (an
``ecg_input.REASONS`` word and its detail); per phenotype ``<name>`` (the mean over seeds), ``<name>_lo`` and
``<name>_hi`` (the calibrated interval) and ``<name>_seed_sd``; ``quality`` and ``quality_flags`` (the training
quality check); ``windows`` (training-length windows averaged); with a reference set, ``ood`` (the nearest
reference subject is farther than the reference set's own 99th percentile), ``nearest_distance``,
``similar_ids`` and ``similar_<name>`` (the ``k`` nearest subjects' measured values, ``;``-joined).
A file that cannot be used gets ``status=error`` and the others are still predicted.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..data.readers import ECG_SUFFIXES
from ..data.schema import LEADS, PHENOTYPES
from ..evaluate.calibration import EnsemblePrediction
from .bundle import Bundle, load_bundle
from .ecg_input import InputRejected, InputSpec, PreparedEcg, mv_per_unit, prepare_signal, read_signal

if TYPE_CHECKING:
    import torch

#: ECGs whose windows go through the encoders together.
BATCH = 64


def prepare_file(path: str | Path, spec: InputSpec, sampling_rate: float | None = None,
                 units: str = "mV") -> PreparedEcg | InputRejected:
    """One file read and prepared (``ecg_input``), or why not: runs in a worker process."""
    try:
        signal, fs = read_signal(path, sampling_rate, units)
        return prepare_signal(signal, fs, spec)
    except InputRejected as err:
        return err
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the others; it is reported
        return InputRejected("unreadable", f"{Path(path).name}: {type(err).__name__}: {err}")


def default_workers() -> int:
    """Reader processes when none are asked for: one per CPU, at most 8."""
    from ..runtime import available_cpus

    return min(8, available_cpus())


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@contextmanager
def threads_beside_readers(workers: int, device: "torch.device") -> Iterator[None]:
    """Torch's CPU threads in this process while ``workers`` reader processes run beside it: the cores they
    leave, at least one and never more than were set (restored on exit), since torch's waiting threads spin on
    the cores the readers need (``benchmarks/RESULTS.md``, "``ptacl predict`` throughput"). A forward pass on
    fewer threads may round its float32 sums differently: the last digits of a prediction can then differ from
    those of a run with ``workers=1`` on more threads, as they differ between machines."""
    import torch

    from ..runtime import available_cpus

    before = torch.get_num_threads()
    if workers > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, min(before, available_cpus() - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Predictor:
    """A loaded bundle on a device (``from_bundle``), ready to embed and predict."""

    def __init__(self, bundle: Bundle, device: str = "cpu") -> None:
        from ..runtime import resolve_device

        self.bundle = bundle
        self.device = resolve_device(device)
        self.embedders = bundle.embedders(str(self.device))

    @classmethod
    def from_bundle(cls, path: str | Path, device: str = "cpu", mains_hz: float | None = None,
                    coverage: float | None = None) -> "Predictor":
        """Load ``path`` (``bundle.load_bundle``: ``mains_hz``, the new recordings' mains frequency; ``coverage``,
        the intervals' coverage, the exported one by default)."""
        return cls(load_bundle(path, mains_hz=mains_hz, coverage=coverage), device)

    # ------------------------------------------------------------------------- embeddings

    def embed_prepared(self, prepared: Sequence[PreparedEcg]) -> np.ndarray:
        """``[N, S, E]``: every seed's embedding of each ECG, averaged over its windows."""
        import torch

        if not prepared:
            return np.zeros((0, len(self.embedders), self.bundle.probes[0].coef.shape[1]), dtype=np.float32)
        windows = torch.from_numpy(np.concatenate([p.windows for p in prepared])).to(self.device)
        owner = np.repeat(np.arange(len(prepared)), [len(p.windows) for p in prepared])
        with torch.no_grad():
            per_seed = np.stack([embedder(windows).float().cpu().numpy() for embedder in self.embedders], axis=1)
        counts = np.bincount(owner, minlength=len(prepared)).astype(np.float32)
        summed = np.zeros((len(prepared), *per_seed.shape[1:]), dtype=np.float32)
        np.add.at(summed, owner, per_seed)
        return summed / counts[:, None, None]

    def embed(self, paths: Sequence[str | Path], sampling_rate: float | None = None, units: str = "mV") -> np.ndarray:
        """``[N, S, E]`` embeddings of files (an unusable file raises its ``InputRejected``)."""
        prepared = []
        for result in self.prepared(paths, sampling_rate, units):
            if isinstance(result, InputRejected):
                raise result
            prepared.append(result)
        return self.embed_prepared(prepared)

    def ensemble(self, embeddings: np.ndarray) -> EnsemblePrediction:
        """The seed ensemble's prediction from ``[N, S, E]`` embeddings."""
        return EnsemblePrediction.of(self.bundle.probes, [embeddings[:, s] for s in range(embeddings.shape[1])])

    # ------------------------------------------------------------------------- tables

    def phenotype_table(self, embeddings: np.ndarray) -> pd.DataFrame:
        """Per ECG and phenotype: the mean over seeds, the calibrated interval and the seeds' spread."""
        prediction = self.ensemble(embeddings)
        lower, upper = self.bundle.calibration.intervals(prediction)
        columns: dict[str, np.ndarray] = {}
        for j, name in enumerate(PHENOTYPES):
            columns.update({name: prediction.mean[:, j], f"{name}_lo": lower[:, j], f"{name}_hi": upper[:, j],
                            f"{name}_seed_sd": prediction.seed_sd[:, j]})
        return pd.DataFrame(columns)

    def similar(self, embeddings: np.ndarray, k: int = 5) -> pd.DataFrame:
        """The ``k`` nearest reference subjects of each of ``[N, S, E]`` embeddings: ``query``, ``rank``,
        ``subject_id``, ``distance`` and their measured phenotypes."""
        reference = self._reference()
        distances = reference.distances(np.asarray(embeddings, dtype=np.float32))
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
        query = np.repeat(np.arange(len(nearest)), nearest.shape[1])
        chosen = nearest.ravel()
        head = pd.DataFrame({"query": query, "rank": np.tile(np.arange(1, nearest.shape[1] + 1), len(nearest)),
                             "subject_id": reference.subject_ids[chosen],
                             "distance": distances[query, chosen].astype(np.float64)})
        return pd.concat([head, reference.phenotypes.iloc[chosen].reset_index(drop=True)], axis=1)

    def neighbour_table(self, embeddings: np.ndarray, k: int = 5) -> pd.DataFrame:
        """Per ECG: ``ood``, ``nearest_distance``, ``similar_ids`` and ``similar_<name>`` (``;``-joined)."""
        reference = self._reference()
        near = self.similar(embeddings, k)
        rows = []
        for _, group in near.groupby("query", sort=True):
            row = {"ood": bool(group["distance"].iloc[0] > reference.ood_threshold),
                   "nearest_distance": float(group["distance"].iloc[0]),
                   "similar_ids": ";".join(group["subject_id"].astype(str))}
            row.update({f"similar_{p}": ";".join(f"{v:.1f}" for v in group[p]) for p in PHENOTYPES})
            rows.append(row)
        return pd.DataFrame(rows)

    def _reference(self) -> Any:
        if self.bundle.reference is None:
            raise ValueError(f"{self.bundle.root} was exported without its reference set (--no-reference): it "
                             "cannot find similar patients or flag unusual ECGs")
        return self.bundle.reference

    def table(self, ids: Sequence[str], paths: Sequence[str], results: Sequence[PreparedEcg | InputRejected],
              k: int = 5) -> pd.DataFrame:
        """The one-row-per-ECG table (module docstring) of prepared ECGs and refusals, in the given order."""
        good = [i for i, r in enumerate(results) if isinstance(r, PreparedEcg)]
        frame = pd.DataFrame({"id": list(ids), "path": [str(p) for p in paths],
                              "status": ["ok" if isinstance(r, PreparedEcg) else "error" for r in results],
                              "reason": ["" if isinstance(r, PreparedEcg) else str(r) for r in results]})
        if good:
            prepared = [results[i] for i in good]
            embeddings = self.embed_prepared(prepared)  # type: ignore[arg-type]
            parts = [self.phenotype_table(embeddings),
                     pd.DataFrame({"quality": [round(p.quality.score, 3) for p in prepared],  # type: ignore[union-attr]
                                   "quality_flags": [p.quality_flags for p in prepared],  # type: ignore[union-attr]
                                   "windows": [len(p.windows) for p in prepared]})]  # type: ignore[union-attr]
            if self.bundle.reference is not None:
                parts.append(self.neighbour_table(embeddings, k))
            values = pd.concat(parts, axis=1).set_axis(good)
            frame = frame.join(values)
        return frame.reindex(columns=self.columns())

    def columns(self) -> list[str]:
        """The table's columns, in order, whether or not any ECG succeeded."""
        columns = ["id", "path", "status", "reason"]
        columns += [f"{p}{end}" for p in PHENOTYPES for end in ("", "_lo", "_hi", "_seed_sd")]
        columns += ["quality", "quality_flags", "windows"]
        if self.bundle.reference is not None:
            columns += ["ood", "nearest_distance", "similar_ids", *(f"similar_{p}" for p in PHENOTYPES)]
        return columns

    # ------------------------------------------------------------------------- prediction

    def predict_signal(self, signal: np.ndarray, fs: float, leads: Sequence[str] = LEADS, units: str = "mV",
                       ecg_id: str = "signal", k: int = 5) -> pd.DataFrame:
        """One row for a ``[n_leads, S]`` signal at ``fs`` Hz with leads named ``leads`` (any order; limb leads
        derived from I and II when missing) in ``units`` (``mV``, ``uV`` or ``V``)."""
        from ..data.readers import ReaderError
        from ..data.readers.records import assemble_leads

        try:
            to_mv = mv_per_unit(units)
            signal = np.asarray(signal, dtype=np.float32)
            if signal.ndim != 2 or len(signal) != len(leads):
                raise InputRejected("leads", f"{len(leads)} lead names for a signal of shape {signal.shape}")
            try:
                ordered, _ = assemble_leads(dict(zip(leads, signal)), ecg_id)
            except ReaderError as err:
                raise InputRejected("leads", err.detail) from err
            result: PreparedEcg | InputRejected = prepare_signal(ordered * to_mv, fs, self.bundle.spec)
        except InputRejected as err:
            result = err
        return self.table([ecg_id], [""], [result], k)

    def prepared(self, paths: Sequence[str | Path], sampling_rate: float | None = None, units: str = "mV",
                 workers: int = 1) -> Iterator[PreparedEcg | InputRejected]:
        """Each file prepared, in order: in this process, or in ``workers`` one-thread processes."""
        job = partial(prepare_file, spec=self.bundle.spec, sampling_rate=sampling_rate, units=units)
        if workers <= 1:
            yield from map(job, paths)
            return
        with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
            yield from pool.map(job, paths, chunksize=max(1, min(16, len(paths) // (4 * workers))))

    def predict(self, paths: Iterable[str | Path], sampling_rate: float | None = None, units: str = "mV",
                workers: int = 1, k: int = 5, progress: bool = True,
                ids: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per file (module docstring); ``ids`` default to the file names without their suffix."""
        from tqdm.auto import tqdm

        paths = [Path(p) for p in paths]
        ids = list(ids) if ids is not None else [ecg_id(p) for p in paths]
        tables, batch_ids, batch_paths, batch = [], [], [], []
        results = self.prepared(paths, sampling_rate, units, workers)
        with threads_beside_readers(workers, self.device):
            for path, name, result in tqdm(zip(paths, ids, results), total=len(paths), desc="predicting",
                                           unit="ECG", disable=not progress):
                batch_ids.append(name)
                batch_paths.append(str(path))
                batch.append(result)
                if len(batch) == BATCH:
                    tables.append(self.table(batch_ids, batch_paths, batch, k))
                    batch_ids, batch_paths, batch = [], [], []
            if batch or not tables:
                tables.append(self.table(batch_ids, batch_paths, batch, k))
        return pd.concat(tables, ignore_index=True)


def ecg_id(path: Path) -> str:
    """An ECG's id from its file name: the name without its suffixes (``1000001_20205_2_0.xml`` -> the stem)."""
    name = path.name
    for suffix in (*ECG_SUFFIXES, ".dat", ".npy"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def ecg_files(folder: str | Path) -> list[Path]:
    """The ECG files of a folder, sorted: every format ``read_ecg`` reads (a WFDB record by its ``.hea``) and
    ``.npy``; other files are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ECG folder not found: {folder}")
    keep = (*ECG_SUFFIXES, ".npy")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in keep)
