"""Retrieval metrics against values worked out by hand on tiny fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ptacl_lib.data.schema import PHENOTYPES
from ptacl_lib.evaluate.retrieval import (
    PhenotypeScaler,
    cross_modal_recall,
    nearest_neighbours,
    precision_at_k,
    random_neighbour_error,
    relevance_rate,
    retrieval_metrics,
    topk_absolute_error,
)

# Query (1, 0.1) against four database rows: cosine order is row 0 (0.995), row 2 (0.774),
# row 1 (0.0995), row 3 (-0.995).
DATABASE = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
QUERY = np.array([[1.0, 0.1]])


def test_nearest_neighbours_order_and_similarity() -> None:
    nn = nearest_neighbours(QUERY, DATABASE, k=4)
    assert nn.indices.tolist() == [[0, 2, 1, 3]]
    expected = [1 / np.sqrt(1.01), 1.1 / (np.sqrt(2) * np.sqrt(1.01)), 0.1 / np.sqrt(1.01), -1 / np.sqrt(1.01)]
    np.testing.assert_allclose(nn.similarities[0], expected)
    np.testing.assert_allclose(nn.distances, 1 - nn.similarities)
    with pytest.raises(ValueError, match="k=5"):
        nearest_neighbours(QUERY, DATABASE, k=5)


def test_precision_and_chance_rate_by_hand() -> None:
    nn = nearest_neighbours(QUERY, DATABASE, k=4)
    query_z = np.array([[0.0, 0.0]])
    # distances to the query in z-space: 0.5, 3.0, 0.9, 0.0 -> relevant (<= 1): rows 0, 2, 3
    database_z = np.array([[0.5, 0.0], [3.0, 0.0], [0.0, 0.9], [0.0, 0.0]])
    assert precision_at_k(query_z, database_z, nn, 1) == 1.0          # row 0
    assert precision_at_k(query_z, database_z, nn, 2) == 1.0          # rows 0, 2
    assert precision_at_k(query_z, database_z, nn, 3) == pytest.approx(2 / 3)  # rows 0, 2, 1
    assert precision_at_k(query_z, database_z, nn, 4) == 0.75
    assert precision_at_k(query_z, database_z, nn, 3, radius=3.0) == 1.0
    assert relevance_rate(query_z, database_z) == 0.75


def test_topk_and_random_absolute_error_by_hand() -> None:
    nn = nearest_neighbours(QUERY, DATABASE, k=4)
    query = np.array([[50.0, 100.0]])
    database = np.array([[52.0, 90.0], [40.0, 100.0], [55.0, 130.0], [50.0, 80.0]])
    np.testing.assert_allclose(topk_absolute_error(query, database, nn, 1), [2.0, 10.0])
    np.testing.assert_allclose(topk_absolute_error(query, database, nn, 2), [(2 + 5) / 2, (10 + 30) / 2])
    np.testing.assert_allclose(random_neighbour_error(query, database), [(2 + 10 + 5 + 0) / 4, (10 + 0 + 30 + 20) / 4])


def test_cross_modal_recall_by_hand() -> None:
    ecg = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cmr = np.array([[1.0, 0.2], [1.0, 0.1], [0.9, 1.0]])
    # own-CMR rank: patient 0 -> 2nd (CMR 1 is closer), patient 1 -> 3rd, patient 2 -> 1st
    assert cross_modal_recall(ecg, cmr, 1) == pytest.approx(1 / 3)
    assert cross_modal_recall(ecg, cmr, 2) == pytest.approx(2 / 3)
    assert cross_modal_recall(ecg, cmr, 3) == 1.0
    # an ECG equidistant from two CMRs does not count as a top-1 hit
    assert cross_modal_recall(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]), 1) == 0.0


def test_retrieval_metrics_wiring_by_hand() -> None:
    rng = np.random.default_rng(0)
    train_phen = rng.normal(100, 20, size=(4, len(PHENOTYPES)))
    test_phen = rng.normal(100, 20, size=(1, len(PHENOTYPES)))
    records = retrieval_metrics(DATABASE, train_phen, QUERY, test_phen, test_cmr=QUERY * 2, ks=(1, 2))
    value = {(r["task"], r["target"], r["metric"]): r["value"] for r in records}
    lvef = PHENOTYPES.index("lvef")
    assert value[("retrieval", "lvef", "mae@1")] == pytest.approx(abs(train_phen[0, lvef] - test_phen[0, lvef]))
    assert value[("retrieval", "lvef", "mae@2")] == pytest.approx(
        (abs(train_phen[0, lvef] - test_phen[0, lvef]) + abs(train_phen[2, lvef] - test_phen[0, lvef])) / 2)
    random_mae = np.abs(train_phen[:, lvef] - test_phen[0, lvef]).mean()
    assert value[("retrieval", "lvef", "mae_random")] == pytest.approx(random_mae)
    cols = [PHENOTYPES.index(n) for n in ("lvedv", "lvesv", "lvef", "lvm", "rvedv", "rvef")]
    scaler = PhenotypeScaler.fit(train_phen[:, cols])
    z_train, z_test = scaler.transform(train_phen[:, cols]), scaler.transform(test_phen[:, cols])
    np.testing.assert_allclose(z_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z_train.std(axis=0), 1)
    assert value[("retrieval", "all", "precision@1")] == float(np.linalg.norm(z_train[0] - z_test[0]) <= 1.0)
    assert value[("retrieval", "all", "mae_z@1")] == pytest.approx(np.abs(z_train[0] - z_test[0]).mean())
    assert value[("cross_modal", "cmr", "recall@1")] == 1.0
    assert value[("cross_modal", "cmr", "recall_random@2")] == 1.0  # k capped at N = 1


def test_retrieval_rejects_missing_phenotypes() -> None:
    phen = np.full((4, len(PHENOTYPES)), 1.0)
    phen[1, 3] = np.nan
    with pytest.raises(ValueError, match="train phenotypes"):
        retrieval_metrics(DATABASE, phen, QUERY, np.ones((1, len(PHENOTYPES))))


def test_informative_embeddings_beat_chance_and_noise_does_not() -> None:
    rng = np.random.default_rng(1)
    phen = rng.normal(100, 15, size=(400, len(PHENOTYPES)))
    informative = (phen - phen.mean(axis=0)) / phen.std(axis=0) + 0.1 * rng.normal(size=phen.shape)
    noise = rng.normal(size=(400, 16))
    for emb, should_win in ((informative, True), (noise, False)):
        records = retrieval_metrics(emb[:300], phen[:300], emb[300:], phen[300:], ks=(5,))
        value = {(r["target"], r["metric"]): r["value"] for r in records}
        wins = (value[("all", "precision@5")] > 2 * value[("all", "precision_random")]
                and value[("all", "mae_z@5")] < 0.8 * value[("all", "mae_z_random")])
        assert wins == should_win
