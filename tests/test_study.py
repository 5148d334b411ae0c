"""``ptacl study``: the README's own-data path end to end, notebooks that never retrain, a runner that keeps going."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import run_notebook
from ptacl_lib.cli import main
from ptacl_lib.study import StudyConfig, read_study_config, run_study, save_study_config

NOTEBOOKS = ("01_data_exploration", "02_pretraining", "03_embeddings_umap", "04_retrieval_case_studies",
             "05_regression", "06_alignment_inspector")


def test_study_config_is_validated_and_saved_settings_come_back(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown arm"):
        StudyConfig(manifest="m.csv", out=str(tmp_path), arms=("ptacl", "clip"))
    with pytest.raises(ValueError, match="manifest and an out"):
        StudyConfig(out=str(tmp_path))
    config = StudyConfig(manifest="m.csv", out=str(tmp_path), arms=("supervised", "none"), seeds=2, epochs=3)
    train = config.train_config("supervised", 1)  # its recipe trains 1.5 x 3 epochs, rounded to 4
    assert (train.objective, train.seed, train.epochs, train.resume) == ("supervised", 1, 4, True)
    assert train.run_dir == str(tmp_path / "arms" / "supervised" / "seed1")


def test_arm_recipes_scale_only_their_arm_and_old_studies_keep_one_recipe(tmp_path: Path) -> None:
    config = StudyConfig(manifest="m.csv", out=str(tmp_path), batch_size=64, lr=2e-3, epochs=8)
    supervised, ptacl = config.train_config("supervised", 0), config.train_config("ptacl", 0)
    assert (supervised.batch_size, supervised.lr, supervised.epochs) == (32, pytest.approx(4e-3), 12)
    assert (ptacl.batch_size, ptacl.lr, ptacl.epochs) == (64, pytest.approx(8e-3), 16)
    global_only = config.train_config("global", 0)
    assert (global_only.lr, global_only.warmup_epochs, global_only.epochs) == (pytest.approx(4e-3), 3.0, 16)
    assert (config.train_config("none", 0).warmup_epochs, config.train_config("none", 0).epochs) == (1.0, 8)
    plain = dataclasses.replace(config, recipes=False).train_config("supervised", 0)
    assert (plain.batch_size, plain.lr) == (64, 2e-3)
    record = json.loads(save_study_config(config).read_text())
    del record["recipes"], record["recipe_table"]  # a study_config.json written before recipes existed
    (tmp_path / "study_config.json").write_text(json.dumps(record))
    assert read_study_config(tmp_path).train_config("supervised", 0).batch_size == 64


def test_a_study_keeps_its_saved_recipes_and_refuses_to_mix_them(tmp_path: Path) -> None:
    from ptacl_lib.arms import ARM_RECIPES
    from ptacl_lib.study import check_resumable_study

    config = StudyConfig(manifest="m.csv", out=str(tmp_path), epochs=8, arms=("ptacl", "supervised"))
    assert config.recipe_table == ARM_RECIPES and config.recipe_table is not ARM_RECIPES
    older = dataclasses.replace(config, recipe_table={"ptacl": {"lr": 2.0}})
    save_study_config(older)
    saved = read_study_config(tmp_path)
    assert saved.recipe_table == {"ptacl": {"lr": 2.0}}  # the study's own table, not today's ARM_RECIPES
    assert (saved.train_config("ptacl", 0).lr, saved.train_config("ptacl", 0).epochs) == (pytest.approx(4e-3), 8)
    check_resumable_study(saved)  # resuming with its own settings, or with more seeds, is fine
    check_resumable_study(dataclasses.replace(saved, seeds=9, jobs=2))
    with pytest.raises(ValueError, match=r"'ptacl' runs trained with other \['epochs', 'lr'\]"):
        check_resumable_study(config)
    with pytest.raises(ValueError, match="a recipe may scale"):
        dataclasses.replace(config, recipe_table={"ptacl": {"temperature": 2.0}}).train_config("ptacl", 0)
    # runs built by an earlier library version (another preset model) are refused before any training
    from ptacl_lib.data import PreprocessConfig
    from ptacl_lib.models import ModelConfig
    from ptacl_lib.runs import config_record, write_config

    save_study_config(config)
    check_resumable_study(config)
    seed1 = config.train_config("supervised", 1)
    write_config(seed1.run_dir, config_record(seed1, ModelConfig(ecg_stem=0), PreprocessConfig(), 1))
    with pytest.raises(ValueError, match=r"'supervised' runs trained with other \['ecg_stem'\]"):
        check_resumable_study(config)


@pytest.mark.slow
def test_own_ukb_data_prepare_then_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's path, as a user runs it from a project folder of their own (not the repository), with
    relative paths: prepare-ukb, then ptacl study, on a UKB-shaped cohort; the notebooks find the study."""
    from ptacl_lib.data.readers.writers import write_ukb_like_cohort

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_ukb_like_cohort(tmp_path / "src", 60, n_slices=2, n_frames=16, size=48, realistic_ecg=True)
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-ukb", "--ecg-dir", "src/ecg", "--cmr-dir", "src/cmr", "--idp-csv", "src/idp.csv",
                 "--out", "ukb", "--workers", "1", "--geometry", "demo", "--ecg-hz", "500",
                 "--no-progress"]) == 0  # what the demo geometry reads, with the ECG at 500 Hz
    out = tmp_path / "study"
    code = main(["study", "--manifest", "ukb/manifest.csv", "--out", "study", "--arms", "ptacl",
                 "global", "none", "--seeds", "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu"])
    assert code == 0
    report = (out / "report.md").read_text()
    for heading in ("Regression from the frozen ECG embedding", "Paired contrasts", "Calibrated prediction intervals",
                    "What the local loss visibly learns", "Cross-modal retrieval"):
        assert heading in report, heading
    for name in NOTEBOOKS:
        book = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, (name, errors[:1])
    table = pd.read_csv(out / "summary.csv")
    alignment = table[(table["task"] == "alignment") & (table["metric"] == "diagonal_accuracy")]
    assert set(alignment["arm"]) == {"ptacl", "global", "none"}
    assert alignment["mean"].between(0, 1).all()
    assert read_study_config(out).arms == ("ptacl", "global", "none")


@pytest.mark.slow
def test_notebook_02_loads_and_never_retrains(tiny_cohort: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "study"
    config = StudyConfig(manifest=str(tiny_cohort), out=str(out), arms=("ptacl", "none"), seeds=1, epochs=1,
                         batch_size=8, device="cpu", notebooks=False, ceiling=False)
    run_study(config)
    checkpoint = out / "arms" / "ptacl" / "seed0" / "checkpoints" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    # the user's own parameters differ from the study's: train=True must finish with the study's settings
    run_notebook("02_pretraining.ipynb", tmp_path / "nb", manifest=str(tiny_cohort), run_root=str(out), train=True,
                 epochs=7, batch_size=4, device="cpu")
    assert checkpoint.stat().st_mtime_ns == stamp
    assert (out / "figures" / "02_pretraining" / "loss_curves.png").exists()
    trained = json.loads((out / "arms" / "ptacl" / "seed0" / "config.json").read_text())
    assert trained["epochs"] == config.train_config("ptacl", 0).epochs != 7


def test_run_notebooks_keeps_going_and_exits_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import ptacl_lib.notebook_runner as runner

    seen = []

    def fake_execute(name: str, out_dir: Path, progress: bool = False, **parameters: object) -> Path:
        seen.append((name, parameters))
        if name.startswith("02"):
            raise RuntimeError("kernel died")
        return Path(out_dir) / name

    monkeypatch.setattr(runner, "execute_notebook", fake_execute)
    assert main(["run-notebooks", "--out", str(tmp_path), "-p", "run_root=runs/x", "-p", "seed=3"]) == 2
    printed = capsys.readouterr()
    assert [n for n, _ in seen] == runner.list_notebooks()  # every notebook ran, 03 onwards too
    assert all(p == {"run_root": "runs/x", "seed": 3} for _, p in seen)
    assert "FAILED 02_pretraining.ipynb" in printed.out and "kernel died" in printed.out
    assert "1 of" in printed.err
    seen.clear()
    assert main(["run-notebooks", "--out", str(tmp_path), "--jobs", "2", "--only", "01", "02", "03"]) == 2
    assert sorted(n for n, _ in seen) == runner.list_notebooks()[:3]  # side by side: all three ran
    seen.clear()  # notebook 02 training runs that 03 reads at the same time would race: refused, nothing runs
    assert main(["run-notebooks", "--out", str(tmp_path), "--jobs", "2", "-p", "train=true"]) == 2
    assert seen == [] and "--only 02" in capsys.readouterr().err


def test_notebooks_run_side_by_side_with_a_share_of_the_cores(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobs=2`` runs real kernels two at a time: results keep the given order, a failing notebook is
    reported and does not stop the others, each kernel gets ``OMP_NUM_THREADS`` = its share of the cores,
    and the caller's environment is left as it was."""
    import ptacl_lib.notebook_runner as runner
    from ptacl_lib.runtime import available_cpus

    books = tmp_path / "notebooks"
    books.mkdir()
    write = "import os, pathlib\npathlib.Path(out, '{}').write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))"
    sources = {"01_a.ipynb": write.format("a"), "02_b.ipynb": "raise RuntimeError('broken on purpose')",
               "03_c.ipynb": write.format("c")}
    for name, source in sources.items():
        book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3"}})
        book.cells = [nbformat.v4.new_code_cell("out = ''", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(source)]
        nbformat.write(book, books / name)
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", books)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    names = runner.list_notebooks()
    results = runner.execute_notebooks(names, tmp_path / "out", {"out": str(tmp_path)}, jobs=2)
    assert [r.name for r in results] == names and [r.ok for r in results] == [True, False, True]
    assert "broken on purpose" in results[1].error and (tmp_path / "out" / "02_b.ipynb").exists()
    share = str(max(1, available_cpus() // 2))
    assert (tmp_path / "a").read_text() == (tmp_path / "c").read_text() == share
    runner.execute_notebooks(names[:1], tmp_path / "out", {"out": str(tmp_path)}, jobs=2)
    assert (tmp_path / "a").read_text() == "unset"  # one notebook runs alone, in the caller's environment
    assert "OMP_NUM_THREADS" not in os.environ


def test_every_notebook_accepts_the_common_parameters() -> None:
    from ptacl_lib.notebook_runner import NOTEBOOKS_DIR, list_notebooks

    for name in list_notebooks():
        book = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        names = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and
                 not line.lstrip().startswith("#")}
        assert {"manifest", "run_root", "device"} <= names, name
        # only the notebook that may start a study takes the input geometry; the others read it from the runs
        assert ({"geometry", "ecg_hz", "frames", "image_size", "slices"} <= names) == name.startswith("02"), name


@pytest.mark.slow
def test_parallel_training_matches_serial(tiny_cohort: Path, tmp_path: Path) -> None:
    """``jobs=2`` trains in spawned processes; the numbers equal a serial run's (one thread each)."""
    from ptacl_lib.runs import read_metrics
    from ptacl_lib.study import train_arms

    common = dict(manifest=str(tiny_cohort), arms=("global", "supervised"), seeds=1, epochs=1, batch_size=8,
                  device="cpu", threads=1)
    serial = train_arms(StudyConfig(out=str(tmp_path / "serial"), **common))
    parallel = train_arms(StudyConfig(out=str(tmp_path / "parallel"), jobs=2, **common))
    for a, b in zip(serial, parallel):
        pd.testing.assert_frame_equal(read_metrics(a)[0][["loss"]], read_metrics(b)[0][["loss"]], check_exact=True)
    assert os.environ.get("WORLD_SIZE") is None


@pytest.mark.slow
def test_study_under_torchrun_trains_every_run_in_one_process_group(tiny_cohort: Path, tmp_path: Path) -> None:
    """Two gloo ranks: every run trains distributed (one group kept across runs), rank 0 writes the report."""
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "ptacl_lib.cli", "study", "--manifest", str(tiny_cohort), "--out", str(out), "--arms", "global", "ptacl",
           "none", "--seeds", "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-notebooks",
           "--no-ceiling"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("report:") == 1
    for arm in ("global", "ptacl", "none"):
        config = json.loads((out / "arms" / arm / "seed0" / "config.json").read_text())
        assert config["world_size"] == 2
    assert "Paired contrasts" in (out / "report.md").read_text()


def test_report_says_so_when_no_contrast_can_be_tested() -> None:
    from ptacl_lib.report import verdict_lines

    assert verdict_lines(pd.DataFrame()) == [
        "- No contrast to test: the study holds none of the pairs "
        "[('ptacl', 'global'), ('ptacl', 'none'), ('global', 'none'), ('supervised', 'none'), ('ecg_ssl', 'none')]."]


def test_report_names_every_arm_whose_recipe_departs() -> None:
    from ptacl_lib.report import settings_line

    config = StudyConfig(manifest="m.csv", out="x", batch_size=64, lr=2e-3, epochs=8, seeds=5)
    line = settings_line(config)
    assert ("8 epochs, batch 64, lr 0.002, warm-up 1 epoch(s) (per-arm recipes, `study_config.json`: "
            "ECG-only SSL: 8 epochs, batch 64, lr 0.008, warm-up 1; "
            "global-only (CLIP): 16 epochs, batch 64, lr 0.004, warm-up 3; "
            "PTACL: 16 epochs, batch 64, lr 0.008, warm-up 1; "
            "supervised ECG: 12 epochs, batch 32, lr 0.004, warm-up 1)") in line
    assert "random init" not in line
    assert "8 epochs" in line and "seeds 0–4" in line
    assert "supervised" not in settings_line(dataclasses.replace(config, recipes=False))
    assert "supervised" not in settings_line(dataclasses.replace(config, arms=("ptacl", "global")))


@pytest.mark.slow
def test_a_study_says_each_preprocessing_notice_once(tiny_cohort: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str],
                                                     recwarn: pytest.WarningsRecorder) -> None:
    """One broken subject: the study states it once, in plain words, and no run or split repeats it."""
    import shutil

    from ptacl_lib.data.cache import PreprocessingNotice

    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, cohort, ignore=shutil.ignore_patterns("cache"))
    (cohort / "corrupt.npy").write_bytes(b"not a numpy file")
    table = pd.read_csv(cohort / tiny_cohort.name, dtype={"subject_id": str})
    table.loc[0, "ecg_path"] = "corrupt.npy"
    table.to_csv(cohort / tiny_cohort.name, index=False)
    config = StudyConfig(manifest=str(cohort / tiny_cohort.name), out=str(tmp_path / "study"),
                         arms=("ptacl", "none"), seeds=1, epochs=1, batch_size=8, device="cpu", notebooks=False,
                         ceiling=False, jobs=2, threads=1)
    run_study(config)
    out, err = capfd.readouterr()
    assert (out + err).count("preprocessing skipped 1 of 48 subjects") == 1, out + err
    assert "[study] note: preprocessing skipped 1 of 48 subjects" in out
    assert "PreprocessingNotice" not in err and "were skipped in preprocessing" not in out + err  # the workers
    assert not [w for w in recwarn if issubclass(w.category, PreprocessingNotice)]  # this process
