"""What the local (phase) loss costs: one PTACL training step against one global-only step.

Same model, same batch, same optimiser; the steps alternate so that machine load hits both alike.
Prints the median wall time per step (and CPU time), and the overhead of the local loss in percent
(the target is at most 10 %).

    python benchmarks/bench_train_step.py [--batch-size 64] [--model small] [--repeats 20] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runtime import seed_everything
from ptacl_lib.train import ContrastiveObjective, TrainConfig


def synthetic_batch(batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the collated shapes: 10 s ECG at 100 Hz, 25 cine frames of 32x32, 60-100 bpm R peaks."""
    g = torch.Generator().manual_seed(seed)
    rr = torch.randint(60, 100, (batch_size, 1), generator=g)
    first = torch.randint(0, 60, (batch_size, 1), generator=g)
    rpeaks = first + rr * torch.arange(17)
    return {"ecg": torch.randn(batch_size, 12, 1000, generator=g),
            "cmr": torch.rand(batch_size, 25, 32, 32, generator=g),
            "rpeaks": torch.where(rpeaks < 1000, rpeaks, -1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="small")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    batch = synthetic_batch(args.batch_size)
    seed_everything(0)
    model = PTACLModel(ModelConfig.preset(args.model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    arms = {name: ContrastiveObjective(model, TrainConfig(objective=name, run_dir="unused")) for name in ("global", "ptacl")}

    def step(objective: ContrastiveObjective) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        objective(batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - wall, time.process_time() - cpu

    for _ in range(3):  # warm-up
        for objective in arms.values():
            step(objective)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, objective in arms.items():
            times[name].append(step(objective))

    print(f"model={args.model} batch={args.batch_size} threads={torch.get_num_threads()} repeats={args.repeats}")
    medians = {}
    for name, samples in times.items():
        wall = statistics.median(t for t, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        medians[name] = (wall, cpu)
        print(f"  {name:>6} step: {1000 * wall:7.1f} ms wall  {1000 * cpu:7.1f} ms CPU  "
              f"{args.batch_size / wall:7.1f} samples/s")
    wall_pct = 100 * (medians["ptacl"][0] / medians["global"][0] - 1)
    cpu_pct = 100 * (medians["ptacl"][1] / medians["global"][1] - 1)
    print(f"local-loss overhead: {wall_pct:+.1f} % wall, {cpu_pct:+.1f} % CPU (target <= 10 %)")


if __name__ == "__main__":
    main()
