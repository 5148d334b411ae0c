"""What the local (phase) loss costs: one PTACL training step against one global-only step.

Same model, same batch, same optimiser; the steps alternate so that machine load hits both alike.
Prints the median wall time per step (and CPU time), samples/s, and the overhead of the local loss
in percent (the target is at most 10 %). On CUDA it runs under bf16 autocast and also prints the
peak GPU memory and the model FLOPs utilisation (MFU): FLOPs of one step, counted by
``torch.utils.flop_counter``, per second, over the card's peak (``--peak-tflops``; 989 for an H100
SXM's dense bf16).

    python benchmarks/bench_train_step.py [--batch-size 64] [--model small] [--repeats 20] [--threads N]
    python benchmarks/bench_train_step.py --device cuda --model base --batch-size 128 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ptacl_lib.models import ModelConfig, PTACLModel
from ptacl_lib.runtime import autocast, resolve_device, seed_everything, to_device
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
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak TFLOP/s, for MFU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    batch = to_device(synthetic_batch(args.batch_size), device)
    seed_everything(0)
    model = PTACLModel(ModelConfig.preset(args.model)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    arms = {name: ContrastiveObjective(model, with_local=name == "ptacl") for name in ("global", "ptacl")}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(objective: ContrastiveObjective) -> tuple[float, float]:
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        with autocast(device):
            loss = objective(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # forward + backward of one PTACL step
        with autocast(device):
            loss = arms["ptacl"](batch)["loss"]
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    step_flops = counter.get_total_flops()

    for _ in range(3):  # warm-up
        for objective in arms.values():
            step(objective)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, objective in arms.items():
            times[name].append(step(objective))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step(arms["ptacl"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device={name} model={args.model} ({n_params / 1e6:.2f} M params) batch={args.batch_size} "
          f"repeats={args.repeats} torch={torch.__version__}")
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
    achieved = step_flops / medians["ptacl"][0]
    print(f"PTACL step: {step_flops / 1e9:.2f} GFLOP (fwd+bwd), {achieved / 1e12:.3f} TFLOP/s achieved", end="")
    print(f", MFU {100 * achieved / (args.peak_tflops * 1e12):.1f} % of {args.peak_tflops:g} TFLOP/s"
          if args.peak_tflops else "")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
