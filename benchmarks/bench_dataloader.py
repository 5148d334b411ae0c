"""Is data loading the bottleneck? DataLoader samples/s against the PTACL training step's samples/s.

Iterates the train split of a cohort with the training loader settings (``collate``, batch size,
workers) after its preprocessing cache exists, then times PTACL training steps on batches drawn
from the same loader. Loading must be clearly faster than training.

    python benchmarks/bench_dataloader.py [--manifest runs/demo/cohort/manifest.csv] [--n-subjects 300]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from ptacl_lib.data import PTACLDataset, open_cohort
from ptacl_lib.data.synthetic import generate_cohort
from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runtime import DistInfo, resolve_device, seed_everything
from ptacl_lib.train import ContrastiveObjective, TrainConfig, make_loader


def loader_rate(dataset: PTACLDataset, config: TrainConfig, epochs: int) -> float:
    """Samples per second of a full pass (or several) through the training DataLoader."""
    loader = make_loader(dataset, config, DistInfo(), torch.device("cpu"), train=True)
    n, start = 0, time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            n += batch["ecg"].shape[0]
    return n / (time.perf_counter() - start)


def step_rate(dataset: PTACLDataset, config: TrainConfig, steps: int) -> float:
    """Samples per second of PTACL training steps (forward, backward, AdamW) on real batches."""
    seed_everything(0)
    model = PTACLModel(ModelConfig.preset(config.model))
    objective = ContrastiveObjective(model, with_local=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = make_loader(dataset, config, DistInfo(), resolve_device("cpu"), train=True)
    batches = [b for _, b in zip(range(steps + 2), itertools.chain.from_iterable(itertools.repeat(loader)))]
    for i, batch in enumerate(batches):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        objective(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return config.batch_size * (len(batches) - 2) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="", help="cohort to read (default: generate a temporary one)")
    parser.add_argument("--n-subjects", type=int, default=300, help="size of the generated cohort")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest or generate_cohort(Path(tmp) / "cohort", n_subjects=args.n_subjects, progress=False)
        cohort = open_cohort(manifest)
        start = time.perf_counter()
        dataset = PTACLDataset(cohort, "train", progress=False)  # builds the preprocessing cache once
        print(f"{len(dataset)} training subjects; dataset ready in {time.perf_counter() - start:.1f} s "
              f"(its first use builds the preprocessing cache); torch threads={torch.get_num_threads()}")
        for workers in (0, 2):
            config = TrainConfig(manifest=str(manifest), run_dir="unused", batch_size=args.batch_size,
                                 num_workers=workers)
            print(f"  DataLoader, {workers} worker(s): {loader_rate(dataset, config, epochs=2):8.1f} samples/s")
        train_rate = step_rate(dataset, TrainConfig(manifest=str(manifest), run_dir="unused",
                                                    batch_size=args.batch_size), args.steps)
        print(f"  PTACL training step (small, CPU): {train_rate:8.1f} samples/s")


if __name__ == "__main__":
    main()
