"""Train and evaluate the chest X-ray captioner on the public COVID-19 chest X-ray collection, with baselines.

Usage: python benchmarks/bench_cxr_covid.py ROOT [--run-dir DIR] [--epochs 10] [--seed 0] [--cache-dir DIR]
[--no-meteor]

ROOT is a folder in the ``ieee8023/covid-chestxray-dataset`` layout (``metadata.csv``, ``images/``, optionally
``annotations/annotations.json`` with lung boxes). Runs ``ptacl cxr train --dataset covid-cxr`` with the default
settings (or ``--epochs``), ``ptacl cxr evaluate`` on the test split, then scores three trivial captioners on the
same test studies with the same metrics:

- ``most-common``: the most frequent training caption, for every test image;
- ``nn-pixels``: the caption of the nearest training image by pixels (32 x 32 thumbnails of the decoded, percentile
  normalised image, Euclidean);
- ``nn-encoder``: the caption of the nearest training image by the trained encoder's mean-pooled features (cosine).

Prints the caption-rule counts, one table of NLG metrics, finding F1, CheXpert F1 and the data set's label F1 per
captioner, and the lung-localisation figures of the trained model with their chance level.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ptacl_lib.cxr.covid import caption_rule_counts
from ptacl_lib.cxr.data import ImageStore, report_target
from ptacl_lib.cxr.mentions import observations_present
from ptacl_lib.cxr.metrics import caption_metrics, finding_scores, observation_scores, observation_set_scores
from ptacl_lib.cxr.pipeline import CXRRunConfig, _samples, _split_samples, evaluate_run, read_run_config, train_run
from ptacl_lib.cxr.train import load_captioner

COLUMNS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "finding_f1", "chexpert_micro_f1", "label_micro_f1")


def _scores(generated: list[str], references: list[str], labels: list[tuple[str, ...]], meteor: bool
            ) -> dict[str, float]:
    out = caption_metrics(generated, references, meteor=meteor)
    out.update(finding_scores(generated, references))
    out.update(observation_scores(generated, references))
    out.update(observation_set_scores([observations_present(g) for g in generated], labels, prefix="label"))
    return {k: float(out[k]) for k in COLUMNS}


def _images(store: ImageStore, samples: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([store.load(s) for s in samples]).astype(np.float32) / 255.0)


@torch.no_grad()
def _encoder_features(run_dir: Path, images: torch.Tensor) -> np.ndarray:
    model = load_captioner(run_dir / "best.pt", "cpu").model.eval()
    feats = [model.encoder(images[i: i + 32]).mean(1) for i in range(0, len(images), 32)]
    f = torch.cat(feats).numpy()
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench_cxr_covid"))
    parser.add_argument("--epochs", type=int, default=CXRRunConfig.epochs)
    parser.add_argument("--cache-dir", type=Path, default=None, help="resized-image cache (decode once)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--no-meteor", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("caption rule:", json.dumps(caption_rule_counts(args.root)))
    t0 = time.perf_counter()
    config = CXRRunConfig(dataset="covid-cxr", root=str(args.root), run_dir=str(args.run_dir), epochs=args.epochs,
                          cache_dir=str(args.cache_dir or ""), seed=args.seed)
    train_run(config)
    t_train = time.perf_counter() - t0
    metrics = evaluate_run(args.run_dir, meteor=False if args.no_meteor else None)
    t_eval = time.perf_counter() - t0 - t_train
    config = read_run_config(args.run_dir)
    splits = pd.read_csv(args.run_dir / "splits.csv", dtype=str).fillna("")
    errors = pd.read_csv(args.run_dir / "errors.csv")
    per_study = pd.read_csv(args.run_dir / "per_study.csv", dtype=str).fillna("")
    samples = {s.study_id: s for s in _samples(config, [])}
    train = [s for s in _split_samples(list(samples.values()), splits, "train")
             if s.image_path not in set(errors["file"].map(Path))]
    test = [samples[sid] for sid in per_study["study_id"]]
    print(f"images: {len(samples)} usable, {len(errors)} listed in errors.csv; patients train/val/test "
          f"{[splits.loc[splits.split == k, 'subject_id'].nunique() for k in ('train', 'val', 'test')]}; "
          f"test studies {len(test)}")
    refs = [report_target(s) for s in test]
    labels = [s.labels for s in test]
    train_caps = [report_target(s) for s in train]
    store = ImageStore(config.image_size, config.cache_dir or None)
    train_im, test_im = _images(store, train), _images(store, test)
    thumbs = [torch.nn.functional.adaptive_avg_pool2d(x[:, None], 32).flatten(1).numpy() for x in (train_im, test_im)]
    nn_pix = np.argmin(((thumbs[1][:, None] - thumbs[0][None]) ** 2).sum(-1), axis=1)
    enc_train, enc_test = _encoder_features(args.run_dir, train_im), _encoder_features(args.run_dir, test_im)
    nn_enc = np.argmax(enc_test @ enc_train.T, axis=1)
    common = Counter(train_caps).most_common(1)[0][0]
    meteor = not args.no_meteor and not np.isnan(metrics["METEOR"])
    rows = {"trained (beam 3)": _scores(list(per_study["generated"]), refs, labels, meteor),
            "most-common caption": _scores([common] * len(test), refs, labels, meteor),
            "nn-pixels caption": _scores([train_caps[i] for i in nn_pix], refs, labels, meteor),
            "nn-encoder caption": _scores([train_caps[i] for i in nn_enc], refs, labels, meteor)}
    print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.3f}"))
    lungs = metrics.get("lung_localisation", {})
    print("lung localisation:", json.dumps(lungs, indent=None))
    print(f"most common caption ({Counter(train_caps)[common]} of {len(train_caps)} training images): {common[:200]}")
    print(f"train {t_train:.0f} s, evaluate {t_eval:.0f} s, total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
