"""The model card of a bundle (its ``README.md``): what it was trained on, how well it did, what it is for."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _metrics_table(meta: dict[str, Any]) -> str:
    evaluation = meta["evaluation"]
    rows = []
    for phenotype in meta["phenotypes"]:
        name = phenotype["name"]
        interval = evaluation["test_intervals"].get(name, {})
        rows.append({"phenotype": name, "unit": phenotype["unit"], "test R²": evaluation["test_r2"].get(name),
                     "MAE": interval.get("mae"), f"{meta['calibration']['coverage']:.0%} interval: coverage":
                     interval.get("coverage"), "mean width": interval.get("mean_width")})
    return pd.DataFrame(rows).round(3).to_markdown(index=False)


def model_card(meta: dict[str, Any]) -> str:
    """The card's Markdown, with the Hugging Face front matter, from a bundle's ``bundle.json`` content."""
    training = meta["training"]
    prep = meta["preprocessing"]
    geometry = prep["geometry"]
    synthetic = training["kind"] == "synthetic"
    splits = training["splits"]
    warning = ("**A demonstration, not a clinical model.** It was trained and tested on the library's synthetic "
               "cohort (generator version {v}), a model of physiology, not on patients. Its numbers say the "
               "software works, not that an ECG predicts these phenotypes in people; and its `ood` flag, a distance "
               "in its own embedding, does not single out a real patient's ECG from the synthetic ones.\n\n"
               .format(v=training.get("generator_version")) if synthetic else "")
    library = meta["library"]
    return f"""---
library_name: ptacl_lib
tags: [ecg, cardiac-mri, contrastive-learning, ptacl, regression]
license: other
---

# PTACL: the 12-lead ECG to cardiac-MRI phenotypes (arm `{meta['arm']}`, {len(meta['seeds'])} seeds)

{warning}Exported {meta['created']} by ptacl_lib {library['version']} (commit {library['commit']}, torch
{library['torch']}).

## What it does
From a resting 12-lead ECG it predicts the nine CMR phenotypes below, each as the mean of {len(meta['seeds'])} seeds'
ridge probes on the ECG embedding, with a calibrated {meta['calibration']['coverage']:.0%} interval
(split-conformal, method `{meta['calibration']['method']}`, calibrated on {meta['calibration']['calibration_set']}),
the seeds' spread, and, where the bundle carries its reference set ({(meta.get('reference') or {}).get('n', 0)}
training subjects), the most similar training patients and an out-of-distribution flag.

## Training cohort
{training['kind']} cohort of {training['n_subjects']} subjects ({splits['train']} train, {splits['val']} validation,
{splits['test']} test), from {training['source']}; sites: {training['sites']}. Test numbers below come from
{training['test_set'] or 'the test split'}.

## Measured on the test set
{_metrics_table(meta)}

## Inputs
- 12 leads in the order {', '.join(prep['leads'])}, in {prep['units']}; files: CardioSoft XML, DICOM ECG, WFDB,
  or `.npy` with its rate and units given.
- Any rate at or above {geometry['ecg_hz']} Hz; resampled to {prep['stored_ecg_hz']} Hz and read in windows of
  {prep['n_samples'] / prep['stored_ecg_hz']:g} s (a longer recording: several windows, one answer).
- Band {prep['filters']['highpass_hz']}-{prep['filters']['lowpass_hz']} Hz, mains {prep['filters']['mains_hz']:g} Hz
  notched where the band reaches it, resampled to {geometry['ecg_hz']} Hz; each lead divided by its training scale.
- Amplitudes that look like µV or V, missing leads, a rate below the model's, a recording shorter than one window
  or with no usable lead are refused with a reason, never predicted.

## Intended use and limits
- For research: comparing ECG representations, ranking patients by a predicted phenotype, finding patients with
  similar hearts, planning which patients to image. Not for diagnosis or any decision about a patient.
- Intervals hold for ECGs like the training cohort's; an ECG flagged `ood` lies outside it and its interval is
  not to be trusted. Coverage is per phenotype and on average, not for each patient.
- Population, devices and sites other than the training cohort's may shift every number above.

## Use
```bash
ptacl predict --model THIS_FOLDER --ecg-dir my_ecgs/ --out predictions.csv
```
```python
from ptacl_lib.inference import Predictor
table = Predictor.from_bundle("THIS_FOLDER").predict(["ecg.xml"])
```
Files, with their SHA-256 in `bundle.json`: per-seed encoders (`*.safetensors`), probes, the reference set, this card.
"""
