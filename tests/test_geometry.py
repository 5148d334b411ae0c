"""Input geometry: presets, any ECG rate, multi-slice cine end to end, and every mismatch refused by name."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_notebook
from ptacl_lib.cli import main
from ptacl_lib.data import PreprocessConfig, PreprocessedCohort, open_cohort
from ptacl_lib.data.preprocess import ecg_lowpass_hz, preprocess_ecg
from ptacl_lib.data.readers.cine_ops import spread_slices
from ptacl_lib.data.store import ArrayStore
from ptacl_lib.data.synthetic import generate_cohort
from ptacl_lib.data.synthetic.cine import area_profile, slice_positions
from ptacl_lib.geometry import DEMO, GEOMETRIES, STORED_DEFAULT, Geometry, resolve_geometry, saved_geometry
from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runs import read_config, read_run_record, run_model_config, run_preprocess_config
from ptacl_lib.train import TrainConfig, fit

#: sha256 of the cine and ECG arrays of ``generate_cohort(out, 6, seed=3)`` written by generator 2.0, before
#: multi-slice cines existed: one slice must still draw exactly these (the CPU demo's numbers rest on them).
GENERATOR_2_0_CMR = "a8d9dfaec83a12a65e335e54082b0d3d036589972b0edd00d33405ac42236ae6"
GENERATOR_2_0_ECG = "e47941906f9c75d985cfe5356c21e5000aa774962bf46a69d41811fb6334e28d"


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_one_slice_draws_exactly_what_generator_2_0_drew(tmp_path: Path) -> None:
    generate_cohort(tmp_path, 6, seed=3, progress=False)
    store = ArrayStore(tmp_path / "arrays")
    assert store.cmr.shape == (6, 1, 50, 64, 64) and store.meta.geometry == STORED_DEFAULT  # the slice axis is there
    assert _sha(store.cmr) == GENERATOR_2_0_CMR and _sha(store.ecg) == GENERATOR_2_0_ECG


def test_a_multi_slice_stack_tapers_from_base_to_apex_and_keeps_the_latent_volumes(tmp_path: Path) -> None:
    z = np.linspace(0.0, 1.0, 100001)
    assert np.trapezoid(area_profile(z), z) == pytest.approx(1.0)  # the stack sweeps the latent volume
    assert area_profile(np.array([0.5]))[0] == 1.0 and slice_positions(1).tolist() == [0.5]
    assert area_profile(slice_positions(3)).mean() == pytest.approx(1.0)  # 3 slices: disc summation is exact
    single = tmp_path / "one"
    generate_cohort(single, 2, seed=5, progress=False)
    generate_cohort(tmp_path / "three", 2, seed=5, geometry=STORED_DEFAULT.overridden(slices=3), progress=False)
    one, three = open_cohort(single), open_cohort(tmp_path / "three")
    assert three.geometry.slices == 3 and three.cmr(0).shape == (3, 50, 64, 64)
    assert one.cmr(0).shape == (1, 50, 64, 64)
    # same subject, same ECG and phenotypes; the bright blood pool shrinks from base to apex
    np.testing.assert_array_equal(one.ecg(1), three.ecg(1))
    assert one.table["lvedv"].tolist() == three.table["lvedv"].tolist()
    bright = [(three.cmr(1)[s] > 0.78).mean() for s in range(3)]
    assert bright[0] > bright[1] > bright[2]


def test_geometry_presets_resolve_with_overrides_and_refuse_bad_values() -> None:
    assert resolve_geometry("", "small") == resolve_geometry("demo") == DEMO
    ukb = resolve_geometry("", "base")
    assert (ukb.name, ukb.ecg_hz, ukb.frames, ukb.image_size, ukb.slices) == ("ukb", 500, 50, 96, 3)
    assert resolve_geometry("ukb", image_size=48, slices=1).changes(ukb) == ["image_size", "slices"]
    assert Geometry("custom", 500, 50, 96, 3) == ukb  # the name takes no part in a comparison
    assert Geometry.from_dict(ukb.to_dict()) == ukb and Geometry.from_dict(ukb.to_dict()).name == "ukb"
    # every config that holds a geometry defaults to the named one, not to a copy of its numbers
    assert PreprocessConfig().geometry is DEMO and (ModelConfig().ecg_hz, ModelConfig().slices) == (100, 1)
    assert TrainConfig(manifest="m", run_dir="r").geometry == DEMO
    assert TrainConfig(manifest="m", run_dir="r", model="base").geometry == ukb  # the preset's geometry
    with pytest.raises(ValueError, match="unknown input geometry 'mri'"):
        resolve_geometry("mri")
    with pytest.raises(ValueError, match="overrides must be >= 0"):
        resolve_geometry("demo", frames=-1)
    with pytest.raises(ValueError, match="unknown input geometry"):
        TrainConfig(manifest="m", run_dir="r", geometry="big")
    assert set(GEOMETRIES) == {"demo", "ukb"}


def test_saved_geometries_of_every_record_format_load() -> None:
    """config.json and study_config.json keep the geometry once, as a dict; earlier formats still read."""
    ukb = GEOMETRIES["ukb"]
    assert saved_geometry({"geometry": ukb.to_dict()}) == ukb
    # a study of the format with a name and four overrides
    assert saved_geometry({"geometry": "ukb", "ecg_hz": 250, "frames": 0, "image_size": 0, "slices": 0},
                          "small") == ukb.overridden(ecg_hz=250)
    assert saved_geometry({"geometry": "", "model": "base"}, "base") == ukb
    # a run of the format with the resolved input_geometry beside a name
    assert saved_geometry({"geometry": "", "input_geometry": ukb.to_dict(), "preprocess": {}}) == ukb
    # a run saved before the geometry had a name: its preprocess entry, or nothing at all (the demo)
    old = {"preprocess": {"target_fs": 100, "n_frames": 25, "image_size": 32, "lowpass_hz": 40.0}}
    assert saved_geometry(old, "base") == DEMO and saved_geometry({}, "base") == DEMO


@pytest.mark.parametrize("fs", [100, 250, 500])
def test_an_ecg_token_stays_100_ms_at_any_rate(fs: int) -> None:
    config = ModelConfig().at_geometry(DEMO.overridden(ecg_hz=fs))
    assert config.ecg_patch * 1000 / fs == pytest.approx(100.0)
    assert config.ecg_stem_kernel % 2 == 1 and abs(config.ecg_stem_kernel * 1000 / fs - 50.0) <= 1000 / fs
    model = PTACLModel(config)
    out = model.ecg_encoder(torch.randn(2, 12, 10 * fs))
    assert out.tokens.shape == (2, 100, config.ecg_dim)
    assert out.token_times[1] - out.token_times[0] == config.ecg_patch  # token times in samples at fs


def test_the_demo_model_is_unchanged_and_a_stack_is_read_as_frame_channels() -> None:
    torch.manual_seed(0)
    demo = PTACLModel(ModelConfig())
    shapes = {k: tuple(v.shape) for k, v in demo.state_dict().items()}
    assert shapes["ecg_encoder.patchify.0.weight"] == (32, 12, 5)  # 50 ms at 100 Hz, as before
    assert shapes["ecg_encoder.patchify.2.weight"] == (64, 32, 10)
    assert shapes["cmr_encoder.frame_encoder.features.0.weight"] == (16, 1, 4, 4)
    demo.eval()
    with pytest.raises(ValueError, match=r"\[B, 1, T, H, W\]"):  # the slice axis is always there, S = 1 included
        demo.cmr_encoder(torch.rand(2, 25, 32, 32))
    stacked = PTACLModel(ModelConfig().at_geometry(GEOMETRIES["ukb"])).eval()
    assert tuple(stacked.cmr_encoder.frame_encoder.features[0].weight.shape) == (16, 3, 4, 4)
    out = stacked.cmr_encoder(torch.rand(2, 3, 50, 48, 48))
    assert out.tokens.shape == (2, 50, 64)  # still one token per frame (phase)
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        stacked.cmr_encoder(torch.rand(2, 50, 48, 48))


def test_the_band_keeps_the_qrs_high_frequencies_where_the_rate_allows() -> None:
    assert (ecg_lowpass_hz(100), ecg_lowpass_hz(250), ecg_lowpass_hz(500), ecg_lowpass_hz(1000)) == \
        (40.0, 112.5, 150.0, 150.0)
    fs, t = 500.0, np.arange(5000) / 500.0
    hf, mains = np.sin(2 * np.pi * 90 * t), np.sin(2 * np.pi * 50 * t)
    ecg = np.tile((hf + mains).astype(np.float32), (12, 1))
    ukb = PreprocessConfig(geometry=resolve_geometry("ukb"))
    out = preprocess_ecg(ecg, fs, ukb)[0, 500:-500]
    kept = np.abs(np.fft.rfft(out)) / len(out) * 2
    freqs = np.fft.rfftfreq(len(out), 1 / fs)
    assert kept[np.argmin(np.abs(freqs - 90))] > 0.9  # 90 Hz content (QRS notches, slurs) kept
    assert kept[np.argmin(np.abs(freqs - 50))] < 0.05  # mains hum notched
    demo = preprocess_ecg(ecg, fs, PreprocessConfig())  # 100 Hz and a 40 Hz edge: both mostly gone
    assert np.abs(demo[0, 100:-100]).max() < 0.35 < 0.9 < np.abs(out).max()


def test_spread_slices_takes_the_centre_of_equal_runs() -> None:
    assert spread_slices(10, 3).tolist() == [1, 5, 8]
    assert spread_slices(3, 1).tolist() == [1] and spread_slices(3, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="4 slices requested, the stack has 3"):
        spread_slices(3, 4)


def test_a_cohort_stored_below_the_geometry_is_refused_by_field(tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = open_cohort(tiny_cohort)  # 1 slice, 50 frames of 64 px, 500 Hz
    for override, words in [
        ({"slices": 3}, "1 short-axis slice(s) where 3 are asked (--slices)"),
        ({"frames": 60}, "50 cine frames where 60 are asked (--frames)"),
        ({"image_size": 96}, "64 pixel frames where 96 are asked (--image-size)"),
        ({"ecg_hz": 1000}, "500 Hz ECG where 1000 are asked (--ecg-hz)"),
    ]:
        config = PreprocessConfig(geometry=DEMO.overridden(**override))
        with pytest.raises(ValueError, match="stored below .*" + re.escape(words)):
            PreprocessedCohort.build_or_load(cohort, config, progress=False)
    assert main(["train", "--manifest", str(tiny_cohort), "--run-dir", str(tmp_path / "run"), "--model", "base",
                 "--epochs", "1", "--no-progress"]) == 2  # base defaults to ukb: 3 slices asked, 1 stored


def _config(manifest: Path, run_dir: Path, geometry: str = "ukb", **overrides: object) -> TrainConfig:
    """A one-epoch run at ``geometry`` with small frames (32 px, 25 frames) and the given overrides."""
    fields = {k: overrides.pop(k) for k in ("ecg_hz", "frames", "image_size", "slices") if k in overrides}
    inputs = resolve_geometry(geometry, **{"image_size": 32, "frames": 25, **fields})
    settings: dict[str, object] = dict(manifest=str(manifest), run_dir=str(run_dir), epochs=1, batch_size=8,
                                       progress=False, geometry=inputs)
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.slow
def test_resume_and_init_from_refuse_another_geometry_naming_the_field(tmp_path: Path) -> None:
    manifest = generate_cohort(tmp_path / "cohort", 24, seed=2, geometry=STORED_DEFAULT.overridden(slices=3),
                               progress=False)
    run = fit(_config(manifest, tmp_path / "run", ecg_hz=250))
    record = read_run_record(run)
    # the geometry is recorded once: not again in the model's or the preprocessing's entry
    assert record["geometry"] == {"name": "ukb", "ecg_hz": 250, "frames": 25, "image_size": 32, "slices": 3}
    assert not {"ecg_hz", "slices", "cmr_slices"} & set(record["model_config"])
    assert record["preprocess"] == {"highpass_hz": 0.5, "lowpass_hz": 112.5, "mains_hz": 50.0,
                                    "rpeak_method": "consensus"}
    assert read_config(run).geometry == record_geometry(record)
    assert (run_model_config(run).ecg_hz, run_model_config(run).slices) == (250, 3)
    assert run_preprocess_config(run).geometry.numbers() == {"ecg_hz": 250, "frames": 25, "image_size": 32,
                                                             "slices": 3}
    with pytest.raises(ValueError, match=r"cannot resume .* differs in \['slices'\]"):
        fit(_config(manifest, tmp_path / "run", ecg_hz=250, slices=1, resume=True))
    with pytest.raises(ValueError, match=r"cannot resume .* differs in \['ecg_hz'\]"):
        fit(_config(manifest, tmp_path / "run", resume=True))
    # the same geometry named another way resumes
    fit(_config(manifest, tmp_path / "run", geometry="demo", model="small", ecg_hz=250, slices=3, resume=True))
    with pytest.raises(ValueError, match=r"init_from=.* another input geometry \(it differs in \['ecg_hz', 'slices'\]"):
        fit(_config(manifest, tmp_path / "tuned", geometry="demo", objective="none", epochs=0, init_from=str(run)))
    with pytest.raises(ValueError, match=r"another input geometry \(it differs in \['frames'\]\)"):
        fit(_config(manifest, tmp_path / "tuned", objective="none", epochs=0, init_from=str(run), ecg_hz=250,
                    frames=20))
    # fine-tuning starts from the run at the run's own geometry
    from ptacl_lib.evaluate import FinetuneConfig, finetune

    tuned = finetune(run, manifest, FinetuneConfig(epochs=1, batch_size=8, device="cpu"))
    assert read_config(run / "finetune").geometry == read_config(run).geometry and tuned.predictions.shape[1] == 9
    # evaluation reads every run at its own geometry: it takes no geometry flags
    with pytest.raises(SystemExit):
        main(["evaluate", "--run-dir", str(run), "--manifest", str(manifest), "--slices", "1"])


def record_geometry(record: dict[str, object]) -> Geometry:
    return Geometry.from_dict(record["geometry"])  # type: ignore[arg-type]


def test_a_study_refuses_to_resume_on_another_geometry(tmp_path: Path) -> None:
    from ptacl_lib.study import StudyConfig, check_resumable_study, read_study_config, save_study_config

    config = StudyConfig(manifest="m.csv", out=str(tmp_path), arms=("ptacl",), geometry="ukb")
    save_study_config(config)
    check_resumable_study(config)
    with pytest.raises(ValueError, match=r"'ptacl' runs trained with other \['image_size'\]"):
        check_resumable_study(StudyConfig(manifest="m.csv", out=str(tmp_path), arms=("ptacl",),
                                          geometry=GEOMETRIES["ukb"].overridden(image_size=64)))
    saved = json.loads((tmp_path / "study_config.json").read_text())
    assert saved["geometry"] == GEOMETRIES["ukb"].to_dict() and "slices" not in saved  # recorded once
    assert read_study_config(tmp_path).geometry == GEOMETRIES["ukb"]
    # a study_config.json of the earlier format (a name and four overrides) still reads, and still resumes
    (tmp_path / "study_config.json").write_text(json.dumps({**saved, "geometry": "ukb", "ecg_hz": 0, "frames": 0,
                                                             "image_size": 0, "slices": 0}))
    assert read_study_config(tmp_path).geometry == GEOMETRIES["ukb"]
    check_resumable_study(config)


@pytest.mark.slow
def test_prepare_ukb_three_slices_then_a_ukb_geometry_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real geometry end to end: prepare-ukb --geometry ukb (500 Hz, 50 frames, 96 px, 3 slices), then a
    study --geometry ukb."""
    from ptacl_lib.data.readers.writers import write_ukb_like_cohort

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    raw = write_ukb_like_cohort(tmp_path / "ukb", 30, n_slices=5, n_frames=20, size=96, realistic_ecg=True)
    prepared = tmp_path / "data"
    inputs = ["--ecg-dir", str(raw["ecg_dir"]), "--cmr-dir", str(raw["cmr_dir"]), "--idp-csv", str(raw["idp_csv"]),
              "--workers", "1", "--no-progress"]
    assert main(["prepare-ukb", *inputs, "--out", str(prepared), "--geometry", "ukb"]) == 0
    cohort = open_cohort(prepared)
    assert cohort.geometry == GEOMETRIES["ukb"] and cohort.cmr(0).shape == (3, 50, 96, 96)
    locations = cohort.table["cmr_slice_locations"].iloc[0].split(";")
    assert [float(v) for v in locations] == [0.0, 20.0, 40.0]  # slices 0, 2 and 4 of 5, 10 mm apart
    assert main(["prepare-ukb", *inputs, "--out", str(tmp_path / "bad"), "--slice-index", "1"]) == 2  # 3 slices

    out = tmp_path / "study"
    assert main(["study", "--manifest", str(prepared / "manifest.csv"), "--out", str(out), "--geometry", "ukb",
                 "--model", "small", "--arms", "ptacl", "--seeds", "1", "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--no-notebooks", "--no-ceiling"]) == 0
    record = read_run_record(out / "arms" / "ptacl" / "seed0")
    assert record["geometry"] == {"name": "ukb", "ecg_hz": 500, "frames": 50, "image_size": 96, "slices": 3}
    assert record["preprocess"]["lowpass_hz"] == 150.0
    assert json.loads((out / "study_config.json").read_text())["geometry"] == GEOMETRIES["ukb"].to_dict()
    assert (out / "arms" / "ptacl" / "seed0" / "metrics.json").exists()

    # the inspector reads the run at its own geometry and shows every slice of a frame side by side
    from ptacl_lib.viz.inspector import VIEW_LABELS, AlignmentInspector

    inspector = AlignmentInspector(out / "arms" / "ptacl" / "seed0", prepared / "manifest.csv", split="test",
                                   device="cpu")
    assert inspector.n_phases == 50 and inspector.views(inspector.subject_ids[0]).frames.shape == (3, 50, 96, 96)
    fig = inspector.snapshot(inspector.subject_ids[0], 10)
    cmr = next(ax for ax in fig.axes if ax.get_label() == "cmr" and ax.get_label() in VIEW_LABELS)
    assert cmr.images[0].get_array().shape == (96, 3 * 96 + 2)
    # notebook 01 draws every slice of the stored cine
    book = run_notebook("01_data_exploration.ipynb", tmp_path / "nb", manifest=str(prepared / "manifest.csv"),
                        run_root=str(out))
    assert (out / "figures" / "01_cine_montage.png").exists() and book.exists()

    # one slice stored, three asked: a clear error, never an upsample
    single = tmp_path / "single"
    assert main(["prepare-ukb", *inputs, "--out", str(single), "--slices", "1"]) == 0
    code = main(["study", "--manifest", str(single / "manifest.csv"), "--out", str(tmp_path / "s2"), "--geometry",
                 "ukb", "--arms", "ptacl", "--seeds", "1", "--epochs", "1", "--no-notebooks", "--no-ceiling"])
    assert code == 2
