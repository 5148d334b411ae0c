"""Which leads and moments of an ECG drive one predicted phenotype: integrated gradients of the seed ensemble.

The function explained is the bundle's own prediction of one phenotype from one model input window
(``PreparedEcg.windows[w]``, ``[12, L]``, band-passed, resampled and scaled): the mean over seeds of each seed's
probe row, ``((embedder(x) - x_mean) / x_scale) @ coef[j] + intercept[j]`` (``PhenotypeHead``). Integrated
gradients (Sundararajan et al., ICML 2017; ``captum.attr.IntegratedGradients``) average its gradient along the
straight path from a baseline to the window and multiply by the difference: each sample of each lead gets a
share of ``f(window) - f(baseline)``, in the phenotype's unit, and the shares sum to it up to the integral's
discretisation error (``Attribution.delta``). The baseline is the flat ECG (zeros in the model's scaled input:
the isoelectric line after the band-pass).

What it is: where, on the path from a flat line to this ECG, the ensemble's prediction changes. What it is not:
a physiological cause, a statement about the heart, or the same map for another baseline, window or model;
neighbouring samples share credit arbitrarily (binning them is fairer), and a model that learned little gives
a map of little meaning however clean it looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.schema import PHENOTYPES
from ..evaluate.regression import LinearProbe


class PhenotypeHead(nn.Module):
    """The seed ensemble's prediction of one phenotype, ``[B, 12, L] -> [B]``: the mean over seeds of each seed's
    probe row on its embedder's output (``Predictor.phenotype_table``'s mean, in float32)."""

    def __init__(self, embedders: Sequence[nn.Module], probes: Sequence[LinearProbe], phenotype: str) -> None:
        super().__init__()
        if len(embedders) != len(probes) or not probes:
            raise ValueError(f"{len(embedders)} embedders for {len(probes)} probes")
        j = list(probes[0].targets).index(phenotype)
        self.embedders = nn.ModuleList(embedders)

        def stacked(values: Sequence[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.stack(values), dtype=torch.float32)

        self.register_buffer("x_mean", stacked([p.x_mean for p in probes]))  # [S, E]
        self.register_buffer("x_scale", stacked([p.x_scale for p in probes]))  # [S, E]
        self.register_buffer("coef", stacked([p.coef[j] for p in probes]))  # [S, E]
        self.register_buffer("intercept", stacked([p.intercept[j] for p in probes]))  # [S]

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        each = [((embedder(ecg) - self.x_mean[s]) / self.x_scale[s]) @ self.coef[s] + self.intercept[s]
                for s, embedder in enumerate(self.embedders)]
        return torch.stack(each, dim=1).mean(dim=1)


@dataclass(frozen=True)
class Attribution:
    """Integrated gradients of one phenotype's prediction over one window (module docstring)."""

    phenotype: str
    values: np.ndarray  #: [12, L], the phenotype's unit per input sample
    prediction: float  #: the ensemble's prediction from the window
    baseline_prediction: float  #: its prediction from the flat ECG
    delta: float  #: sum of ``values`` minus (prediction - baseline_prediction): the integral's error
    fs: float  #: the model's ECG rate (samples per second of ``values``)

    def binned(self, bin_s: float) -> np.ndarray:
        """``[12, n_bins]``: the attribution summed over consecutive ``bin_s``-second bins (the last may be
        shorter): how much each lead's moment moved the prediction, in the phenotype's unit."""
        width = max(1, int(round(bin_s * self.fs)))
        edges = np.arange(0, self.values.shape[1], width)
        return np.add.reduceat(self.values, edges, axis=1)

    def share_near(self, times_s: np.ndarray, half_width_s: float) -> tuple[float, float]:
        """``(share of the absolute attribution, share of the time)`` within ``half_width_s`` of ``times_s``
        (e.g. the R peaks): how much more than its length such a stretch weighs."""
        t = np.arange(self.values.shape[1]) / self.fs
        near = (np.abs(t[:, None] - np.asarray(times_s, dtype=float)[None, :]) <= half_width_s).any(axis=1)
        total = float(np.abs(self.values).sum())
        weight = float(np.abs(self.values[:, near]).sum()) / total if total > 0 else 0.0
        return weight, float(near.mean())


def integrated_gradients(predictor: Any, window: np.ndarray, phenotype: str = "lvef", n_steps: int = 128,
                         internal_batch_size: int = 16) -> Attribution:
    """Integrated gradients of ``predictor``'s (``inference.Predictor``) seed-ensemble prediction of ``phenotype``
    over one model input ``window`` ``[12, L]`` (``PreparedEcg.windows[k]``), from the flat ECG, with ``n_steps``
    points on the path (captum's Gauss-Legendre rule), ``internal_batch_size`` at a time."""
    from captum.attr import IntegratedGradients

    if phenotype not in PHENOTYPES:
        raise ValueError(f"unknown phenotype {phenotype!r}; choose from {PHENOTYPES}")
    head = PhenotypeHead(predictor.embedders, predictor.bundle.probes, phenotype).to(predictor.device).eval()
    x = torch.as_tensor(np.asarray(window, dtype=np.float32)[None], device=predictor.device)
    baseline = torch.zeros_like(x)
    values, delta = IntegratedGradients(head).attribute(x, baselines=baseline, n_steps=n_steps,
                                                        internal_batch_size=internal_batch_size,
                                                        return_convergence_delta=True)
    with torch.no_grad():
        ends = head(torch.cat([x, baseline])).cpu().numpy()
    return Attribution(phenotype, values[0].detach().cpu().numpy(), float(ends[0]), float(ends[1]),
                       float(delta.item()), float(predictor.bundle.spec.preprocess.geometry.ecg_hz))
