"""``AlignmentInspector``: pick a subject and a cardiac phase, see the ECG segments next to the CMR frame.

    inspector = AlignmentInspector("runs/demo/arms/ptacl/seed0", "runs/demo/cohort/manifest.csv",
                                   compare="runs/demo/arms/global/seed0", split="test")
    inspector              # in JupyterLab: the live widget (subject, phase slider + play, lead)
    inspector.snapshot("SYN000003", phase=8)   # the same views as a matplotlib Figure, headless

Model outputs are computed once per subject and model, on first use (or in batches by ``prepare``),
and cached.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ...arms import arm_label
from ...data import Cohort, PreprocessConfig, PTACLDataset, open_cohort
from ...models import PTACLModel
from ...runs import load_run, run_preprocess_config
from ...runtime import resolve_device
from .alignment import SubjectAlignment, subject_alignments
from .views import ALL_LEADS, SubjectViews, draw_inspector

if TYPE_CHECKING:
    from .widget import InspectorApp

#: Categorical manifest columns offered as subject filters when the cohort has them.
CATEGORY_FILTERS: tuple[str, ...] = ("conduction",)
ANY_CATEGORY = "any"  #: a category filter value that keeps every subject


@dataclass(frozen=True)
class InspectedModel:
    """A model under inspection, with the preprocessing it was trained on and a display label."""

    label: str
    model: PTACLModel
    preprocess: PreprocessConfig


def load_inspected(source: str | Path | PTACLModel, device: torch.device,
                   preprocess: PreprocessConfig | None = None, label: str | None = None) -> InspectedModel:
    """A run directory (model, preprocessing and arm label all from the run) or a ``PTACLModel`` (read with
    ``preprocess``, default ``PreprocessConfig()``)."""
    if isinstance(source, PTACLModel):
        return InspectedModel(label or "model", source.to(device), preprocess or PreprocessConfig())
    run_dir = Path(source)
    model, config = load_run(run_dir, device=device)
    return InspectedModel(label or f"{arm_label(config.objective)} (seed {config.seed})",
                          model, run_preprocess_config(run_dir))


class AlignmentInspector:
    """Linked ECG / CMR frame / volume / local-similarity views of a trained model, per subject and phase.

    ``source`` and ``compare`` are run directories or ``PTACLModel``s (a model object is read with
    ``preprocess``, default ``PreprocessConfig()``; a run uses its own). ``labels`` name them in the
    views (default: the run's arm and seed). ``split`` limits the subjects (all by default);
    subjects that failed preprocessing are never offered.
    """

    def __init__(self, source: str | Path | PTACLModel, cohort: Cohort | str | Path, *,
                 compare: str | Path | PTACLModel | None = None, split: str | None = None,
                 preprocess: PreprocessConfig | None = None, labels: Sequence[str] | None = None,
                 device: str = "auto") -> None:
        self.cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
        self.device = resolve_device(device)
        sources = [source] + ([compare] if compare is not None else [])
        labels = list(labels) if labels is not None else [None] * len(sources)
        if len(labels) != len(sources):
            raise ValueError(f"{len(labels)} labels for {len(sources)} models")
        self.models = [load_inspected(s, self.device, preprocess, lab) for s, lab in zip(sources, labels)]
        if len({m.label for m in self.models}) < len(self.models):
            raise ValueError(f"the compared models share the label {self.models[0].label!r}; pass labels=[...]")
        frames = {m.preprocess.geometry.frames for m in self.models}
        if len(frames) != 1:
            raise ValueError(f"compared models see different numbers of cine frames {sorted(frames)}; "
                             "their similarity matrices cannot share a phase slider")
        self.datasets = {m.preprocess: PTACLDataset(self.cohort, split, m.preprocess, progress=False)
                         for m in self.models}
        rows = set.intersection(*(set(d.rows.tolist()) for d in self.datasets.values()))
        self.rows = np.array(sorted(rows), dtype=np.int64)
        self._row_set = frozenset(rows)
        if len(self.rows) == 0:
            raise ValueError(f"no subject of split {split!r} in {self.cohort.manifest_path} is available")
        self.n_phases = frames.pop()
        self._views: dict[int, SubjectViews] = {}

    # ---- subjects -----------------------------------------------------------------------
    @property
    def subject_ids(self) -> list[str]:
        return [str(s) for s in self.cohort.table["subject_id"].to_numpy()[self.rows]]

    def row_of(self, subject: str | int) -> int:
        """Cohort row of a subject id (or a row number), checked to be inspectable."""
        row = self.cohort.index_of(subject) if isinstance(subject, str) else int(subject)
        if row not in self._row_set:
            sid = self.cohort.table["subject_id"].iloc[row] if 0 <= row < len(self.cohort) else subject
            raise KeyError(f"subject {sid!r} is not inspectable here (outside the split, or skipped in preprocessing)")
        return row

    def filter_rows(self, phenotype: str | None = None, value_range: tuple[float, float] | None = None,
                    **categories: str) -> np.ndarray:
        """Inspectable rows whose ``phenotype`` lies in ``value_range`` and whose columns equal ``categories``."""
        table = self.cohort.table.iloc[self.rows]
        keep = np.ones(len(self.rows), dtype=bool)
        if phenotype is not None and value_range is not None:
            values = table[phenotype].to_numpy(dtype=float)
            keep &= (values >= value_range[0]) & (values <= value_range[1])
        for column, value in categories.items():
            if value != ANY_CATEGORY:
                keep &= table[column].astype(str).to_numpy() == value
        return self.rows[keep]

    def caption(self, row: int) -> str:
        """One line of what the subject is: LV volumes, EF, mass, and conduction where known."""
        rec = self.cohort.table.iloc[row]
        parts = [f"LVEF {rec['lvef']:.0f}%", f"LVEDV {rec['lvedv']:.0f} mL", f"LVM {rec['lvm']:.0f} g"]
        parts += [str(rec[c]) for c in CATEGORY_FILTERS if c in rec.index]
        return ", ".join(parts)

    # ---- model outputs (cached) ---------------------------------------------------------
    def views(self, subject: str | int) -> SubjectViews:
        """Everything drawn for a subject; the models run on its first request only."""
        row = self.row_of(subject)
        self.prepare([row])
        return self._views[row]

    def prepare(self, subjects: Sequence[str | int], batch_size: int = 64) -> None:
        """Run the models on the subjects not seen yet, ``batch_size`` at a time, and cache the results."""
        rows = [r for r in dict.fromkeys(self.row_of(s) for s in subjects) if r not in self._views]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            per_model = [subject_alignments(m.model, [self._item(m, r) for r in chunk], m.preprocess.geometry.ecg_hz,
                                            self.device) for m in self.models]
            for j, row in enumerate(chunk):
                self._views[row] = self._subject_views(row, [(m.label, a[j]) for m, a in zip(self.models, per_model)])

    def _item(self, model: InspectedModel, row: int) -> dict[str, Any]:
        dataset = self.datasets[model.preprocess]
        return dataset[int(np.searchsorted(dataset.rows, row))]

    def _subject_views(self, row: int, arms: list[tuple[str, SubjectAlignment]]) -> SubjectViews:
        first = self.datasets[self.models[0].preprocess]
        volumes = self.cohort.extra("volumes", row)
        return SubjectViews(
            subject_id=str(self.cohort.table["subject_id"].iloc[row]), caption=self.caption(row),
            ecg=np.asarray(first.cache.ecg[row]) * first.cache.lead_scale[:, None],
            fs=float(self.models[0].preprocess.geometry.ecg_hz),
            frames=np.asarray(first.cache.cmr[row], dtype=np.float32) / 255.0,
            volumes=None if volumes is None else np.asarray(volumes, dtype=np.float32), arms=tuple(arms))

    def alignment(self, subject: str | int, model: int = 0) -> SubjectAlignment:
        """The cached alignment of ``subject`` under model ``model`` (0: the inspected one, 1: ``compare``)."""
        return self.views(subject).arms[model][1]

    def metrics(self, subjects: Sequence[str | int] | None = None) -> pd.DataFrame:
        """Diagonal accuracy and circular phase error per subject and model (all inspectable subjects by default)."""
        subjects = list(self.rows if subjects is None else subjects)
        self.prepare(subjects)
        records = []
        for subject in subjects:
            views = self.views(subject)
            for label, alignment in views.arms:
                records.append({"subject_id": views.subject_id, "model": label,
                                **asdict(alignment.metrics())})
        return pd.DataFrame.from_records(records)

    # ---- drawing --------------------------------------------------------------------------
    def figure_size(self, lead: str) -> tuple[float, float]:
        return (4.2 + 3.9 * len(self.models), 9.0 if lead == ALL_LEADS else 6.0)

    def snapshot(self, subject: str | int, phase: int, lead: str = "II") -> Figure:
        """The inspector's views of ``subject`` at ``phase`` as a (pyplot) matplotlib Figure."""
        fig = plt.figure(figsize=self.figure_size(lead), layout="constrained")
        return draw_inspector(fig, self.views(subject), phase, lead)

    def render_png(self, subject: str | int, phase: int, lead: str = "II", dpi: int = 72) -> bytes:
        """The snapshot as PNG bytes, drawn on a detached figure (nothing is added to pyplot)."""
        fig = Figure(figsize=self.figure_size(lead), layout="constrained")
        draw_inspector(fig, self.views(subject), phase, lead)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    # ---- widget ---------------------------------------------------------------------------
    def app(self) -> InspectorApp:
        """A new ipywidgets app on this inspector (see ``InspectorApp``)."""
        from .widget import InspectorApp

        return InspectorApp(self)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.app())

