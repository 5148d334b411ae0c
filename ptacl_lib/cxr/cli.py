"""The ``ptacl cxr`` subcommand: train / evaluate / caption / report for chest X-ray report generation."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# = data.DATASETS, kept here so --help is light
_DATASETS = ("openi", "openi-kaggle", "mimic-cxr", "covid-cxr", "phantoms", "coco", "karpathy")


def _cmd_train(args: argparse.Namespace) -> None:
    from .pipeline import CXRRunConfig, train_run

    if args.dataset != "phantoms" and not args.root:
        raise ValueError(f"--root is required for --dataset {args.dataset}")
    config = CXRRunConfig(
        dataset=args.dataset, root=str(args.root or ""), run_dir=str(args.run_dir), epochs=args.epochs,
        image_size=args.image_size, encoder=args.encoder, encoder_weights=args.encoder_weights,
        batch_size=args.batch_size, lr=args.lr, max_len=args.max_len, min_word_count=args.min_word_count,
        target=args.target, frontal_only=args.frontal_only, split_fractions=tuple(args.fractions),
        splits_csv=str(args.splits_csv or ""), seed=args.seed,
        workers=args.workers, cache_dir=str(args.cache_dir or ""), n_phantoms=args.n_phantoms, device=args.device,
        train_captions=args.train_captions, karpathy_json=str(args.json or ""),
        coco_test_captions=str(args.test_json or ""))
    print(f"run directory: {train_run(config, resume=args.resume)}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .pipeline import evaluate_run

    evaluate_run(args.run_dir, args.split, args.beam, meteor=False if args.no_meteor else None, workers=args.workers)
    print(f"metrics.json and per_study.csv written to {args.run_dir}")


def _caption_record(path: Path, decoded: Any, heatmap_dir: Path | None, image_size: int, pathology: bool
                    ) -> dict[str, Any]:
    """The JSON line of one captioned image; ``pathology``: with its CheXpert observations and their heatmaps."""
    from .mentions import CHEXPERT, chexpert_labels

    record: dict[str, Any] = {"image": str(path), "caption": decoded.text}
    if pathology:
        record["observations"] = {CHEXPERT[k]: v for k, v in chexpert_labels(decoded.text).items()
                                  if not math.isnan(v)}
    if heatmap_dir is not None:
        record["heatmaps"] = _save_heatmaps(path, decoded, heatmap_dir, image_size, pathology)
    return record


def _save_heatmaps(path: Path, decoded: Any, out: Path, image_size: int, pathology: bool) -> list[str]:
    """``<name>_words.png``: the attention behind each generated word; with ``pathology`` also one PNG per asserted
    observation: the image with the attention of the words naming it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import ImageStore
    from .heatmaps import pathology_heatmaps
    from .plots import overlay_heatmap, show_word_attention

    image = ImageStore(image_size).load_file(path)
    out.mkdir(parents=True, exist_ok=True)
    stem = path.name.split(".")[0]
    figures = [(f"{stem}_words.png", show_word_attention(image, decoded))]
    for name, heat in (pathology_heatmaps(decoded, image.shape) if pathology else {}).items():
        fig, ax = plt.subplots(figsize=(4, 4))
        overlay_heatmap(ax, image, heat)
        ax.set_title(name)
        figures.append((f"{stem}_{name}.png", fig))
    for name, fig in figures:
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return [str(out / name) for name, _ in figures]


def _cmd_caption(args: argparse.Namespace) -> None:
    from .data import CAPTION_DATASETS
    from .pipeline import caption_files, read_run_config

    config = read_run_config(args.run_dir)
    pathology = config.dataset not in CAPTION_DATASETS
    for path, decoded in caption_files(args.run_dir, args.images, args.beam):
        print(json.dumps(_caption_record(path, decoded, args.heatmaps, config.image_size, pathology)))


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import compose_report

    if (args.caption is None) == (args.image is None):
        raise ValueError("give either --caption TEXT or --image FILE (with --run-dir)")
    caption = args.caption
    if args.image is not None:
        if args.run_dir is None:
            raise ValueError("--image needs --run-dir (the trained captioner)")
        from .pipeline import caption_files

        caption = caption_files(args.run_dir, [args.image], args.beam)[0][1].text
    patient: dict[str, Any] = {}
    if args.patient is not None:
        if not args.patient.exists():
            raise FileNotFoundError(f"patient JSON not found: {args.patient}")
        try:
            patient = json.loads(args.patient.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{args.patient}: not valid JSON ({err})") from err
    report = compose_report(caption, patient, backend=args.backend)
    if report.fell_back:
        print(f"note: the {report.requested_backend} draft failed the post-check ({'; '.join(report.problems)}); "
              "the template report is shown", file=sys.stderr)
    if args.out is not None:
        args.out.write_text(report.text + "\n")
    print(report.text)


def add_cxr_parser(subparsers: Any) -> None:
    """Add ``cxr {train,evaluate,caption,report}`` to the ``ptacl`` subcommands."""
    cxr = subparsers.add_parser("cxr", help="chest X-ray report generation: train, evaluate, caption, report")
    sub = cxr.add_subparsers(dest="cxr_command", required=True)

    p = sub.add_parser("train", help="train the Show-Attend-Tell captioner on Open-I / MIMIC-CXR / COVID-CXR /"
                                             " phantoms / MS-COCO / Karpathy's splits")
    p.add_argument("--dataset", choices=_DATASETS, required=True)
    p.add_argument("--root", type=Path, default=None, help="the data set's folder (phantoms: where PNGs go)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=128, help="square input side in pixels (backbones: 224)")
    p.add_argument("--encoder", default="cnn",
                   choices=("cnn", "resnet18", "resnet34", "resnet50", "densenet121", "xrv-densenet121"))
    p.add_argument("--encoder-weights", default="imagenet",
                   help="backbones: 'imagenet' (torchvision file in the torch hub cache), 'none' or a file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-len", type=int, default=60, help="tokens per report, <start>/<end> included")
    p.add_argument("--min-word-count", type=int, default=3, help="rarer training words become <unk>")
    p.add_argument("--target", default="findings", choices=("findings", "findings+impression", "impression"))
    p.add_argument("--frontal-only", action="store_true", help="drop lateral views")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.1, 0.2), metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--splits-csv", type=Path, default=None,
                   help="a given split (study_id, split), e.g. mimic-cxr-2.0.0-split.csv; replaces --fractions and a "
                        "data set's own split")
    p.add_argument("--json", type=Path, default=None,
                   help="karpathy: the split file (dataset_coco.json, ...; default: the one dataset_*.json in --root)")
    p.add_argument("--test-json", type=Path, default=None,
                   help="coco: a captions file whose images are the test split (default: val split in two by id)")
    p.add_argument("--train-captions", default="sample", choices=("sample", "all"),
                   help="images with several captions (coco, karpathy): one drawn per epoch, or every one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    p.add_argument("--cache-dir", type=Path, default=None, help="resized-image cache folder")
    p.add_argument("--n-phantoms", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt (stored config and splits)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="BLEU-1..4, METEOR, ROUGE-L, CIDEr-D against every reference, and finding "
                                        "F1 where the data set has findings, per study")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="image-decoding worker processes")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java and starts slowly)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("caption", help="caption image files with a trained run (JSON lines)")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--heatmaps", type=Path, default=None,
                   help="folder for the per-word attention PNG and one heatmap PNG per finding")
    p.set_defaults(func=_cmd_caption)

    p = sub.add_parser("report", help="caption (given, or generated from --image) + patient JSON -> report")
    p.add_argument("--caption", default=None, help="a findings caption")
    p.add_argument("--image", type=Path, default=None, help="an image to caption with --run-dir")
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--patient", type=Path, default=None, help="JSON with age, sex, view, indication, comparison")
    p.add_argument("--backend", default="template", choices=("template", "local-llm"))
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.set_defaults(func=_cmd_report)
