"""Evaluation of trained runs: embeddings, phenotype retrieval, regression probes and the multi-seed comparison."""

from .ceiling import CEILING_ARMS, ceiling_table, median_beat_features, window_share
from .compare import (ARM_LABELS, ARMS, compare, discover_runs, format_table, paired_difference, summarise,
                      with_mean_r2)
from .embeddings import Embeddings, embed
from .finetune import FinetuneConfig, finetune
from .pipeline import embeddings_by_arm, evaluate_embeddings, evaluate_run, evaluate_runs, probe
from .regression import ProbeResult, fit_linear_probe, mean_predictor, regression_metrics
from .retrieval import (RELEVANCE_RADIUS, RETRIEVAL_PHENOTYPES, cross_modal_recall, nearest_neighbours,
                        retrieval_metrics)

__all__ = [
    "ARMS", "ARM_LABELS", "CEILING_ARMS", "ceiling_table", "median_beat_features", "window_share", "RELEVANCE_RADIUS", "RETRIEVAL_PHENOTYPES", "Embeddings", "FinetuneConfig", "ProbeResult",
    "compare", "cross_modal_recall", "discover_runs", "embed", "embeddings_by_arm", "evaluate_embeddings",
    "evaluate_run", "evaluate_runs", "finetune", "fit_linear_probe", "format_table", "mean_predictor", "nearest_neighbours",
    "paired_difference", "probe", "regression_metrics", "retrieval_metrics", "summarise", "with_mean_r2",
]
