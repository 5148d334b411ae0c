"""Evaluate one run end to end: embed, retrieve, probe, and write ``metrics.json`` in the run directory.

``metrics.json`` holds ``{"arm", "seed", "run_dir", "settings", "records"}``; each record is
``{"embedding", "task", "target", "metric", "value"}``, where ``embedding`` says whether the
number was computed on the ECG embedding (every arm) or on the CMR embedding (the ``cmr_probe``
reference, computed for PTACL runs). ``compare`` reads these files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..arms import CMR_PROBE_ARM, CMR_PROBE_SOURCE, order_arms
from ..atomic import replacing
from ..data import Cohort, open_cohort
from ..runs import EMBEDDINGS_FILE, METRICS_FILE, read_config, read_evaluation
from .alignment import alignment_records
from .compare import compare, summarise, with_mean_r2
from .embeddings import Embeddings, embed, heldout_embeddings
from .finetune import FinetuneConfig, finetune
from .regression import ProbeResult, fit_linear_probe
from .retrieval import (
    DEFAULT_KS,
    RELEVANCE_RADIUS,
    MetricRecord,
    Neighbours,
    nearest_neighbours,
    query_phenotype_distance,
    retrieval_metrics,
    retrieval_zscores,
)


def probe(embeddings: Embeddings, modality: str = "ecg") -> ProbeResult:
    """The frozen linear probe of one modality's embedding: fit on the train rows, predict the test rows."""
    if modality not in ("ecg", "cmr"):
        raise ValueError(f"modality must be 'ecg' or 'cmr', got {modality!r}")
    train, test = embeddings.subset("train"), embeddings.subset("test")
    return fit_linear_probe(getattr(train, modality), train.require_phenotypes(),
                            getattr(test, modality), test.require_phenotypes())


def probes_of(arm: str, embeddings: Embeddings) -> dict[str, ProbeResult]:
    """The ECG probe of one arm's run, plus the ``cmr_probe`` reference when the arm is its source."""
    results = {arm: probe(embeddings, "ecg")}
    if arm == CMR_PROBE_SOURCE:
        results[CMR_PROBE_ARM] = probe(embeddings, "cmr")
    return results


def probe_by_arm(per_arm: dict[str, Embeddings]) -> dict[str, ProbeResult]:
    """``probes_of`` every arm's embeddings (one seed each), in one dict."""
    return {name: result for arm, emb in per_arm.items() for name, result in probes_of(arm, emb).items()}


def query_neighbours(embeddings: Embeddings, k: int) -> Neighbours:
    """Each test ECG's ``k`` nearest training ECGs (indices into ``embeddings.subset("train")``)."""
    return nearest_neighbours(embeddings.subset("test").ecg, embeddings.subset("train").ecg, k)


def retrieval_quality(embeddings: Embeddings, k: int) -> np.ndarray:
    """Per test query, the mean phenotype z-distance of its top-``k`` retrieved training patients ``[N_test]``.

    Lower is better; z-scores use the training statistics (``retrieval.retrieval_zscores``).
    """
    train, test = embeddings.subset("train"), embeddings.subset("test")
    train_z, test_z = retrieval_zscores(train.require_phenotypes(), test.require_phenotypes())
    return query_phenotype_distance(test_z, train_z, query_neighbours(embeddings, k), k)


def disagreements(embeddings: Embeddings, other: Embeddings, k: int, n: int) -> pd.DataFrame:
    """The test queries whose top-``k`` retrieval quality differs most between two arms.

    Returns ``n`` rows where ``embeddings`` retrieves closer phenotypes than ``other`` and ``n`` where it
    is the other way round, with columns ``query`` (test position), ``subject_id``, ``distance``,
    ``other_distance`` and ``difference`` (``distance - other_distance``; negative: ``embeddings`` wins).
    """
    a, b = embeddings.subset("test"), other.subset("test")
    if not np.array_equal(a.subject_ids, b.subject_ids):
        raise ValueError("the two arms were embedded on different test subjects")
    dist_a, dist_b = retrieval_quality(embeddings, k), retrieval_quality(other, k)
    table = pd.DataFrame({"query": np.arange(len(a)), "subject_id": a.subject_ids, "distance": dist_a,
                          "other_distance": dist_b, "difference": dist_a - dist_b}).sort_values("difference")
    wins, losses = table.head(n), table.tail(n).iloc[::-1]
    return pd.concat([wins[wins["difference"] < 0], losses[losses["difference"] > 0]]).reset_index(drop=True)


def evaluate_embeddings(embeddings: Embeddings, cmr_probe: bool = False, ks: Sequence[int] = DEFAULT_KS,
                        radius: float = RELEVANCE_RADIUS) -> list[MetricRecord]:
    """Retrieval, cross-modal recall and the ECG probe (plus the CMR probe when asked), as records."""
    train, test = embeddings.subset("train"), embeddings.subset("test")
    ecg_records = retrieval_metrics(train.ecg, train.require_phenotypes(), test.ecg, test.require_phenotypes(),
                                    test_cmr=test.cmr, ks=ks, radius=radius)
    ecg_records += probe(embeddings, "ecg").metrics()
    records = [{"embedding": "ecg", **r} for r in ecg_records]
    if cmr_probe:
        records += [{"embedding": "cmr", **r} for r in probe(embeddings, "cmr").metrics()]
    return records


def test_set_name(cohort: Cohort, test_cohort: Cohort | None) -> str:
    """Where a study's test numbers come from, in words: a held-out cohort, or the cohort's own test split."""
    if test_cohort is None:
        return f"the test split of {cohort.manifest_path}"
    return f"the held-out test cohort {test_cohort.manifest_path} (every subject)"


def evaluate_run(run_dir: str | Path, cohort: Cohort | str | Path, ks: Sequence[int] = DEFAULT_KS,
                 radius: float = RELEVANCE_RADIUS, cmr_probe: bool | None = None, device: str = "auto",
                 batch_size: int = 64, finetune_config: FinetuneConfig | None = None,
                 test_cohort: Cohort | str | Path | None = None) -> dict[str, Any]:
    """Embed train and test, evaluate, and write ``<run_dir>/metrics.json``; returns what was written.

    ``cmr_probe`` defaults to "only for PTACL runs" (the upper reference of the comparison).
    With ``finetune_config``, the run's ECG encoder is also fine-tuned (records of task ``finetune``).
    With ``test_cohort`` (a held-out cohort), every one of its subjects is the test set: probes and the
    retrieval database still come from ``cohort``'s train split, and retrieval, probes and the alignment
    scores are scored on the held-out subjects. ``settings.test_set`` names the test set used.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    if test_cohort is not None and not isinstance(test_cohort, Cohort):
        test_cohort = open_cohort(test_cohort)
    if test_cohort is None:
        embeddings = embed(run_dir, cohort, batch_size=batch_size, device=device)
    else:
        embeddings = heldout_embeddings(run_dir, cohort, test_cohort, batch_size=batch_size, device=device)
    with_cmr = config.objective == CMR_PROBE_SOURCE if cmr_probe is None else cmr_probe
    records = evaluate_embeddings(embeddings, cmr_probe=with_cmr, ks=ks, radius=radius)
    scored, split = (cohort, "test") if test_cohort is None else (test_cohort, None)
    records += [{"embedding": "ecg", **r} for r in alignment_records(run_dir, scored, split=split, device=device)]
    if finetune_config is not None:
        tuned = finetune(run_dir, cohort, dataclasses.replace(finetune_config, device=device, seed=config.seed))
        records += [{"embedding": "ecg", **r} for r in tuned.metrics(task="finetune")]
    payload = {
        "arm": config.objective,
        "seed": int(config.seed),
        "run_dir": str(run_dir),
        "settings": {"ks": list(ks), "relevance_radius": radius, "embeddings": EMBEDDINGS_FILE,
                     "test_set": test_set_name(cohort, test_cohort),
                     "test_manifest": str(test_cohort.manifest_path) if test_cohort is not None else None,
                     "n_train": int((embeddings.split == "train").sum()),
                     "n_test": int((embeddings.split == "test").sum()),
                     "finetune": dataclasses.asdict(finetune_config) if finetune_config is not None else None},
        "records": records,
    }
    path = run_dir / METRICS_FILE
    with replacing(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=1, allow_nan=True))
    return payload


def evaluate_runs(run_dirs: Iterable[str | Path], cohort: Cohort | str | Path, out_dir: str | Path,
                  device: str = "auto", test_cohort: Cohort | str | Path | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every run (on ``test_cohort`` when given: ``evaluate_run``), then write ``comparison.csv``
    (tidy, with the mean R²) and ``summary.csv`` (CIs)."""
    from tqdm.auto import tqdm

    run_dirs = [Path(r) for r in run_dirs]
    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    if test_cohort is not None and not isinstance(test_cohort, Cohort):
        test_cohort = open_cohort(test_cohort)
    for run_dir in tqdm(run_dirs, desc="evaluating runs", unit="run"):
        evaluate_run(run_dir, cohort, device=device, test_cohort=test_cohort)
    table = with_mean_r2(compare(run_dirs))
    summary = summarise(table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "comparison.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    return table, summary


def read_run_info(run_dir: str | Path) -> tuple[str, int]:
    """``(arm, seed)`` of an evaluated run, from its ``metrics.json``."""
    payload = read_evaluation(run_dir)
    return str(payload["arm"]), int(payload["seed"])


def embeddings_by_arm(run_dirs: Iterable[str | Path], seed: int | None = None) -> dict[str, Embeddings]:
    """The saved embeddings of one run per arm: the given ``seed``, or each arm's lowest seed."""
    chosen: dict[str, tuple[int, Path]] = {}
    for run_dir in run_dirs:
        arm, run_seed = read_run_info(run_dir)
        if seed is not None and run_seed != seed:
            continue
        if arm not in chosen or run_seed < chosen[arm][0]:
            chosen[arm] = (run_seed, Path(run_dir))
    if not chosen:
        raise ValueError(f"no evaluated run with seed {seed}" if seed is not None else "no evaluated runs")
    return {arm: Embeddings.load(chosen[arm][1]) for arm in order_arms(chosen)}
