"""How well a run's local tokens align ECG phase with CMR frame, over a split, as tidy records.

The scores are the inspector's (``viz.inspector.alignment``): per subject, the fraction of ECG
phases whose most similar CMR frame is their own (diagonal accuracy; chance is ``1/T``) and the
circular distance from that frame to their own, in frames and milliseconds. A run's record is the
mean over the subjects of the split.
"""

from __future__ import annotations

from pathlib import Path

from ..data import Cohort
from .retrieval import MetricRecord

ALIGNMENT_METRICS: tuple[str, ...] = ("diagonal_accuracy", "phase_error_ms", "phase_error_frames")


def alignment_records(run_dir: str | Path, cohort: Cohort, split: str | None = "test",
                      device: str = "auto") -> list[MetricRecord]:
    """Mean diagonal accuracy and phase error of the run's model on ``split`` (None: every subject; task
    ``alignment``)."""
    from ..viz.inspector import AlignmentInspector

    scores = AlignmentInspector(run_dir, cohort, split=split, device=device).metrics()
    return [{"task": "alignment", "target": "all", "metric": metric, "value": float(scores[metric].mean())}
            for metric in ALIGNMENT_METRICS]
