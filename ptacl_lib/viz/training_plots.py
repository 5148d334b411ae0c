"""Figures of pretraining: how ECG time becomes cardiac phase, loss curves, and throughput."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data import PTACLDataset, collate
from ..models import ModelConfig, PTACLModel, token_phase_bins
from ..runs import read_metrics
from .colours import arm_colours

LOSS_PANELS: dict[str, str] = {"loss_global": "global InfoNCE", "loss_local": "local phase contrast",
                               "loss": "baselines' own losses"}
#: The arms whose total ``loss`` is their own objective (the contrastive arms' total is the sum of the two terms).
OWN_LOSS_ARMS: tuple[str, ...] = ("ecg_ssl", "supervised")


def model_parameter_table(model_config: ModelConfig) -> pd.DataFrame:
    """Parameters per part of the model (both encoders and heads), with each part's share."""
    counts = {name: sum(p.numel() for p in part.parameters())
              for name, part in PTACLModel(model_config).named_children()}
    table = pd.Series(counts, name="parameters").to_frame()
    return table.assign(share=(table["parameters"] / table["parameters"].sum()).round(3))


def plot_phase_pooling(dataset: PTACLDataset, model_config: ModelConfig, n_subjects: int = 256) -> Figure:
    """One subject's lead II coloured by each token's nearest phase bin (R peaks dotted), and how often each
    bin receives at least one token over ``n_subjects`` subjects under the model's own pooling rule."""
    batch = collate([dataset[i] for i in range(min(len(dataset), n_subjects))])
    n_frames = batch["cmr"].shape[-3]
    model = PTACLModel(model_config)
    encoder = model.ecg_encoder
    times = encoder.token_times(batch["ecg"].shape[-1] // encoder.patch)
    bins, inside = token_phase_bins(times, batch["rpeaks"], n_frames)
    phase_mask = model.phase_pool.weights(times, batch["rpeaks"], n_frames).sum(dim=1) > 0

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [2.2, 1]})
    lead_ii = batch["ecg"][0, 1].numpy()
    ax0.plot(lead_ii, color="0.6", lw=0.8)
    points = ax0.scatter(times[inside[0]], lead_ii[times[inside[0]].long()], c=bins[0][inside[0]], cmap="twilight",
                         s=14)
    for r in batch["rpeaks"][0][batch["rpeaks"][0] >= 0]:
        ax0.axvline(int(r), color="crimson", lw=0.7, ls=":")
    ax0.set(title=f"{batch['subject_id'][0]}: tokens coloured by phase bin (dotted: R peaks)",
            xlabel=f"sample at {dataset.config.geometry.ecg_hz} Hz", ylabel="lead II (normalised)")
    fig.colorbar(points, ax=ax0, label="phase bin")
    ax1.bar(range(n_frames), phase_mask.float().mean(0).numpy(), color="steelblue")
    ax1.set(title=f"bins with >= 1 token ({model_config.phase_pooling})", xlabel="phase bin (= cine frame)",
            ylabel="fraction of subjects", ylim=(0, 1.05))
    fig.tight_layout()
    return fig


def training_metrics(runs: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Steps and epochs tables of every run that trained (the untrained ``none`` arm has none)."""
    tables = [read_metrics(r) for r in runs]
    tables = [t for t in tables if len(t[1])]
    if not tables:
        return pd.DataFrame(), pd.DataFrame()
    steps, epochs = (pd.concat(parts, ignore_index=True) for parts in zip(*tables))
    return steps, epochs


def plot_loss_curves(epochs: pd.DataFrame) -> Figure:
    """Training (solid) and validation (dashed) loss per epoch: global and local terms, and the baselines'
    own losses; bands span the seeds."""
    curves = pd.concat([
        epochs[["objective", "seed", "epoch"]].assign(split=split, part=part, value=epochs[prefix + part])
        for split, prefix in (("train", ""), ("val", "val_")) for part in LOSS_PANELS
    ]).dropna(subset=["value"])
    several_seeds = epochs["seed"].nunique() > 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (part, title) in zip(axes, LOSS_PANELS.items()):
        data = curves[curves["part"] == part]
        if part == "loss":
            data = data[data["objective"].isin(OWN_LOSS_ARMS)]
        if len(data):
            sns.lineplot(data=data, x="epoch", y="value", hue="objective", style="split",
                         palette=arm_colours(data["objective"].unique()),
                         errorbar=("pi", 100) if several_seeds else None, ax=ax)
        ax.set(title=title, ylabel="loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def plot_step_losses(steps: pd.DataFrame) -> Figure:
    """Per-step training loss of the global and local terms (x: optimisation step)."""
    parts = steps.melt(id_vars=["objective", "seed", "step"], value_vars=["loss_global", "loss_local"],
                       var_name="part", value_name="value").dropna()
    grid = sns.relplot(data=parts, x="step", y="value", hue="objective", col="part", kind="line",
                       palette=arm_colours(parts["objective"].unique()),
                       errorbar=None, height=3.2, aspect=1.6, facet_kws={"sharey": False})
    return grid.figure


def convergence_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per arm and validation loss term (mean over seeds): the last epoch ``n``'s value and its change over each
    of epochs n−2, n−1 and n; changes shrinking towards zero say the curve has flattened."""
    rows = []
    for part in LOSS_PANELS:
        column = "val_" + part
        if column not in epochs:
            continue
        for objective, runs in epochs.dropna(subset=[column]).groupby("objective"):
            if part == "loss" and objective not in OWN_LOSS_ARMS:
                continue
            curve = runs.groupby("epoch")[column].mean()
            changes = curve.diff().iloc[-3:]
            names = ("change over n−2", "change over n−1", "change over n")[3 - len(changes):]
            rows.append({"objective": objective, "val loss": LOSS_PANELS[part], "epochs n": int(curve.index[-1]),
                         "value at n": round(float(curve.iloc[-1]), 3),
                         **{name: round(float(d), 3) for name, d in zip(names, changes) if pd.notna(d)}})
    table = pd.DataFrame(rows)
    return table.set_index(["objective", "val loss"]) if len(table) else table


def throughput_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per arm: epochs run, median training samples/s, and wall seconds summed over seeds."""
    return epochs.groupby("objective").agg(epochs=("epoch", "max"), samples_per_s=("samples_per_s", "median"),
                                           seconds=("seconds", "sum")).round(1)
