"""Alignment inspector: scores on hand-made matrices, shaded ECG tokens and their weights = the model's own
pooling (every rule), the four views, the widget's linked controls, and notebook 06 under papermill."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch

from conftest import run_notebook
from ptacl_lib.data import PreprocessConfig, PTACLDataset, collate, open_cohort
from ptacl_lib.models import PHASE_POOLERS, ModelConfig, PTACLModel, token_phase_bins
from ptacl_lib.runtime import rng_state_preserved
from ptacl_lib.train import TrainConfig, fit
from ptacl_lib.viz import inspector as inspector_module
from ptacl_lib.viz.inspector import (
    ALL_LEADS,
    VIEW_LABELS,
    AlignmentInspector,
    alignment_metrics,
    circular_frame_distance,
    phase_segments,
    row_argmax,
    slice_strip,
    subject_alignments,
)


def fresh_model(seed: int, **overrides: object) -> PTACLModel:
    with rng_state_preserved():
        torch.manual_seed(seed)
        return PTACLModel(ModelConfig(**overrides)).eval()


@pytest.fixture(scope="module")
def inspector(tiny_cohort: Path) -> AlignmentInspector:
    return AlignmentInspector(fresh_model(0), tiny_cohort, compare=fresh_model(1), labels=["PTACL", "global"],
                              split="test", device="cpu")


# ---------------------------------------------------------------------------- scores

def test_circular_frame_distance() -> None:
    a = np.array([0, 24, 3, 0, 0])
    b = np.array([24, 0, 3, 12, 13])
    assert circular_frame_distance(a, b, 25).tolist() == [1, 1, 0, 12, 12]


def test_scores_of_a_constructed_similarity() -> None:
    valid = np.array([True, False, True, True, True])
    sim = np.zeros((5, 5))
    sim[0, 1], sim[0, 0] = 0.9, 0.8  # column 1 is an invalid phase: row 0's argmax is its own frame 0
    sim[1, 3] = 0.9  # invalid row: not scored
    sim[2, 4] = 0.9  # 2 frames off
    sim[3, 0] = 0.9  # |3 - 0| = 3, but 2 frames around the cycle
    sim[4, 0] = 0.9  # |4 - 0| = 4, but 1 frame around the cycle (frame 4 is followed by frame 0)
    assert row_argmax(sim, valid).tolist() == [0, -1, 4, 0, 0]
    m = alignment_metrics(sim, valid, rr_ms=1000.0)  # one frame = 1000 / 5 = 200 ms
    assert m.n_scored == 4
    assert m.diagonal_accuracy == pytest.approx(1 / 4)
    assert m.phase_error_frames == pytest.approx((0 + 2 + 2 + 1) / 4)
    assert m.phase_error_ms == pytest.approx(1.25 * 200.0)

    perfect = alignment_metrics(np.eye(5), np.ones(5, bool), rr_ms=800.0)
    assert (perfect.diagonal_accuracy, perfect.phase_error_frames, perfect.phase_error_ms) == (1.0, 0.0, 0.0)
    empty = alignment_metrics(np.eye(5), np.zeros(5, bool), rr_ms=800.0)
    assert empty.n_scored == 0 and np.isnan(empty.diagonal_accuracy)


# ---------------------------------------------------------------------------- phase segments

def test_shaded_segments_follow_the_phase_bin_rule() -> None:
    """Patch 4, beats of 100 samples, T = 25: token n (centre 4n + 1.5) sits at phase (n - 3) / 25 of beat 0."""
    model = fresh_model(0, ecg_patch_ms=40.0)
    item = {"ecg": torch.zeros(12, 300), "cmr": torch.rand(1, 25, 32, 32), "rpeaks": torch.tensor([12, 112, 212]),
            "phenotypes": torch.zeros(9), "subject_id": "HAND", "index": 0}
    alignment = subject_alignments(model, [item], fs=100.0)[0]
    assert alignment.valid.all() and alignment.rr_ms == pytest.approx(1000.0)
    for k in range(25):
        assert alignment.segments(k) == [(12 + 4 * k, 16 + 4 * k), (112 + 4 * k, 116 + 4 * k)]
    times = model.ecg_encoder.token_times(75)
    bins, inside = token_phase_bins(times, item["rpeaks"][None], 25)
    for k in range(25):  # the nearest-frame rule's weights: a plain mean over the bin's tokens
        in_bin = (inside[0] & (bins[0] == k)).numpy()
        np.testing.assert_allclose(alignment.weights(k), np.where(in_bin, 1.0 / in_bin.sum(), 0.0), rtol=1e-6)
    assert alignment.pooling == "beat_nearest_frame"
    # adjacent pooled tokens merge into one segment
    assert phase_segments(np.array([True, True, True, False, True]), 5) == [(0, 15), (20, 25)]
    with pytest.raises(ValueError, match="phase 25"):
        alignment.segments(25)


def test_overlap_weights_are_kept_and_drawn_as_bars() -> None:
    """Tokens of 40 ms at 100 Hz (token n spans samples [4n - 0.5, 4n + 3.5)), beats of 100 samples from 12,
    T = 50: frame 11 stands for samples [33, 35) of the first beat and [133, 135) of the second, each inside one
    token (8 and 33), which therefore share phase 11 equally; other frames straddle two tokens."""
    model = fresh_model(0, ecg_patch_ms=40.0, phase_pooling="beat_overlap")
    item = {"ecg": torch.zeros(12, 300), "cmr": torch.rand(1, 50, 32, 32), "rpeaks": torch.tensor([12, 112, 212]),
            "phenotypes": torch.zeros(9), "subject_id": "OVL", "index": 0}
    alignment = subject_alignments(model, [item], fs=100.0)[0]
    assert alignment.valid.all() and alignment.pooling == "beat_overlap"
    np.testing.assert_allclose(alignment.token_weights.sum(axis=0), 1.0, rtol=1e-6)
    weights = alignment.weights(11)
    assert np.flatnonzero(weights).tolist() == [8, 33] and weights[8] == pytest.approx(0.5)
    straddled = alignment.weights(10)  # samples [31, 33): 0.5 of a sample in token 7, 1.5 in token 8 (each beat)
    assert np.flatnonzero(straddled).tolist() == [7, 8, 32, 33] and straddled[8] == pytest.approx(3 * straddled[7])
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ptacl_lib.viz.inspector.views import SubjectViews, draw_inspector
    views = SubjectViews("OVL", "", np.zeros((12, 300), np.float32), 100.0, np.zeros((1, 50, 8, 8), np.float32), None,
                         (("m", alignment),))
    fig = draw_inspector(Figure(), views, 10, "II")
    bars = next(ax for ax in fig.axes if ax.get_label() == "weights")
    np.testing.assert_allclose([b.get_height() for b in bars.patches], straddled[[7, 8, 32, 33]], rtol=1e-6)
    assert "beat_overlap" in next(ax for ax in fig.axes if ax.get_label() == "ecg").get_title()


def test_excluded_beats_are_neither_shaded_nor_pooled_and_are_marked() -> None:
    """A premature beat [112, 162) and its pause [162, 312) are left out; the beats around them are shaded."""
    model = fresh_model(0, ecg_patch_ms=40.0)
    item = {"ecg": torch.zeros(12, 500), "cmr": torch.rand(1, 25, 32, 32),
            "rpeaks": torch.tensor([12, 112, 162, 312, 412]), "phenotypes": torch.zeros(9), "subject_id": "PVC",
            "index": 0}
    alignment = subject_alignments(model, [item], fs=100.0)[0]
    assert alignment.excluded_beats() == [(112, 162), (162, 312)]
    assert (alignment.rhythm.n_beats, alignment.rhythm.n_excluded, alignment.rhythm.flag) == (4, 2, "too_few_beats")
    assert alignment.segments(0) == [(12, 16), (312, 316)]  # beats 0 and 3 only
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ptacl_lib.viz.inspector.views import SubjectViews, draw_ecg
    views = SubjectViews("PVC", "", np.zeros((12, 500), np.float32), 100.0, np.zeros((25, 8, 8), np.float32), None,
                         (("m", alignment),))
    ax = Figure().add_subplot()
    draw_ecg(ax, views, 0, "II")
    hatched = [p for p in ax.patches if p.get_hatch() == "//"]
    assert len(hatched) == 2 and "2 of 4 complete beats" in ax.get_title() and "TOO FEW" in ax.get_title()


@pytest.mark.slow
@pytest.mark.parametrize("rule", sorted(PHASE_POOLERS))
def test_drawn_weights_are_what_the_model_pooled(tiny_cohort: Path, rule: str) -> None:
    """On a real subject (detected R peaks), the shaded tokens weighted by the drawn weights give the model's
    phase token, under every pooling rule."""
    model = fresh_model(3, phase_pooling=rule)
    dataset = PTACLDataset(open_cohort(tiny_cohort), "test", PreprocessConfig(), progress=False)
    item = dataset[0]
    alignment = subject_alignments(model, [item], fs=100.0)[0]
    batch = collate([item])
    with torch.no_grad():
        out = model(batch)
        tokens = model.ecg_encoder(batch["ecg"]).tokens[0]
    patch = model.ecg_encoder.patch
    for k in range(alignment.n_phases):
        picked = [n for start, stop in alignment.segments(k) for n in range(start // patch, stop // patch)]
        assert bool(alignment.valid[k]) == bool(picked)
        if picked:
            weights = torch.from_numpy(alignment.weights(k)[picked])
            expected = model.ecg_head((weights[:, None] * tokens[picked]).sum(dim=0))
            torch.testing.assert_close(out["ecg_phase"][0, k], expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- views and widget

def test_snapshot_draws_the_four_linked_views(inspector: AlignmentInspector) -> None:
    subject, phase = inspector.subject_ids[1], 7
    fig = inspector.snapshot(subject, phase)
    views = {ax.get_label(): ax for ax in fig.axes if ax.get_label() in VIEW_LABELS}
    similarity = [ax for ax in fig.axes if ax.get_label() == "similarity"]
    assert set(views) == set(VIEW_LABELS) and len(similarity) == 2  # PTACL and the compared model
    data = inspector.views(subject)
    alignment = data.primary
    np.testing.assert_array_equal(views["cmr"].images[0].get_array(), slice_strip(data.frames, phase))
    pooled = np.flatnonzero(alignment.weights(phase))
    spans = [p.get_x() for p in views["ecg"].patches]
    assert spans == pytest.approx(pooled * alignment.patch / data.fs)  # one shaded span per pooled token
    bars = next(ax for ax in fig.axes if ax.get_label() == "weights").patches
    assert [b.get_height() for b in bars] == pytest.approx(alignment.weights(phase)[pooled])
    cursor = phase / inspector.n_phases * alignment.rr_ms
    assert any(np.allclose(line.get_xdata(), cursor) for line in views["volumes"].lines)
    assert similarity[0].get_title().startswith("PTACL") and similarity[1].get_title().startswith("global")
    outlined = similarity[0].patches[0]
    assert outlined.get_y() == pytest.approx(phase - 0.5)
    twelve = inspector.snapshot(subject, 0, lead=ALL_LEADS)
    assert len(next(ax for ax in twelve.axes if ax.get_label() == "ecg").lines) >= 12
    plt.close("all")


def test_bad_input_gives_clear_errors(inspector: AlignmentInspector, tiny_cohort: Path) -> None:
    subject = inspector.subject_ids[0]
    with pytest.raises(ValueError, match="phase 25"):
        inspector.render_png(subject, 25)
    with pytest.raises(ValueError, match="unknown lead 'V7'"):
        inspector.render_png(subject, 0, lead="V7")
    with pytest.raises(KeyError, match="SYN999999"):
        inspector.views("SYN999999")
    train_row = int(inspector.cohort.indices("train")[0])
    with pytest.raises(KeyError, match=str(inspector.cohort.table["subject_id"].iloc[train_row])):
        inspector.views(train_row)  # outside the inspected split
    with pytest.raises(ValueError, match="share the label"):
        AlignmentInspector(fresh_model(0), tiny_cohort, compare=fresh_model(1), device="cpu")


def test_model_outputs_are_computed_once_per_subject(tiny_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[int] = []
    original = inspector_module.app.subject_alignments

    def counting(model: PTACLModel, items: list[dict], *args: object, **kwargs: object) -> object:
        computed.extend(int(it["index"]) for it in items)
        return original(model, items, *args, **kwargs)

    monkeypatch.setattr(inspector_module.app, "subject_alignments", counting)
    inspector = AlignmentInspector(fresh_model(0), tiny_cohort, split="test", device="cpu")
    subject = inspector.subject_ids[0]
    for phase in (0, 5, 9):
        inspector.render_png(subject, phase)
    inspector.metrics([subject])
    assert computed == [inspector.rows[0]]
    inspector.metrics()  # the rest in one batch; the first subject is not recomputed
    assert sorted(computed) == sorted(inspector.rows.tolist())


def test_batched_outputs_equal_one_subject_at_a_time(inspector: AlignmentInspector) -> None:
    model, subjects = inspector.models[0].model, inspector.subject_ids[:3]
    batched = AlignmentInspector(model, inspector.cohort, split="test", device="cpu")
    batched.prepare(subjects)  # one batch, R peaks padded with -1
    alone = AlignmentInspector(model, inspector.cohort, split="test", device="cpu")
    for subject in subjects:
        np.testing.assert_allclose(alone.alignment(subject).similarity, batched.alignment(subject).similarity,
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(alone.alignment(subject).token_weights,
                                      batched.alignment(subject).token_weights)


def test_metrics_table(inspector: AlignmentInspector) -> None:
    table = inspector.metrics()
    assert len(table) == 2 * len(inspector.rows)
    assert set(table["model"]) == {"PTACL", "global"}
    first = inspector.alignment(inspector.subject_ids[0], model=1).metrics()
    row = table[(table["subject_id"] == inspector.subject_ids[0]) & (table["model"] == "global")].iloc[0]
    assert row["phase_error_ms"] == pytest.approx(first.phase_error_ms)
    assert ((table["phase_error_frames"] >= 0) & (table["phase_error_frames"] <= inspector.n_phases // 2)).all()


def test_widget_controls_are_linked(inspector: AlignmentInspector) -> None:
    app = inspector.app()
    assert app.play.max == app.phase.max == inspector.n_phases - 1
    first_image = app.image.value
    assert first_image[:8] == b"\x89PNG\r\n\x1a\n"
    app.phase.value = 6
    assert app.image.value != first_image and app.subject.value == inspector.rows[0]
    assert "diag. acc" in app.scores.value
    # a phenotype range narrows the subject list to the subjects inside it
    lvef = inspector.cohort.table["lvef"].to_numpy()[inspector.rows]
    cut = float(np.median(lvef))
    app.value_range.value = (app.value_range.min, cut)
    offered = [row for _, row in app.subject.options]
    assert offered == [int(r) for r in inspector.rows if lvef[list(inspector.rows).index(r)] <= cut]
    assert app.subject.value in offered
    if "conduction" in app.categories:
        app.value_range.value = (app.value_range.min, app.value_range.max)
        app.categories["conduction"].value = "normal"
        table = inspector.cohort.table
        assert all(table["conduction"].iloc[row] == "normal" for _, row in app.subject.options)
    before = app.image.value
    app.lead.value = ALL_LEADS
    assert app.image.value != before


# ---------------------------------------------------------------------------- notebook

@pytest.mark.slow
def test_notebook_06_runs_on_trained_runs(tiny_cohort: Path, tmp_path: Path) -> None:
    ptacl = fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(tmp_path / "ptacl"), objective="ptacl",
                            epochs=1, batch_size=16, progress=False))
    baseline = fit(TrainConfig(manifest=str(tiny_cohort), run_dir=str(tmp_path / "none"), objective="none",
                               epochs=0, progress=False))
    figures = tmp_path / "figures"
    executed = run_notebook("06_alignment_inspector.ipynb", tmp_path / "executed", manifest=str(tiny_cohort),
                            run_dir=str(ptacl), compare_run_dir=str(baseline), subjects=1, phases=[0, 12],
                            figures_dir=str(figures), device="cpu")
    assert len(list(figures.glob("inspector_*_phase*.png"))) == 2
    cells = nbformat.read(executed, as_version=4).cells
    images = [o for c in cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the snapshot grid is in the executed copy
    scores = (figures / "alignment_scores.csv").read_text().splitlines()
    assert scores[0].startswith("subject_id,model,diagonal_accuracy")
    assert any("PTACL" in line for line in scores) and any("random init" in line for line in scores)
