"""Notebook 08 applies the session's tiny model bundle to ECG files under papermill, and the library pieces it
shows hold: the attribution explains the ensemble's own prediction, and the similar patients' CMR comes from
the bundle's own training cohort or not at all."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from conftest import run_notebook
from ptacl_lib.data import Cohort, open_cohort
from ptacl_lib.data.readers.writers import write_cohort_ecgs
from ptacl_lib.data.schema import LEADS, PHENOTYPES
from ptacl_lib.inference import Predictor, PreparedEcg, prepare_signal

pytestmark = pytest.mark.slow


def _cohort(study: Path) -> Cohort:
    return open_cohort(study.parent / "cohort" / "manifest.csv")


def _outputs(path: Path) -> tuple[str, list[dict]]:
    book = nbformat.read(path, as_version=4)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return text, outputs


def test_notebook_08_predicts_shows_one_patient_and_explains_lvef(study: Path, bundle: Path, tmp_path: Path) -> None:
    cohort = _cohort(study)
    ecgs = tmp_path / "ecgs"
    files = write_cohort_ecgs(cohort, cohort.indices("test")[:3], ecgs)
    (ecgs / "truncated.xml").write_bytes(files[0].read_bytes()[:15000])
    chosen = files[1].stem
    figures = tmp_path / "figures"
    out = run_notebook("08_apply_to_new_ecgs.ipynb", tmp_path / "nb", bundle=str(bundle), ecg_dir=str(ecgs),
                       run_root=str(study), figures_dir=str(figures), device="cpu", subject=chosen, k=3,
                       attribution_steps=8)
    text, outputs = _outputs(out)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4  # shown, not only saved
    assert "3 of 4 ECGs predicted" in text and "of the absolute attribution lies within 60 ms" in text
    table = pd.read_csv(figures / "08_predictions.csv", dtype={"id": str}).set_index("id")
    assert table.loc["truncated", "status"] == "error" and table.loc["truncated", "reason"].startswith("unreadable")
    assert table.loc[chosen, "status"] == "ok"
    for name in ("ecg", "phenotypes", "similar", "attribution_lvef"):  # the study cohort, found through bundle.json
        assert (figures / f"08_{name}_{chosen}.png").stat().st_size > 10_000, name


def test_the_attribution_shares_out_the_ensembles_own_prediction(study: Path, bundle: Path) -> None:
    from ptacl_lib.inference.attribution import integrated_gradients

    predictor = Predictor.from_bundle(bundle)
    cohort = _cohort(study)
    prepared = prepare_signal(cohort.ecg(int(cohort.indices("test")[0])), 500, predictor.bundle.spec)
    row = predictor.phenotype_table(predictor.embed_prepared([prepared]))
    for phenotype in ("lvef", "lvm"):
        attribution = integrated_gradients(predictor, prepared.windows[0], phenotype, n_steps=16)
        assert attribution.values.shape == prepared.windows[0].shape == (len(LEADS), 1000)
        assert attribution.prediction == pytest.approx(row[phenotype].item(), rel=1e-5)  # the table's own number
        flat_ecg = PreparedEcg(np.zeros_like(prepared.windows[:1]), prepared.quality)
        flat = predictor.phenotype_table(predictor.embed_prepared([flat_ecg]))[phenotype].item()
        assert attribution.baseline_prediction == pytest.approx(flat, rel=1e-5)
        difference = attribution.prediction - attribution.baseline_prediction
        assert attribution.values.sum() == pytest.approx(difference, abs=1e-3 + 1e-2 * abs(difference))
        binned = attribution.binned(0.04)
        assert binned.shape == (len(LEADS), 250) and binned.sum() == pytest.approx(attribution.values.sum(), abs=1e-4)
    weight, time_share = attribution.share_near(np.array([2.0, 6.0]), 0.5)
    assert time_share == pytest.approx(0.2, abs=0.005) and 0.0 <= weight <= 1.0
    with pytest.raises(ValueError, match="unknown phenotype"):
        integrated_gradients(predictor, prepared.windows[0], "heart_rate")


def test_similar_patients_come_from_the_bundles_own_cohort(study: Path, bundle: Path, tiny_cohort: Path) -> None:
    """The training cohort's subjects are found and their frames picked by the cohort's volume curves; another
    synthetic cohort reuses the same ids for other people and is refused."""
    from ptacl_lib.viz.prediction_plots import cohort_rows
    from ptacl_lib.viz.retrieval_cards import end_systole_frame, mid_systole_frame

    predictor = Predictor.from_bundle(bundle)
    cohort = _cohort(study)
    prepared = prepare_signal(cohort.ecg(int(cohort.indices("test")[0])), 500, predictor.bundle.spec)
    near = predictor.similar(predictor.embed_prepared([prepared]), k=4)
    rows = cohort_rows(cohort, near)
    assert cohort.table["subject_id"].iloc[rows].tolist() == near["subject_id"].tolist()
    np.testing.assert_allclose(cohort.table[list(PHENOTYPES)].iloc[rows].to_numpy(float),
                               near[list(PHENOTYPES)].to_numpy(float))
    for row in rows:
        end_systole = end_systole_frame(cohort, row)
        assert end_systole == int(np.argmin(cohort.extra("volumes", row)[0])) > 0
        assert mid_systole_frame(cohort, row) == end_systole // 2  # the retrieval cards' rule
    other = open_cohort(tiny_cohort)  # another synthetic cohort: ids SYN000001... again, other hearts
    everyone = predictor.similar(predictor.embed_prepared([prepared]), k=len(predictor.bundle.reference.subject_ids))
    shared = everyone["subject_id"].isin(other.table["subject_id"])
    with pytest.raises(ValueError, match="other phenotypes than in the bundle's reference set"):
        cohort_rows(other, everyone[shared].head(3))
    with pytest.raises(ValueError, match="is not in .*not the bundle's training cohort"):
        cohort_rows(other, everyone[~shared].head(1))
