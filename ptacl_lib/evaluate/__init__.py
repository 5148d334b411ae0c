"""Evaluation of trained runs: embeddings, phenotype retrieval, regression probes and the multi-seed comparison."""

from ..runs import discover_runs
from .ceiling import CEILING_ARMS, ceiling_table, median_beat_features, window_share
from .compare import compare, format_table, summarise, with_mean_r2
from .embeddings import Embeddings, embed
from .finetune import FinetuneConfig, finetune
from .pipeline import embeddings_by_arm, evaluate_embeddings, evaluate_run, evaluate_runs, probe, probe_by_arm
from .regression import ProbeResult, fit_linear_probe, mean_predictor, regression_metrics
from .retrieval import RELEVANCE_RADIUS, RETRIEVAL_PHENOTYPES, cross_modal_recall, nearest_neighbours, retrieval_metrics

__all__ = [
    "CEILING_ARMS", "RELEVANCE_RADIUS", "RETRIEVAL_PHENOTYPES", "Embeddings", "FinetuneConfig", "ProbeResult",
    "ceiling_table", "compare", "cross_modal_recall", "discover_runs", "embed", "embeddings_by_arm",
    "evaluate_embeddings", "evaluate_run", "evaluate_runs", "finetune", "fit_linear_probe", "format_table",
    "mean_predictor", "median_beat_features", "nearest_neighbours", "probe", "probe_by_arm",
    "regression_metrics", "retrieval_metrics", "summarise", "window_share", "with_mean_r2",
]
