"""The training loop: it learns, resumes exactly, runs every objective, and 2 gloo processes equal 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import torch
from crafted_pickles import write_payload

import ptacl_lib.train as train_module
from conftest import REPO, run_notebook
from ptacl_lib.cli import main
from ptacl_lib.losses import ptacl_loss
from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runs import load_run, read_metrics, run_model_config
from ptacl_lib.runtime import UnsafeCheckpointError, load_checkpoint, seed_everything
from ptacl_lib.train import EPOCH_COLUMNS, STEP_COLUMNS, ContrastiveObjective, MaskedECGObjective, TrainConfig, fit

LOSS_COLUMNS = ["loss", "loss_global", "loss_local"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Batches of 8 gain nothing from intra-op threads, and spinning threads crawl on a busy CI box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(manifest: Path, run_dir: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = dict(manifest=str(manifest), run_dir=str(run_dir), epochs=2, batch_size=8,
                                       lr=3e-3, warmup_epochs=0.5, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.slow
def test_tiny_ptacl_run_lowers_its_loss(tiny_cohort: Path, tmp_path: Path) -> None:
    run = fit(tiny_config(tiny_cohort, tmp_path / "ptacl", epochs=6))
    steps, epochs = read_metrics(run)
    assert list(epochs.columns[:len(EPOCH_COLUMNS)]) == list(EPOCH_COLUMNS)
    assert list(steps.columns[:len(STEP_COLUMNS)]) == list(STEP_COLUMNS)
    assert len(epochs) == 6 and steps["step"].tolist() == list(range(1, len(steps) + 1))
    assert epochs["loss"].iloc[-1] < epochs["loss"].iloc[0] - 0.2
    assert epochs["loss_local"].iloc[-1] < epochs["loss_local"].iloc[0]
    assert (steps["loss"] - steps["loss_global"] - steps["loss_local"]).abs().max() < 1e-4  # lambda_local = 1
    assert epochs["val_loss"].notna().all()
    lr = steps["lr"].to_numpy()
    assert lr.argmax() > 0 and lr[-1] < 0.05 * lr.max()  # warm-up, then cosine decay
    # default checkpoint policy: last + best (by validation loss), no per-epoch copies
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == int(epochs["val_loss"].idxmin()) + 1 and "optimizer" not in best
    assert best["best_val"] == pytest.approx(epochs["val_loss"].min())


def _interrupted_in_epoch_two(config: TrainConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run ``config`` but kill it in epoch 2, after its steps ran and were logged, before its checkpoint."""
    calls = {"n": 0}
    real_evaluate = train_module.evaluate_loss

    def killed_in_epoch_two(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "evaluate_loss", killed_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            fit(config)
    run = Path(config.run_dir)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    return run


@pytest.mark.slow
def test_resume_continues_with_identical_numbers(tiny_cohort: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    straight = fit(tiny_config(tiny_cohort, tmp_path / "straight"))
    interrupted = _interrupted_in_epoch_two(tiny_config(tiny_cohort, tmp_path / "interrupted"), monkeypatch)
    fit(tiny_config(tiny_cohort, interrupted, resume=True))
    for a, b in zip(read_metrics(straight), read_metrics(interrupted)):
        assert len(a) == len(b)
        pd.testing.assert_frame_equal(a[LOSS_COLUMNS + ["lr"]], b[LOSS_COLUMNS + ["lr"]], check_exact=True)
    state_a = load_checkpoint(straight / "checkpoints" / "last.pt")
    state_b = load_checkpoint(interrupted / "checkpoints" / "last.pt")
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])
    assert state_b["epoch"] == 2 and state_b["step"] == state_a["step"]
    # a finished run resumes as a no-op; a changed recipe is refused; a fresh start never overwrites
    fit(tiny_config(tiny_cohort, interrupted, resume=True))
    assert len(read_metrics(interrupted)[1]) == 2
    with pytest.raises(ValueError, match="lr"):
        fit(tiny_config(tiny_cohort, interrupted, resume=True, lr=1.0))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(tiny_config(tiny_cohort, straight))


@pytest.mark.slow
def test_keep_every_keeps_weight_only_epochs(tiny_cohort: Path, tmp_path: Path) -> None:
    run = fit(tiny_config(tiny_cohort, tmp_path / "run", objective="supervised", epochs=4, keep_every=2))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert [n for n in names if n.startswith("epoch_")] == ["epoch_002.pt", "epoch_004.pt"]
    kept, last = (load_checkpoint(run / "checkpoints" / n) for n in ("epoch_004.pt", "last.pt"))
    assert "optimizer" not in kept and "optimizer" in last
    assert all(torch.equal(kept["model"][k], last["model"][k]) for k in last["model"])


@pytest.mark.slow
def test_accumulation_matches_one_large_batch(tiny_cohort: Path, tmp_path: Path) -> None:
    """2 x 8 accumulated = 1 x 16 for a per-sample loss (supervised): same losses, same weights."""
    common = dict(objective="supervised", epochs=2, lr=3e-3, warmup_epochs=1.0)
    big = fit(tiny_config(tiny_cohort, tmp_path / "big", batch_size=16, **common))
    acc = fit(tiny_config(tiny_cohort, tmp_path / "acc", batch_size=8, accumulate=2, **common))
    steps_big, steps_acc = read_metrics(big)[0], read_metrics(acc)[0]
    assert len(steps_big) == len(steps_acc) >= 2
    assert (steps_big["loss"] - steps_acc["loss"]).abs().max() < 1e-4
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (big, acc))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


@pytest.mark.slow
def test_compile_gives_the_same_losses_and_resumes_exactly(tiny_cohort: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    common = dict(objective="supervised", epochs=2)
    eager = fit(tiny_config(tiny_cohort, tmp_path / "eager", **common))
    compiled = fit(tiny_config(tiny_cohort, tmp_path / "compiled", compile=True, **common))
    a, b = read_metrics(eager)[0], read_metrics(compiled)[0]
    assert len(a) == len(b) and (a["loss"] - b["loss"]).abs().max() < 1e-4
    resumed = _interrupted_in_epoch_two(tiny_config(tiny_cohort, tmp_path / "resumed", compile=True, **common),
                                        monkeypatch)
    fit(tiny_config(tiny_cohort, resumed, compile=True, resume=True, **common))
    pd.testing.assert_frame_equal(read_metrics(compiled)[0][LOSS_COLUMNS + ["lr"]],
                                  read_metrics(resumed)[0][LOSS_COLUMNS + ["lr"]], check_exact=True)


def test_training_goes_through_ptacl_loss(tiny_cohort: Path) -> None:
    """The objective's numbers are ``losses.ptacl_loss`` on the model's outputs, for every negatives reading."""
    from ptacl_lib.data import PTACLDataset, collate, open_cohort

    batch = collate([PTACLDataset(open_cohort(tiny_cohort), "train", progress=False)[i] for i in range(6)])
    seed_everything(0)
    model = PTACLModel(ModelConfig()).eval()
    out = model(batch)
    for negatives in ("within", "cross", "both"):
        objective = ContrastiveObjective(model, with_local=True, temperature_local=0.2, lambda_local=0.5,
                                         local_negatives=negatives)
        got = objective(batch)
        want = ptacl_loss(out["ecg_global"], out["cmr_global"], out["ecg_phase"], out["cmr_frames"],
                          out["phase_mask"], temperature_local=0.2, lambda_local=0.5, local_negatives=negatives)
        assert torch.allclose(got["loss"], want.total) and torch.allclose(got["loss_local"], want.local)
    global_only = ContrastiveObjective(model, with_local=False)(batch)
    assert torch.allclose(global_only["loss"], want.global_) and torch.isnan(global_only["loss_local"])


def test_masked_ecg_objective_matches_a_cell_by_cell_reference() -> None:
    """Spatio-temporal masking: exact count per recording, masked cells zeroed, MSE over those cells only."""
    seed_everything(0)
    model = PTACLModel(ModelConfig()).eval()
    objective = MaskedECGObjective(model, mask_ratio=0.3)
    ecg = torch.randn(3, 12, 1003)  # 3 samples past the last whole patch are dropped
    enc, n = model.ecg_encoder, 1003 // model.ecg_encoder.patch
    cells = objective.cell_mask(3, n, torch.Generator().manual_seed(7))
    assert cells.shape == (3, n, 12) and (cells.sum(dim=(1, 2)) == round(0.3 * n * 12)).all()
    masked_input = ecg[..., : n * enc.patch].clone()
    for b, t, lead in cells.nonzero().tolist():  # a plain loop: zero every masked (lead, patch) cell
        masked_input[b, lead, t * enc.patch:(t + 1) * enc.patch] = 0.0
    recon = objective.decoder(model.ecg_head(enc(masked_input).tokens))
    errors = []
    for b, t, lead in cells.nonzero().tolist():
        predicted = recon[b, t, lead * enc.patch:(lead + 1) * enc.patch]
        errors.append((predicted - ecg[b, lead, t * enc.patch:(t + 1) * enc.patch]) ** 2)
    got = objective({"ecg": ecg}, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(got["loss"], torch.cat(errors).mean(), atol=1e-6)
    assert torch.isnan(got["loss_global"]) and torch.isnan(got["loss_local"])


def test_init_from_starts_at_another_runs_weights(tiny_cohort: Path, tmp_path: Path) -> None:
    source = fit(tiny_config(tiny_cohort, tmp_path / "source", objective="global", epochs=1))
    tuned = fit(tiny_config(tiny_cohort, tmp_path / "tuned", objective="supervised", epochs=0, init_from=str(source)))
    a, b = load_run(source)[0].state_dict(), load_run(tuned)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"another model than the 'base' preset \(it differs in \['ecg_dim'"):
        fit(tiny_config(tiny_cohort, tmp_path / "bad", objective="supervised", epochs=0, model="base",
                        geometry="demo", init_from=str(source)))


def test_init_from_a_run_whose_checkpoint_would_run_code_is_one_clear_line(
        tiny_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--manifest", str(tiny_cohort), "--objective", "none", "--epochs", "0", "--no-progress"]
    source = tmp_path / "source"
    assert main(["train", "--run-dir", str(source), *common]) == 0
    marker = tmp_path / "pwned"
    last = write_payload(source / "checkpoints" / "last.pt", marker)
    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "tuned"), "--init-from", str(source), *common]) == 2
    assert capsys.readouterr().err.strip() == (f"ptacl train: error: {last} holds objects other than weights (such "
                                               "as posix.system); it was not loaded, because unpickling them could "
                                               "run code")
    with pytest.raises(UnsafeCheckpointError, match="holds objects other than weights"):
        load_run(source)
    assert not marker.exists()


@pytest.mark.parametrize("objective", ["global", "ecg_ssl", "supervised", "none"])
def test_every_objective_trains_and_loads(objective: str, tiny_cohort: Path, tmp_path: Path) -> None:
    run = fit(tiny_config(tiny_cohort, tmp_path / objective, objective=objective, epochs=1))
    model, config = load_run(run)
    assert config.objective == objective and not model.training
    assert model.embed_ecg(torch.randn(2, 12, 1000)).shape == (2, ModelConfig().embed_dim)
    steps, epochs = read_metrics(run)
    if objective == "none":  # the initial weights of this seed, untouched
        assert len(steps) == len(epochs) == 0
        seed_everything(config.seed)
        fresh = PTACLModel(ModelConfig.preset(config.model))
        assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
        return
    assert len(epochs) == 1 and steps["loss"].notna().all()
    assert steps["loss_local"].isna().all()  # only the ptacl objective trains the local term
    assert steps["loss_global"].notna().all() == (objective == "global")
    if objective == "global":  # validation still monitors the (untrained) local term
        assert epochs["val_loss_local"].notna().all()


def test_config_is_validated() -> None:
    paths = {"manifest": "m.csv", "run_dir": "run"}
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="clip", **paths)
    with pytest.raises(ValueError, match="local_negatives"):
        TrainConfig(local_negatives="all", **paths)
    with pytest.raises(ValueError, match="accumulate"):
        TrainConfig(accumulate=0, **paths)
    with pytest.raises(ValueError, match="manifest and a run_dir"):
        TrainConfig(objective="global")  # no demo paths hide behind the defaults


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tiny_cohort: Path, tmp_path: Path) -> None:
    """torchrun, 2 CPU processes x 8 subjects vs 1 process x 16: same samples per step, same numbers."""
    common = ["--manifest", str(tiny_cohort), "--objective", "global", "--epochs", "2", "--lr", "3e-3",
              "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ptacl_lib.cli", "train", "--run-dir", str(tmp_path / "ddp"), "--batch-size", "8", *common]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fit(tiny_config(tiny_cohort, tmp_path / "single", objective="global", batch_size=16, warmup_epochs=1.0))
    ddp_steps, _ = read_metrics(tmp_path / "ddp")
    one_steps, _ = read_metrics(tmp_path / "single")
    assert len(ddp_steps) == len(one_steps) >= 3
    # step 1 checks the gathered loss; later steps check that DDP's gradients equal the 1-process gradient
    assert (ddp_steps["loss_global"] - one_steps["loss_global"]).abs().max() < 1e-5


@pytest.mark.slow
def test_notebook_02_starts_a_study_when_asked(tiny_cohort: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With no study yet, ``train=True`` trains the notebook's own arms and settings, then plots them."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it (see one_thread)
    out = run_notebook("02_pretraining.ipynb", tmp_path / "nb", manifest=str(tiny_cohort), train=True,
                       arms=["ptacl", "global", "none"], seeds=1, epochs=1, batch_size=8, device="cpu",
                       run_root=str(tmp_path / "runs"))
    assert out.exists()
    assert json.loads((tmp_path / "runs" / "study_config.json").read_text())["epochs"] == 1
    for objective in ("ptacl", "global", "none"):
        assert (tmp_path / "runs" / "arms" / objective / "seed0" / "checkpoints" / "last.pt").exists()
    assert (tmp_path / "runs" / "figures" / "02_pretraining" / "loss_curves.png").exists()


def test_load_run_names_a_mismatched_checkpoint(tmp_path: Path) -> None:
    """A checkpoint from other model code is a clear error naming the file, not a raw state_dict dump."""
    run = fit(TrainConfig(manifest="unused", run_dir=str(tmp_path / "run"), objective="none", progress=False))
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=False)
    state["model"] = {k: v for k, v in list(state["model"].items())[1:]}  # one weight missing
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match=r"last.pt does not fit this version's 'small' model"):
        load_run(run)


def test_a_run_of_another_model_version_is_not_resumed(tmp_path: Path) -> None:
    """A run saved by a library whose preset differed (here: before the ECG stem) is refused, and kept intact."""
    run = fit(TrainConfig(manifest="unused", run_dir=str(tmp_path / "run"), objective="none", progress=False))
    record = json.loads((run / "config.json").read_text())
    del record["model_config"]["ecg_stem"]  # as a run written before the stem existed
    del record["model_config"]["cmr_first_stride"]  # and before the frame CNN's 4x4 first stage
    (run / "config.json").write_text(json.dumps(record))
    assert run_model_config(run).ecg_stem == 0 and run_model_config(run).cmr_first_stride == 2
    with pytest.raises(ValueError, match=r"another 'small' model \(it differs in \['ecg_stem', 'cmr_first_stride'\]"):
        fit(TrainConfig(manifest="unused", run_dir=str(run), objective="none", progress=False, resume=True))
    assert run_model_config(run).ecg_stem == 0  # its config was not overwritten

