"""Train and evaluate the captioner on a real data set (or phantoms) from a run directory, as ``ptacl cxr`` does.

``train_run(config)`` writes to ``config.run_dir``: ``config.json``, ``splits.csv`` (``study_id, subject_id,
split``), ``vocab.json``, ``last.pt`` (resume state, every epoch), ``best.pt`` (lowest validation
cross-entropy, loadable with ``load_captioner``), ``history.csv`` (per epoch) and ``errors.csv`` (every
missing, corrupt or truncated image, with the file and the reason; those images are skipped).

``evaluate_run(run_dir)`` decodes one split and writes ``metrics.json``, ``per_study.csv`` and its rows of
``errors.csv``. Where the data set gives finding labels (covid-cxr), ``label_*`` scores compare the generated
report's CheXpert observations with them; where it ships lung boxes (covid-cxr's ``annotations.json``),
``lung_localisation`` holds the heatmaps' attention share inside the lungs against the lungs' area share and a
pointing game (``evaluation.lung_localisation``). What a data set cannot be scored on (pathology for COCO and
Karpathy captions, lung localisation without lung boxes) is named, with the reason, in ``not_scored``.

Protocol (views merged): every readable image of a study is captioned by beam search; the study's generated
report is the caption with the highest mean log-probability per token, and its references are the study's
cleaned report, or every caption of the image where the data set gives several (coco, karpathy). Every metric
is over studies, one candidate each, so a study with a frontal and a lateral image counts once.

Training pairs each image with one reference per epoch: its report, or, with several captions, one drawn
afresh each epoch (``train_captions="sample"``) or every one of them (``"all"``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..atomic import replacing
from ..runtime import autocast, load_checkpoint, resolve_device, save_checkpoint, seed_everything, to_device
from .backbones import load_backbone_weights
from .covid import ANNOTATIONS, read_lung_boxes
from .data import (
    CAPTION_DATASETS,
    CaptionDataset,
    ImageStore,
    collate_captions,
    load_samples,
    report_targets,
    scan_images,
    split_studies,
    splits_from_table,
    splits_of_samples,
    write_errors,
)
from .decode import beam_search
from .evaluation import box_mask, lung_localisation
from .heatmaps import pathology_heatmaps, upsample
from .mentions import CHEXPERT, observations_present
from .metrics import (
    CAPTION_METRICS,
    METEOR_NO_JAVA,
    caption_metrics,
    finding_scores,
    meteor_available,
    observation_scores,
    observation_set_scores,
)
from .model import CaptionerConfig, ShowAttendTell, caption_loss
from .readers import CXRSample
from .train import CaptionTrainConfig, TrainedCaptioner, load_captioner, save_captioner
from .vocab import Vocabulary

PROTOCOL = ("views merged: each readable image of a study is captioned (beam search); the study's candidate is "
            "the caption with the highest mean log-probability per token; the references are the study's cleaned "
            "report, or every caption of the image where the data set gives several; all metrics are over studies "
            "(one candidate each).")
TRAIN_CAPTIONS: tuple[str, ...] = ("sample", "all")


@dataclass(frozen=True)
class CXRRunConfig:
    """Everything ``ptacl cxr train`` needs; saved as ``config.json``."""

    dataset: str
    root: str
    run_dir: str
    epochs: int = 10
    image_size: int = 128
    encoder: str = "cnn"
    encoder_weights: str = "imagenet"  # backbones only: "imagenet" (torch hub cache), "none" or a file
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    alpha_c: float = 0.1
    grad_clip: float = 5.0
    max_len: int = 60  # tokens per report including <start> and <end>
    min_word_count: int = 3  # rarer words become <unk>
    target: str = "findings"  # see data.TARGETS
    frontal_only: bool = False
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    splits_csv: str = ""  # a given split (study_id, split), e.g. MIMIC-CXR's official one; "" = seeded split
    seed: int = 0
    workers: int = 0  # DataLoader worker processes for decoding images
    cache_dir: str = ""  # resized-image cache ("" = decode every time)
    n_phantoms: int = 200  # dataset "phantoms" only
    device: str = "auto"
    train_captions: str = "sample"  # several captions per image: one drawn per epoch ("sample") or every one ("all")
    karpathy_json: str = ""  # dataset "karpathy": the split file ("" = the one dataset_*.json in root)
    coco_test_captions: str = ""  # dataset "coco": a captions file whose images are the test split ("" = hash split)


def read_run_config(run_dir: str | Path) -> CXRRunConfig:
    """The ``config.json`` of a run directory."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"not a cxr run directory (no config.json): {run_dir}")
    values = json.loads(path.read_text())
    values["split_fractions"] = tuple(values["split_fractions"])
    known = {f.name for f in dataclasses.fields(CXRRunConfig)}
    return CXRRunConfig(**{k: v for k, v in values.items() if k in known})


def _samples(config: CXRRunConfig, errors: list[dict[str, str]]) -> list[CXRSample]:
    root = config.root or str(Path(config.run_dir) / "phantom_images")
    return load_samples(config.dataset, root, errors, config.target, config.frontal_only, config.n_phantoms,
                        config.image_size, config.seed, config.karpathy_json or None,
                        config.coco_test_captions or None)


def _store(config: CXRRunConfig) -> ImageStore:
    return ImageStore(config.image_size, config.cache_dir or None)


def _lr(config: CXRRunConfig, epoch: int) -> float:
    """Linear warm-up over the first epoch's worth, then cosine decay; a function of the epoch, so resume is exact."""
    warm = 1.0 if epoch > 0 or config.epochs == 1 else 0.3
    return config.lr * warm * 0.5 * (1 + math.cos(math.pi * epoch / max(config.epochs, 1)))


def _pairs(samples: Sequence[CXRSample], config: CXRRunConfig, epoch: int) -> tuple[list[CXRSample], list[str]]:
    """One epoch's (image, caption) pairs: each image with one of its references, drawn for this epoch (seeded by
    seed and epoch, so resume is exact), or with every reference (``train_captions="all"``)."""
    rng = np.random.default_rng([config.seed, epoch])
    images, captions = [], []
    for sample in samples:
        refs = report_targets(sample, config.target)
        chosen = refs if config.train_captions == "all" else (refs[int(rng.integers(len(refs)))],)
        images += [sample] * len(chosen)
        captions += chosen
    return images, captions


def _loader(samples: Sequence[CXRSample], config: CXRRunConfig, vocab: Vocabulary, shuffle: bool,
            epoch: int = 0) -> DataLoader:
    data = CaptionDataset(*_pairs(samples, config, epoch), vocab, _store(config), config.max_len)
    return DataLoader(data, batch_size=config.batch_size, shuffle=shuffle, num_workers=config.workers,
                      collate_fn=functools.partial(collate_captions, pad=vocab.pad),
                      generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))


def _split_samples(samples: Sequence[CXRSample], splits: pd.DataFrame, name: str) -> list[CXRSample]:
    keep = set(splits.loc[splits["split"] == name, "study_id"].astype(str))
    return [s for s in samples if s.study_id in keep]


def train_run(config: CXRRunConfig, resume: bool = False, log: bool = True) -> Path:
    """Train (or resume) a captioner run; returns the run directory. See the module docstring for its files."""
    run_dir = Path(config.run_dir)
    last = run_dir / "last.pt"
    if resume and last.exists():
        config = dataclasses.replace(read_run_config(run_dir), epochs=config.epochs, workers=config.workers,
                                     device=config.device, run_dir=str(run_dir))
    elif resume:
        raise FileNotFoundError(f"--resume: no last.pt in {run_dir}")
    if config.train_captions not in TRAIN_CAPTIONS:
        raise ValueError(f"train_captions must be one of {TRAIN_CAPTIONS}, got {config.train_captions!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    seed_everything(config.seed)
    errors: list[dict[str, str]] = []
    samples = _samples(config, errors)
    if not samples:
        raise ValueError(f"no usable studies in {config.dataset} at {config.root!r} (see {run_dir / 'errors.csv'})")
    samples, bad = scan_images(samples, _store(config), config.workers, stage="train")
    errors = [{**row, "stage": "train"} for row in errors] + bad
    write_errors(run_dir / "errors.csv", errors)
    if log and errors:
        print(f"{len(errors)} images skipped (missing or unreadable), listed in {run_dir / 'errors.csv'}")
    splits_path, vocab_path = run_dir / "splits.csv", run_dir / "vocab.json"
    if resume:
        splits, vocab = pd.read_csv(splits_path, dtype=str).fillna(""), Vocabulary.load(vocab_path)
    else:
        if config.splits_csv:
            splits = splits_from_table(samples, config.splits_csv)
        elif any(s.split for s in samples):  # the data set's own split (coco, karpathy)
            splits = splits_of_samples(samples)
        else:
            splits = split_studies(samples, config.split_fractions, config.seed)
        splits.to_csv(splits_path, index=False)
        train_text = [t for s in _split_samples(samples, splits, "train") for t in report_targets(s, config.target)]
        vocab = Vocabulary.build(train_text, config.min_word_count)
        vocab.save(vocab_path)
    train_set, val_set = _split_samples(samples, splits, "train"), _split_samples(samples, splits, "val")
    if not train_set:
        raise ValueError(f"the train split is empty ({len(samples)} readable images)")
    device = resolve_device(config.device)
    model_config = CaptionerConfig(vocab_size=len(vocab), image_size=config.image_size, encoder=config.encoder)
    model = ShowAttendTell(model_config)
    if config.encoder != "cnn" and not resume:
        counts = load_backbone_weights(model.encoder.backbone, config.encoder, config.encoder_weights)
        if log and counts["loaded"]:
            print(f"{config.encoder}: {counts['loaded']} pretrained tensors loaded from {config.encoder_weights}")
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    start, best = 0, math.inf
    if resume:
        state = load_checkpoint(last, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best, history = int(state["epoch"]), float(state["best_val"]), list(state["history"])
    train_cfg = CaptionTrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                   weight_decay=config.weight_decay, alpha_c=config.alpha_c,
                                   grad_clip=config.grad_clip, max_len=config.max_len, device=config.device,
                                   seed=config.seed)
    trained = TrainedCaptioner(model, vocab, history)
    for epoch in range(start, config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, epoch)
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 1000 + epoch)  # dropout and shuffle depend on the epoch only
        train = _run_epoch(model, _loader(train_set, config, vocab, True, epoch), config, vocab, device, optimizer)
        val = _run_epoch(model, _loader(val_set, config, vocab, False), config, vocab, device) if val_set else {}
        record = {"epoch": epoch + 1, "lr": _lr(config, epoch), **{f"train_{k}": v for k, v in train.items()},
                  **{f"val_{k}": v for k, v in val.items()}, "seconds": time.perf_counter() - t0}
        history.append(record)
        score = val.get("cross_entropy", train["cross_entropy"])
        if score < best:
            best = score
            save_captioner(run_dir / "best.pt", trained, train_cfg, epoch + 1)
        save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                               "best_val": best, "history": history})
        with replacing(run_dir / "history.csv") as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)
        if log:
            val_text = f", val ce {val['cross_entropy']:.3f}" if val else ""
            print(f"epoch {epoch + 1}/{config.epochs}: train ce {train['cross_entropy']:.3f}{val_text} "
                  f"({record['seconds']:.1f}s)")
    return run_dir


def _run_epoch(model: ShowAttendTell, loader: DataLoader, config: CXRRunConfig, vocab: Vocabulary,
               device: torch.device, optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
    """One pass; trains when ``optimizer`` is given, else scores without gradients. Means per image."""
    model.train(optimizer is not None)
    sums, n, skipped_batches = {"loss": 0.0, "cross_entropy": 0.0, "attention_penalty": 0.0}, 0, 0
    for batch in loader:
        if batch is None:
            skipped_batches += 1
            continue
        batch = to_device(batch, device)
        with torch.set_grad_enabled(optimizer is not None):
            with autocast(device):  # bf16 on CUDA, a no-op on CPU
                logits, alphas = model(batch["images"], batch["captions"])
            loss, parts = caption_loss(logits.float(), alphas.float(), batch["captions"], vocab.pad, config.alpha_c)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        k = len(batch["images"])
        sums["loss"] += float(loss.detach()) * k
        for name, value in parts.items():
            sums[name] += value * k
        n += k
    return {name: value / max(n, 1) for name, value in sums.items()} | {"images": float(n)}


def evaluate_run(run_dir: str | Path, split: str = "test", beam: int = 3, meteor: bool | None = None,
                 workers: int | None = None, log: bool = True) -> dict[str, Any]:
    """Score ``best.pt`` on ``split`` with the views-merged protocol; writes ``metrics.json`` and ``per_study.csv``."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if workers is not None:
        config = dataclasses.replace(config, workers=workers)
    best = run_dir / "best.pt"
    if not best.exists():
        raise FileNotFoundError(f"no best.pt in {run_dir}: train first (ptacl cxr train)")
    trained = load_captioner(best, config.device)
    splits = pd.read_csv(run_dir / "splits.csv", dtype=str).fillna("")
    if split not in set(splits["split"]):
        raise ValueError(f"split {split!r} is empty or unknown; splits.csv has {sorted(set(splits['split']))}")
    read_errors: list[dict[str, str]] = []
    samples = _split_samples(_samples(config, read_errors), splits, split)
    in_split = set(splits.loc[splits["split"] == split, "study_id"])
    errors = [{**row, "stage": f"evaluate-{split}"} for row in read_errors if row["study_id"] in in_split]
    decoded = _decode(trained, samples, config, beam, errors, split)
    _merge_errors(run_dir / "errors.csv", errors, f"evaluate-{split}")
    if log and errors:
        print(f"{len(errors)} {split} images skipped (missing or unreadable), listed in {run_dir / 'errors.csv'}")
    table = _per_study(decoded)
    if table.empty:
        raise ValueError(f"no readable {split} image in {run_dir}")
    tops = [_top(decoded[s]) for s in table["study_id"]]
    generated = list(table["generated"])
    metrics: dict[str, Any] = {"split": split, "beam": beam, "n_studies": len(table),
                               "n_images": int(sum(len(v) for v in decoded.values())), "n_unreadable": len(errors),
                               "n_references": int(table["n_references"].sum())}
    use_meteor = meteor_available() if meteor is None else meteor
    metrics.update(caption_metrics(generated, [t["references"] for t in tops], meteor=use_meteor))
    if math.isnan(metrics["METEOR"]):
        metrics["METEOR_note"] = METEOR_NO_JAVA if meteor is None or not meteor_available() else "skipped on request"
    not_scored = _pathology_scores(metrics, config, generated, tops)
    lungs = _lung_masks(config, [t["image"] for t in tops])
    if lungs is None:
        not_scored["lung_localisation"] = _no_lung_boxes(config)
    else:
        metrics["lung_localisation"] = lung_localisation([t["decoded"] for t in tops], lungs)
    metrics["not_scored"] = not_scored
    metrics["protocol"] = PROTOCOL
    with replacing(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=1))
    table.to_csv(run_dir / "per_study.csv", index=False)
    if log:
        chexpert = f" chexpert-F1 {metrics['chexpert_micro_f1']:.3f}" if "chexpert_micro_f1" in metrics else ""
        print(f"{split} split, beam {beam}, {len(table)} studies: "
              + " ".join(f"{k} {metrics[k]:.3f}" for k in CAPTION_METRICS) + chexpert)
        for name, reason in not_scored.items():
            print(f"not scored: {name}: {reason}")
    return metrics


def _pathology_scores(metrics: dict[str, Any], config: CXRRunConfig, generated: Sequence[str],
                      tops: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Add finding, CheXpert and (where the data set has them) label scores to ``metrics``; return what was not
    scored, with the reason."""
    if config.dataset in CAPTION_DATASETS:
        return {"pathology": f"{config.dataset} captions describe general images, with no pathology to label: "
                             "finding_*, chexpert_* and label_* are not computed"}
    reports = [t["references"][0] for t in tops]
    metrics.update(finding_scores(generated, reports))
    metrics.update(observation_scores(generated, reports))
    if not any(t["labels"] for t in tops):
        return {"labels": f"{config.dataset} gives no finding labels of its own (label_*); chexpert_* compare with "
                          "the rule labeller's reading of the reference reports"}
    metrics.update(observation_set_scores([observations_present(g) for g in generated], [t["labels"] for t in tops],
                                          prefix="label"))
    return {}


def _decode(trained: TrainedCaptioner, samples: Sequence[CXRSample], config: CXRRunConfig, beam: int,
            errors: list[dict[str, str]], split: str) -> dict[str, list[dict[str, Any]]]:
    """``study_id -> [{image, view, generated, mean_logprob, references, ...}]`` for every readable image."""
    store = _store(config)
    readable, bad = scan_images(samples, store, config.workers, stage=f"evaluate-{split}")
    errors += bad
    references = [report_targets(s, config.target) for s in readable]
    data = CaptionDataset(readable, [r[0] for r in references], trained.vocab, store, config.max_len)
    loader = DataLoader(data, batch_size=None, num_workers=config.workers)
    out: dict[str, list[dict[str, Any]]] = {}
    for item in loader:
        if item is None:
            continue
        image, _, i = item
        dec = beam_search(trained.model, trained.vocab, image.numpy(), beam, config.max_len)
        s = readable[int(i)]
        out.setdefault(s.study_id, []).append({
            "image": str(s.image_path), "view": s.view or "", "generated": dec.text,
            "mean_logprob": dec.score / (len(dec.words) + 1), "references": references[int(i)], "decoded": dec,
            "labels": s.labels})
    return out


def _top(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The views-merged protocol's pick: the image whose caption has the highest mean log-probability per token."""
    return max(items, key=lambda r: r["mean_logprob"])


def _no_lung_boxes(config: CXRRunConfig) -> str:
    """Why the run's data set has no lung boxes to score attention against ("" when it has them)."""
    if config.dataset != "covid-cxr":
        return f"{config.dataset} ships no lung boxes (only covid-cxr's {ANNOTATIONS.as_posix()} has them)"
    if not (Path(config.root) / ANNOTATIONS).exists():
        return f"no {ANNOTATIONS.as_posix()} under {config.root}"
    return ""


def _lung_masks(config: CXRRunConfig, images: Sequence[str]) -> list[np.ndarray] | None:
    """Lung-box masks at the model's input size for ``images`` (empty where a file has no boxes); ``None`` when
    the data set ships no lung boxes (``_no_lung_boxes``)."""
    if _no_lung_boxes(config):
        return None
    boxes = read_lung_boxes(Path(config.root) / ANNOTATIONS)
    size = config.image_size
    return [box_mask(boxes[name][2], boxes[name][0], boxes[name][1], size) if name in boxes
            else np.zeros((size, size), bool) for name in (Path(i).name for i in images)]


def _per_study(decoded: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per study: the most confident image's caption (the views-merged protocol); ``reference`` holds
    every reference, joined by `` | ``."""
    rows = []
    for study, items in sorted(decoded.items()):
        top = _top(items)
        rows.append({"study_id": study, "n_images": len(items), "view_used": top["view"], "image_used": top["image"],
                     "mean_logprob": top["mean_logprob"], "generated": top["generated"],
                     "reference": " | ".join(top["references"]), "n_references": len(top["references"]),
                     "labels": ";".join(top["labels"])})
    columns = ["study_id", "n_images", "view_used", "image_used", "mean_logprob", "generated", "reference",
               "n_references", "labels"]
    return pd.DataFrame(rows, columns=columns)


def _merge_errors(path: Path, errors: Sequence[dict[str, str]], stage: str) -> None:
    """Replace this stage's rows of ``errors.csv`` with ``errors`` (other stages' rows stay)."""
    old = pd.read_csv(path, dtype=str).to_dict("records") if path.exists() else []
    write_errors(path, [r for r in old if r.get("stage") != stage] + list(errors))


def caption_files(run_dir: str | Path, images: Sequence[str | Path], beam: int = 3
                  ) -> list[tuple[Path, Any]]:
    """``(image, DecodedCaption)`` for single image files, with the run's image size and vocabulary."""
    config = read_run_config(run_dir)
    trained = load_captioner(Path(run_dir) / "best.pt", config.device)
    store = ImageStore(config.image_size)
    out = []
    for path in images:
        image = store.load_file(path)
        out.append((Path(path), beam_search(trained.model, trained.vocab, image, beam, config.max_len)))
    return out


def lung_cases(run_dir: str | Path, n: int = 4, beam: int = 3) -> list[dict[str, Any]]:
    """Up to ``n`` evaluated studies (``per_study.csv``) that have lung boxes, recaptioned for display.

    Each: ``image`` (float [S, S]), ``lungs`` (bool mask), ``generated``, ``reference``, ``heatmap`` (the first
    asserted finding's, else the mean attention of all words) and ``heatmap_of`` (its CheXpert name or "all words").
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    per_study = pd.read_csv(run_dir / "per_study.csv", dtype=str).fillna("")
    masks = _lung_masks(config, list(per_study["image_used"]))
    if masks is None:
        return []
    picked = [(p, m, r) for p, m, r in zip(per_study["image_used"], masks, per_study["reference"]) if m.any()][:n]
    store, out = ImageStore(config.image_size), []
    for (path, lungs, reference), (_, dec) in zip(picked, caption_files(run_dir, [p for p, _, _ in picked], beam)):
        image = store.load_file(path)
        maps = pathology_heatmaps(dec, image.shape)
        if maps:
            name, heat = next(iter(maps.items()))
            name = CHEXPERT[name]
        else:
            name = "all words"
            heat = upsample(dec.attention.mean(0), image.shape) if len(dec.attention) else np.zeros(image.shape)
            heat = heat / max(float(heat.max()), 1e-12)
        out.append({"image": image, "lungs": lungs, "generated": dec.text, "reference": reference, "heatmap": heat,
                    "heatmap_of": name})
    return out
