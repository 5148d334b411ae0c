"""The inspector's ipywidgets front end: controls on top, the rendered views below.

Controls: a subject dropdown narrowed by a phenotype range and a conduction filter, a phase slider
with a play/pause button (``Play`` linked to the slider in the browser), and a lead selector.
The picture is an ``Image`` fed with ``AlignmentInspector.render_png``, the same drawing code as
``snapshot``; per-model scores sit in an ``HTML`` table beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np

from ...data.schema import LEADS, PHENOTYPES
from .app import ANY_CATEGORY, CATEGORY_FILTERS
from .views import ALL_LEADS

if TYPE_CHECKING:
    from .app import AlignmentInspector


class InspectorApp(widgets.VBox):
    """The live inspector. Attributes are the controls (``subject``, ``phase``, ``play``, ``lead``,
    ``phenotype``, ``value_range``, ``categories``) and the outputs (``image``, ``scores``)."""

    def __init__(self, inspector: AlignmentInspector, lead: str = "II", play_interval_ms: int = 900) -> None:
        self.inspector = inspector
        table = inspector.cohort.table
        last = inspector.n_phases - 1
        self.phenotype = widgets.Dropdown(options=list(PHENOTYPES), value="lvef", description="filter by")
        self.value_range = widgets.FloatRangeSlider(description="range", continuous_update=False, step=0.1,
                                                    readout_format=".0f")
        self.categories = {c: widgets.Dropdown(options=[ANY_CATEGORY, *sorted(table[c].astype(str).unique())],
                                               value=ANY_CATEGORY, description=c)
                           for c in CATEGORY_FILTERS if c in table.columns}
        self.subject = widgets.Dropdown(description="subject", layout=widgets.Layout(width="480px"))
        self.phase = widgets.IntSlider(value=0, min=0, max=last, description="phase", continuous_update=True)
        self.play = widgets.Play(value=0, min=0, max=last, step=1, interval=play_interval_ms, description="play")
        widgets.jslink((self.play, "value"), (self.phase, "value"))
        self.lead = widgets.Dropdown(options=[ALL_LEADS, *LEADS], value=lead, description="lead")
        self.image = widgets.Image(format="png")
        self.scores = widgets.HTML(layout=widgets.Layout(width="300px"))
        self.status = widgets.HTML()

        self._fit_range()
        self._refresh_subjects()
        self.phenotype.observe(self._on_phenotype, names="value")
        self.value_range.observe(lambda _: self._refresh_subjects(), names="value")
        for dropdown in self.categories.values():
            dropdown.observe(lambda _: self._refresh_subjects(), names="value")
        for control in (self.subject, self.phase, self.lead):
            control.observe(lambda _: self.render(), names="value")
        filters = widgets.HBox([self.phenotype, self.value_range, *self.categories.values()])
        navigation = widgets.HBox([self.subject, self.play, self.phase, self.lead])
        super().__init__([filters, navigation, self.status, widgets.HBox([self.image, self.scores])])
        self.add_class("ptacl-inspector")
        self.render()

    def _values(self) -> np.ndarray:
        rows = self.inspector.rows
        return self.inspector.cohort.table[self.phenotype.value].to_numpy(dtype=float)[rows]

    def _fit_range(self) -> None:
        """Span the range slider over the chosen phenotype's values (everything selected)."""
        values = self._values()
        values = values[np.isfinite(values)]
        lo, hi = (float(np.floor(values.min())), float(np.ceil(values.max()))) if len(values) else (0.0, 1.0)
        with self.value_range.hold_trait_notifications():
            self.value_range.min, self.value_range.max = lo, max(hi, lo + 1.0)
            self.value_range.value = (lo, max(hi, lo + 1.0))

    def _on_phenotype(self, _: Any) -> None:
        self._fit_range()
        self._refresh_subjects()

    def _refresh_subjects(self) -> None:
        """Offer the subjects that pass the filters; keep the current one when it still passes."""
        rows = self.inspector.filter_rows(self.phenotype.value, self.value_range.value,
                                          **{c: d.value for c, d in self.categories.items()})
        ids = self.inspector.cohort.table["subject_id"].to_numpy()
        options = [(f"{ids[r]}: {self.inspector.caption(r)}", int(r)) for r in rows]
        current = self.subject.value
        self.subject.options = options
        if options:
            self.subject.value = current if current in set(rows.tolist()) else options[0][1]
        self.status.value = f"{len(options)} of {len(self.inspector.rows)} subjects match the filters"

    def render(self) -> None:
        """Redraw the picture and the scores for the current subject, phase and lead."""
        row = self.subject.value
        if row is None:
            return
        phase = int(self.phase.value)
        self.image.value = self.inspector.render_png(row, phase, self.lead.value)
        views = self.inspector.views(row)
        lines = "".join(f"<tr><td>{label}</td><td>{m.diagonal_accuracy:.2f}</td><td>{m.phase_error_frames:.2f}</td>"
                        f"<td>{m.phase_error_ms:.0f}</td><td>{m.n_scored}</td></tr>"
                        for label, m in ((lab, a.metrics()) for lab, a in views.arms))
        self.scores.value = ("<div style='font-size:smaller; line-height:1.3'>"
                             f"<b class='ptacl-shown'>{views.subject_id}, phase {phase}</b>"
                             "<table><tr><th>model</th><th>diag. acc</th><th>phase error (frames)</th><th>(ms)</th>"
                             f"<th>phases scored</th></tr>{lines}</table>"
                             "<p>phase error: distance of each row's argmax to its own "
                             "frame around the cycle (frame T-1 neighbours frame 0); 1 frame = RR / T</p></div>")
