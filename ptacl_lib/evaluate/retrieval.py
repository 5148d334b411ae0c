"""Retrieval of patients with similar cardiac phenotypes from their ECG embeddings.

Two tasks:

* **ECG → ECG phenotype retrieval.** Every test ECG embedding queries the *training* ECG
  embeddings by cosine similarity. A retrieved training patient is *relevant* when its
  phenotype vector lies within ``RELEVANCE_RADIUS`` of the query's, Euclidean, in z-units:
  the six phenotypes ``RETRIEVAL_PHENOTYPES`` are each z-scored with the training mean and
  standard deviation. A radius of 1.0 means "the two patients differ by about 0.4 SD per
  phenotype" (1/sqrt(6)); it is strict on purpose, so the chance rate (``relevance_rate``,
  the precision of a random neighbour) stays low and precision@k above it is signal.
  We also report the mean absolute phenotype error of the top-k neighbours in physical
  units, next to its exact random-neighbour expectation.
* **Cross-modal recall@k (ECG → own CMR).** Each test ECG embedding ranks every test CMR
  embedding; a hit is the patient's own CMR within the top k. Chance is ``k / N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.schema import PHENOTYPES

#: Phenotypes that define "similar patient": volumes, function and mass of both ventricles.
RETRIEVAL_PHENOTYPES: tuple[str, ...] = ("lvedv", "lvesv", "lvef", "lvm", "rvedv", "rvef")
#: Euclidean radius in z-units (training statistics) within which a neighbour counts as relevant.
RELEVANCE_RADIUS: float = 1.0
#: The k of precision@k, MAE@k and recall@k.
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)

#: One evaluation number: ``{"task", "target", "metric", "value"}``.
MetricRecord = dict[str, "str | float"]


def phenotype_columns(names: Sequence[str]) -> list[int]:
    """Column positions of ``names`` in the ``PHENOTYPES`` order."""
    unknown = [n for n in names if n not in PHENOTYPES]
    if unknown:
        raise ValueError(f"unknown phenotypes {unknown}; expected names from {PHENOTYPES}")
    return [PHENOTYPES.index(n) for n in names]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[Na, Nb]`` cosine similarities between the rows of ``a`` and ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two [N, E] arrays with the same E, got {a.shape} and {b.shape}")
    a_norm = np.linalg.norm(a, axis=1, keepdims=True)
    b_norm = np.linalg.norm(b, axis=1, keepdims=True)
    if (a_norm == 0).any() or (b_norm == 0).any():
        raise ValueError("cosine similarity is undefined for an all-zero embedding")
    return (a / a_norm) @ (b / b_norm).T


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` most similar database rows of every query, most similar first."""

    indices: np.ndarray  #: int64 [Nq, k], rows of the database
    similarities: np.ndarray  #: float64 [Nq, k], cosine similarity

    @property
    def distances(self) -> np.ndarray:
        """Cosine distances ``1 - similarity`` ``[Nq, k]``."""
        return 1.0 - self.similarities


def nearest_neighbours(queries: np.ndarray, database: np.ndarray, k: int) -> Neighbours:
    """Top-``k`` database rows per query by cosine similarity (ties: lower row first)."""
    if not 1 <= k <= len(database):
        raise ValueError(f"k={k} must lie in [1, {len(database)}] (database size)")
    sims = cosine_similarity(queries, database)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return Neighbours(indices=order, similarities=np.take_along_axis(sims, order, axis=1))


@dataclass(frozen=True)
class PhenotypeScaler:
    """Z-scores phenotype vectors with the training mean and standard deviation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, reference: np.ndarray) -> PhenotypeScaler:
        """Statistics of ``reference`` ``[N, P]`` (the training set)."""
        reference = np.asarray(reference, dtype=np.float64)
        if not np.isfinite(reference).all():
            raise ValueError("reference phenotypes contain NaN or inf; z-scoring needs complete training rows")
        std = reference.std(axis=0)
        if (std == 0).any():
            raise ValueError("a reference phenotype is constant; it cannot be z-scored")
        return cls(mean=reference.mean(axis=0), std=std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """``(values - mean) / std``."""
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std


def retrieval_zscores(train_phenotypes: np.ndarray, test_phenotypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``RETRIEVAL_PHENOTYPES`` of ``[N, 9]`` train and test matrices, z-scored with the training statistics."""
    for name, values in (("train", train_phenotypes), ("test", test_phenotypes)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name} phenotypes contain NaN or inf; retrieval needs complete rows")
    cols = phenotype_columns(RETRIEVAL_PHENOTYPES)
    scaler = PhenotypeScaler.fit(train_phenotypes[:, cols])
    return scaler.transform(train_phenotypes[:, cols]), scaler.transform(test_phenotypes[:, cols])


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[Na, Nb]`` Euclidean distances between the rows of ``a`` and ``b``."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def precision_at_k(query_z: np.ndarray, database_z: np.ndarray, neighbours: Neighbours, k: int,
                   radius: float = RELEVANCE_RADIUS) -> float:
    """Fraction of the top-``k`` neighbours lying within ``radius`` of their query (z-units)."""
    _check_k(neighbours, k)
    top = neighbours.indices[:, :k]
    dist = np.linalg.norm(database_z[top] - query_z[:, None, :], axis=-1)
    return float((dist <= radius).mean())


def relevance_rate(query_z: np.ndarray, database_z: np.ndarray, radius: float = RELEVANCE_RADIUS) -> float:
    """Chance precision: the expected precision of a neighbour drawn uniformly from the database."""
    return float((pairwise_distances(query_z, database_z) <= radius).mean())


def topk_absolute_error(query_values: np.ndarray, database_values: np.ndarray, neighbours: Neighbours,
                        k: int) -> np.ndarray:
    """Per-column mean ``|neighbour - query|`` over queries and their top-``k`` neighbours ``[P]``."""
    _check_k(neighbours, k)
    top = neighbours.indices[:, :k]
    return np.abs(database_values[top] - query_values[:, None, :]).mean(axis=(0, 1))


def random_neighbour_error(query_values: np.ndarray, database_values: np.ndarray) -> np.ndarray:
    """Exact expectation of ``|neighbour - query|`` for a uniformly random database neighbour ``[P]``."""
    return np.abs(database_values[None, :, :] - query_values[:, None, :]).mean(axis=(0, 1))


def query_phenotype_distance(query_z: np.ndarray, database_z: np.ndarray, neighbours: Neighbours,
                             k: int) -> np.ndarray:
    """Per query, the mean Euclidean z-distance between its phenotypes and its top-``k`` neighbours' ``[Nq]``."""
    _check_k(neighbours, k)
    return np.linalg.norm(database_z[neighbours.indices[:, :k]] - query_z[:, None, :], axis=-1).mean(axis=1)


def cross_modal_recall(ecg: np.ndarray, cmr: np.ndarray, k: int) -> float:
    """Fraction of patients whose own CMR (same row) is among the ``k`` CMRs nearest to their ECG."""
    if len(ecg) != len(cmr):
        raise ValueError(f"paired embeddings differ in length: {len(ecg)} ECG vs {len(cmr)} CMR")
    sims = cosine_similarity(ecg, cmr)
    own = np.diag(sims)
    # rank of the own CMR: CMRs more similar, plus other CMRs exactly as similar (ties count as misses)
    better = (sims > own[:, None]).sum(axis=1)
    ties = (sims == own[:, None]).sum(axis=1) - 1
    return float(((better + ties) < k).mean())


def retrieval_metrics(train_ecg: np.ndarray, train_phenotypes: np.ndarray, test_ecg: np.ndarray,
                      test_phenotypes: np.ndarray, test_cmr: np.ndarray | None = None,
                      ks: Sequence[int] = DEFAULT_KS, radius: float = RELEVANCE_RADIUS) -> list[MetricRecord]:
    """Every retrieval number of one run, as tidy records.

    ``*_phenotypes`` are ``[N, 9]`` in ``PHENOTYPES`` order and physical units. Records:

    * task ``retrieval``, target ``all``: ``precision@k``, ``precision_random`` (chance),
      ``mae_z@k`` and ``mae_z_random`` (mean absolute z-error over ``RETRIEVAL_PHENOTYPES``);
    * task ``retrieval``, target = each phenotype: ``mae@k`` and ``mae_random`` in physical units;
    * task ``cross_modal``, target ``cmr``: ``recall@k`` and its chance level ``recall_random@k``
      (``k / N``), when ``test_cmr`` is given.
    """
    train_z, test_z = retrieval_zscores(train_phenotypes, test_phenotypes)
    neighbours = nearest_neighbours(test_ecg, train_ecg, max(ks))
    records: list[MetricRecord] = []

    def add(task: str, target: str, metric: str, value: float) -> None:
        records.append({"task": task, "target": target, "metric": metric, "value": float(value)})

    add("retrieval", "all", "precision_random", relevance_rate(test_z, train_z, radius))
    add("retrieval", "all", "mae_z_random", random_neighbour_error(test_z, train_z).mean())
    random_mae = random_neighbour_error(test_phenotypes, train_phenotypes)
    for name, value in zip(PHENOTYPES, random_mae):
        add("retrieval", name, "mae_random", value)
    for k in ks:
        add("retrieval", "all", f"precision@{k}", precision_at_k(test_z, train_z, neighbours, k, radius))
        add("retrieval", "all", f"mae_z@{k}", topk_absolute_error(test_z, train_z, neighbours, k).mean())
        mae = topk_absolute_error(test_phenotypes, train_phenotypes, neighbours, k)
        for name, value in zip(PHENOTYPES, mae):
            add("retrieval", name, f"mae@{k}", value)
    if test_cmr is not None:
        for k in ks:
            add("cross_modal", "cmr", f"recall@{k}", cross_modal_recall(test_ecg, test_cmr, k))
            add("cross_modal", "cmr", f"recall_random@{k}", min(k, len(test_ecg)) / len(test_ecg))
    return records


def _check_k(neighbours: Neighbours, k: int) -> None:
    if not 1 <= k <= neighbours.indices.shape[1]:
        raise ValueError(f"k={k} exceeds the {neighbours.indices.shape[1]} neighbours computed")


def metric_k(name: str) -> int | None:
    """The ``k`` of a metric named ``<kind>@<k>`` (None for metrics without one)."""
    _, sep, k = name.partition("@")
    return int(k) if sep and k.isdigit() else None


def metrics_of_kind(names: Sequence[str], kind: str) -> list[str]:
    """The metric names of one kind (``precision``, ``mae_z``, ``recall`` …), in ``k`` order, without duplicates;
    the chance-level entry (``<kind>_random…``) last."""
    unique = list(dict.fromkeys(n for n in names if n == kind or n.startswith(kind + "@") or n.startswith(kind + "_")))
    return sorted(unique, key=lambda n: (n.startswith(kind + "_random"), metric_k(n) or 0))


def largest_k(names: Sequence[str]) -> int:
    """The largest ``k`` among metric names (a ValueError when none has one)."""
    ks = [k for k in (metric_k(n) for n in names) if k is not None]
    if not ks:
        raise ValueError(f"no metric with an @k among {sorted(set(names))}")
    return max(ks)
