"""The prepared GPU check (``benchmarks/gpu_check.sh``): its CPU dry run prints every promised table with
finite numbers, and the numbers agree with one another (GPU-hours from samples/s, ratio from step times)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_HEADER = ["preset", "params (M)", "last.pt with AdamW state (MiB)", "best.pt weights only (MiB)",
                     "run, last + best (MiB)"]
RATIO_HEADER = ["preset", "batch", "global-only step (ms)", "PTACL step (ms)", "PTACL / global"]
MEMORY_HEADER = ["preset", "batch", "peak memory (GiB)", "samples/s"]
THROUGHPUT_HEADER = ["preset", "compile", "batch", "step (ms)", "samples/s", "peak memory (GiB)", "TFLOP/s", "MFU (%)",
                     "GPU-hours per arm"]


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train_step", REPO / "benchmarks" / "bench_train_step.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_tables(text: str) -> dict[tuple[str, ...], list[dict[str, str]]]:
    """Every markdown table in ``text``, keyed by its header, as rows of cells."""
    tables: dict[tuple[str, ...], list[dict[str, str]]] = {}
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            header, rows = tuple(block[0]), [r for r in block[1:] if not set("".join(r)) <= {"-"}]
            tables[header] = [dict(zip(header, row)) for row in rows]
            block = []
    return tables


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_dry_run_settings_and_the_gpu_hours_arithmetic() -> None:
    bench = bench_module()
    args = bench.parse_args(["--dry-run", "--batch-size", "512", "--peak-tflops", "989"])
    assert (args.batch_size, args.repeats, args.sweep) == (2, 2, [1, 2])
    row = bench.throughput_row("base", False, 256, 0.5, int(1e15), 3.0, args)
    assert row["samples_per_s"] == 512 and row["tflops"] == pytest.approx(2000)
    assert row["mfu_pct"] == pytest.approx(100 * 2000 / 989)
    assert row["gpu_hours_per_arm"] == pytest.approx(28_000 * 0.8 * 50 / 512 / 3600)
    assert bench.markdown_table(["a", "b"], [["x", 1234.5]]).splitlines() == ["| a | b |", "|---|---|",
                                                                              "| x | 1,234.5 |"]


@pytest.mark.slow
def test_gpu_check_dry_run_prints_every_promised_number(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--dry-run",
                             "--json", str(tmp_path / "records.json")],
                            check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Dry run" in out and "they measure nothing" in out and "torch.compile (eager) took" in out
    tables = markdown_tables(out)
    assert set(tables) == {tuple(h) for h in (CHECKPOINT_HEADER, RATIO_HEADER, MEMORY_HEADER, THROUGHPUT_HEADER)}
    for header, rows in tables.items():
        for row in rows:
            for column in header:
                if column not in ("preset", "compile"):
                    assert math.isfinite(number(row[column])) and number(row[column]) > 0, (column, row)

    checkpoints = {r["preset"]: r for r in tables[tuple(CHECKPOINT_HEADER)]}
    assert list(checkpoints) == ["small", "base"]
    for r in checkpoints.values():  # AdamW keeps two moments per weight: last.pt is about three weight copies
        assert 2.5 < number(r["last.pt with AdamW state (MiB)"]) / number(r["best.pt weights only (MiB)"]) < 3.5
    assert 100 < number(checkpoints["base"]["params (M)"]) < 130  # the full base preset, even in a dry run

    ratios = tables[tuple(RATIO_HEADER)]
    assert [r["preset"] for r in ratios] == ["small", "base"]
    for r in ratios:
        assert number(r["PTACL / global"]) == pytest.approx(
            number(r["PTACL step (ms)"]) / number(r["global-only step (ms)"]), rel=0.02)
    assert [(r["preset"], r["batch"]) for r in tables[tuple(MEMORY_HEADER)]] == [
        ("small", "1"), ("small", "2"), ("base", "1"), ("base", "2")]

    throughput = tables[tuple(THROUGHPUT_HEADER)]
    assert [(r["preset"], r["compile"]) for r in throughput] == [
        ("small", "off"), ("base", "off"), ("small", "on"), ("base", "on")]
    for r in throughput:
        assert number(r["samples/s"]) == pytest.approx(2000 / number(r["step (ms)"]), rel=0.02)
        assert number(r["GPU-hours per arm"]) == pytest.approx(
            28_000 * 0.8 * 50 / number(r["samples/s"]) / 3600, rel=0.02)

    records = json.loads((tmp_path / "records.json").read_text())
    assert records["dry_run"] is True
    assert [len(records[k]) for k in ("checkpoints", "local_loss", "memory", "throughput")] == [2, 2, 4, 4]
    assert not list(tmp_path.glob("ptacl_ckpt_*")), "the checkpoint sizes' temporary saves are removed"


@pytest.mark.slow
def test_local_negatives_ablation_retrains_only_ptacl_under_each_reading(tiny_cohort: Path, tmp_path: Path) -> None:
    """The ablation copies the baseline study's settings, changes only the negatives, and prints a row per reading."""
    from ptacl_lib.runs import read_config
    from ptacl_lib.study import StudyConfig, run_study

    baseline = tmp_path / "study"
    run_study(StudyConfig(manifest=str(tiny_cohort), out=str(baseline), arms=("ptacl",), seeds=2, epochs=1,
                          batch_size=8, notebooks=False, ceiling=False))
    out = tmp_path / "ablation"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "local_negatives_ablation.py"), "--baseline",
                           str(baseline), "--readings", "cross", "within", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(printed) if line.split()[:1] == ["reading"])
    lines = [line.split() for line in printed[header:]]
    assert [row[0] for row in lines[1:]] == ["within", "cross"]  # the baseline's reading is not retrained
    assert not (out / "within").exists()
    for seed in (0, 1):  # the baseline's own settings (its recipe: 1.5 x 1 epoch -> 2), other negatives
        config = read_config(out / "cross" / "arms" / "ptacl" / f"seed{seed}")
        trained = read_config(baseline / "arms" / "ptacl" / f"seed{seed}")
        assert (config.local_negatives, config.epochs, config.batch_size, config.lr) == (
            "cross", trained.epochs, 8, trained.lr) and trained.local_negatives == "within"
    difference, detectable = float(lines[2][4]), float(lines[2][-2])  # the CI sits between them
    assert math.isfinite(difference) and math.isfinite(detectable) and detectable > 0


@pytest.mark.slow
def test_predict_benchmark_dry_run_times_both_presets_from_files(tmp_path: Path) -> None:
    """``bench_predict.py --dry-run`` writes a bundle per preset and XML files, predicts them with 1 and 2
    reader processes and prints both tables, their numbers consistent with one another."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_predict.py"), "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Dry run" in done.stdout
    tables = markdown_tables(done.stdout)
    throughput = tables[("preset", "geometry", "workers", "ECGs", "of which refused", "wall (s)", "ECGs/s")]
    assert [(r["preset"], r["geometry"], r["workers"], r["ECGs"], r["of which refused"]) for r in throughput] == [
        ("small", "demo", "1", "4", "0"), ("small", "demo", "2", "4", "0"), ("base", "ukb", "1", "2", "0"),
        ("base", "ukb", "2", "2", "0")]
    for r in throughput:
        assert number(r["ECGs/s"]) == pytest.approx(number(r["ECGs"]) / number(r["wall (s)"]), rel=0.01)
    split = next(rows for header, rows in tables.items() if header[:3] == ("preset", "geometry", "read (CPU ms/ECG)"))
    assert [r["preset"] for r in split] == ["small", "base"]
    for r in split:
        cells = {k: number(v) for k, v in r.items() if k not in ("preset", "geometry")}
        assert all(math.isfinite(v) and v > 0 for v in cells.values()), r
        assert cells["of which quality (CPU ms/ECG)"] < cells["prepare (CPU ms/ECG)"]
    assert not list(tmp_path.glob("ptacl_bench_predict_*")), "the bundles and files are removed"


def test_phase_pooling_dry_run_prints_one_row_per_variant(tmp_path: Path) -> None:
    """The phase-pooling experiment on tiny generated cohorts: a row per variant (and global-only), the
    empty bins that overlap weighting removes, paired contrasts against the geometry's first variant."""
    out = tmp_path / "pp"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "phase_pooling_ukb.py"), "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {(r["geometry"], r["variant"]): r for r in json.loads((out / "results.json").read_text())}
    assert list(rows) == [("ukb", "beat_nearest_frame@100"), ("ukb", "global-only"), ("ukb", "beat_overlap@50"),
                          ("demo", "beat_nearest_frame@100"), ("demo", "global-only")]
    nearest, overlap = rows["ukb", "beat_nearest_frame@100"], rows["ukb", "beat_overlap@50"]
    assert nearest["empty_bins_pct"] > 5.0 and overlap["empty_bins_pct"] == 0.0
    assert overlap["tokens_per_bin"] >= overlap["effective_tokens_per_bin"] > nearest["tokens_per_bin"]
    assert nearest["tokens_per_bin"] == pytest.approx(nearest["effective_tokens_per_bin"])  # plain means
    assert overlap["token_ms"] == 50.0
    for row in (nearest, overlap):
        assert row["step ms/sample"] > 0 and 0.0 <= row["val_diagonal_accuracy_common"] <= 1.0
        assert math.isfinite(row["test_phase_error_ms"]) and math.isfinite(row["test_mean_r2"])
    # today's rule scores exactly the common phases; the reference has no contrast with itself
    assert nearest["test_phase_error_ms"] == pytest.approx(nearest["test_phase_error_ms_common"])
    assert not isinstance(nearest["Δ test mean R²"], str)
    assert overlap["Δ test phase error ms"].count("[") == 1 and "(±" in overlap["Δ test mean R²"]
    assert len(overlap["Δ val_loss_global by seed"].split(", ")) == 2
    tables = markdown_tables(done.stdout)
    assert len(tables) == 2 and all(len(rows) == 5 for rows in tables.values())
    config = json.loads((out / "ukb" / "beat_overlap@50" / "arms" / "ptacl" / "seed1" / "config.json").read_text())
    assert (config["model_config"]["phase_pooling"], config["model_config"]["ecg_patch_ms"]) == ("beat_overlap", 50.0)
