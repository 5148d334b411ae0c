"""Alignment inspector: each ECG phase segment next to its CMR frame, with the model's local similarity.

``alignment`` computes (model outputs, phase segments, scores), ``views`` draws, ``app`` holds the
``AlignmentInspector`` (subjects, caching, snapshots) and ``widget`` its ipywidgets front end.
"""

from .alignment import (
                        AlignmentMetrics,
                        SubjectAlignment,
                        alignment_metrics,
                        circular_frame_distance,
                        phase_segments,
                        row_argmax,
                        subject_alignments,
)
from .app import AlignmentInspector, InspectedModel, load_inspected
from .views import ALL_LEADS, VIEW_LABELS, SubjectViews, draw_inspector, slice_strip

__all__ = [
    "ALL_LEADS", "AlignmentInspector", "AlignmentMetrics", "InspectedModel", "SubjectAlignment", "SubjectViews",
    "VIEW_LABELS", "alignment_metrics", "circular_frame_distance", "draw_inspector", "load_inspected",
    "phase_segments", "row_argmax", "slice_strip", "subject_alignments",
]
