"""Embedding a run, evaluating it into metrics.json, disagreement cases and the fine-tune option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptacl_lib.data.schema import PHENOTYPES
from ptacl_lib.evaluate import Embeddings, FinetuneConfig, compare, embed, evaluate_embeddings, evaluate_run, finetune
from ptacl_lib.evaluate.pipeline import disagreements


def _synthetic_embeddings(n_train: int = 60, n_test: int = 20, informative: bool = True, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    phen = rng.normal(100, 20, size=(n, len(PHENOTYPES))).astype(np.float32)
    ecg = (phen - 100) / 20 + 0.05 * rng.normal(size=phen.shape) if informative else rng.normal(size=(n, 9))
    return Embeddings(ecg=ecg.astype(np.float32), cmr=((phen - 100) / 20).astype(np.float32),
                      subject_ids=np.array([f"S{i:03d}" for i in range(n)]),
                      split=np.array(["train"] * n_train + ["test"] * n_test), index=np.arange(n), phenotypes=phen)


def test_embeddings_round_trip_and_subset(tmp_path: Path) -> None:
    emb = _synthetic_embeddings()
    loaded = Embeddings.load(emb.save(tmp_path / "embeddings.npz"))
    for name in ("ecg", "cmr", "subject_ids", "split", "index", "phenotypes"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(emb, name))
    test = loaded.subset("test")
    assert len(test) == 20 and set(test.split) == {"test"} and test.subject_ids[0] == "S060"
    with pytest.raises(ValueError, match="no 'val' rows"):
        emb.subset("val")
    with pytest.raises(FileNotFoundError, match="embeddings not found"):
        Embeddings.load(tmp_path / "nowhere")


def test_missing_phenotype_error_names_the_subject() -> None:
    emb = _synthetic_embeddings()
    emb.phenotypes[7, PHENOTYPES.index("lvm")] = np.nan
    with pytest.raises(ValueError, match="subject S007 .* has no lvm"):
        evaluate_embeddings(emb)


def test_evaluate_embeddings_records() -> None:
    records = evaluate_embeddings(_synthetic_embeddings(), cmr_probe=True, ks=(1, 5))
    assert {(r["embedding"], r["task"]) for r in records} == {
        ("ecg", "retrieval"), ("ecg", "cross_modal"), ("ecg", "regression"), ("cmr", "regression")}
    r2 = {(r["embedding"], r["target"]): r["value"] for r in records if r["metric"] == "r2"}
    assert all(r2[("ecg", p)] > 0.9 for p in PHENOTYPES)  # the ECG here is the phenotype vector plus noise
    assert not any(r["embedding"] == "cmr" for r in evaluate_embeddings(_synthetic_embeddings(), ks=(1,)))


def test_disagreements_sign_and_selection() -> None:
    good, noise = _synthetic_embeddings(), _synthetic_embeddings(informative=False, seed=0)
    cases = disagreements(good, noise, k=3, n=2)
    wins = cases[cases["difference"] < 0]
    assert len(wins) == 2 and len(cases) <= 4
    np.testing.assert_allclose(cases["difference"], cases["distance"] - cases["other_distance"])
    # the informative arm retrieves closer phenotypes on average, so its wins outnumber its losses
    assert wins["difference"].abs().sum() > cases[cases["difference"] > 0]["difference"].sum()


@pytest.fixture(scope="module")
def random_init_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ptacl_lib.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("random_init")
    return fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(root / "run"), objective="none", seed=3,
                           progress=False))


def test_embed_run_dir_saves_and_matches_the_model(random_init_run: Path, tiny_cohort: Path) -> None:
    from ptacl_lib.data import open_cohort
    from ptacl_lib.runs import load_run

    cohort = open_cohort(tiny_cohort)
    emb = embed(random_init_run, cohort, device="cpu")
    n_train, n_test = len(cohort.indices("train")), len(cohort.indices("test"))
    assert emb.ecg.shape[0] == emb.cmr.shape[0] == n_train + n_test and emb.ecg.shape[1] == emb.cmr.shape[1]
    np.testing.assert_array_equal(emb.subject_ids, cohort.table["subject_id"].to_numpy()[emb.index])
    np.testing.assert_allclose(emb.phenotypes, cohort.phenotypes(emb.index))
    np.testing.assert_array_equal(Embeddings.load(random_init_run).ecg, emb.ecg)
    model, _ = load_run(random_init_run)
    direct = embed(model, cohort, splits="test", device="cpu", batch_size=5)  # other batching, same numbers
    np.testing.assert_allclose(direct.ecg, emb.subset("test").ecg, rtol=1e-4, atol=1e-5)


def test_evaluate_run_writes_metrics_that_compare_reads(random_init_run: Path, tiny_cohort: Path) -> None:
    payload = evaluate_run(random_init_run, tiny_cohort, ks=(1, 3), device="cpu")
    assert json.loads((random_init_run / "metrics.json").read_text()) == payload
    assert payload["arm"] == "none" and payload["seed"] == 3
    df = compare([random_init_run])
    assert set(df["arm"]) == {"none"} and {"retrieval", "cross_modal", "regression"} <= set(df["task"])
    assert len(df[(df["task"] == "regression")]) == 3 * len(PHENOTYPES)


@pytest.mark.slow
def test_finetune_is_seeded_and_scores_the_test_split(random_init_run: Path, tiny_cohort: Path) -> None:
    config = FinetuneConfig(epochs=1, batch_size=16, device="cpu")
    first, second = finetune(random_init_run, tiny_cohort, config), finetune(random_init_run, tiny_cohort, config)
    assert first.predictions.shape == first.truth.shape == (len(first.truth), len(PHENOTYPES))
    assert np.isfinite(first.predictions).all()
    np.testing.assert_allclose(first.predictions, second.predictions)
    assert {r["task"] for r in first.metrics(task="finetune")} == {"finetune"}


@pytest.mark.slow
def test_a_held_out_test_cohort_is_the_test_set_of_every_score(tiny_cohort: Path, tmp_path: Path) -> None:
    """Probes and retrieval fit on the study cohort's train split; every held-out subject is scored."""
    from ptacl_lib.data import open_cohort
    from ptacl_lib.data.synthetic import generate_cohort
    from ptacl_lib.evaluate.ceiling import ceiling_table
    from ptacl_lib.train import TrainConfig, fit

    held = generate_cohort(tmp_path / "held", n_subjects=24, seed=7, progress=False, id_prefix="HOT")
    run = fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(tmp_path / "run"), objective="ptacl", epochs=1,
                          batch_size=16, seed=0, progress=False))
    payload = evaluate_run(run, tiny_cohort, device="cpu", test_cohort=held)
    assert payload["settings"]["test_manifest"] == str(held) and "held-out" in payload["settings"]["test_set"]
    emb = Embeddings.load(run)
    test, train = emb.subset("test"), emb.subset("train")
    assert len(test) == 24 and all(s.startswith("HOT") for s in test.subject_ids)
    assert len(train) == len(open_cohort(tiny_cohort).indices("train"))
    np.testing.assert_allclose(test.phenotypes, open_cohort(held).phenotypes(test.index), rtol=1e-6)
    records = {(r["embedding"], r["task"], r["target"], r["metric"]) for r in payload["records"]}
    assert ("ecg", "alignment", "all", "diagonal_accuracy") in records
    assert ("cmr", "regression", "lvef", "r2") in records
    ceiling = ceiling_table(open_cohort(tiny_cohort), test_cohort=open_cohort(held))
    assert set(ceiling["arm"]) == {"latent_oracle", "median_beat"} and len(ceiling) > 0
