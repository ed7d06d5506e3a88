"""A training step on 2 gloo processes (DDP on the CPU, how the tests run it): the recipe's step against
DDP's and torch.optim's defaults.

  python -m benchmarks ddp-step [--size 32] [--batch 32] [--rounds 3] [--steps 14]

Recipe: distributed.wrap_model (DDP with gradient_as_bucket_view) and loop.build_optimizer (AdamW, fused).
Defaults: DistributedDataParallel(model) and torch.optim.AdamW(parameters). Each process takes one core's
share of threads and half the global batch of random images; the two set-ups alternate for --rounds rounds,
and each round's first 2 steps are not timed. Also times one process stepping the whole batch with the
recipe's optimizer and with the default, for reference. Prints median milliseconds per step.
"""
from __future__ import annotations

import os
import statistics

from .common import default_out, timed, write_report

WORLD_SIZE = 2
WARMUP_STEPS = 2


def timed_steps(model, optimizer, batch: int, size: int, steps: int) -> float:
    """Median seconds of a forward, backward and optimizer step on random images."""
    import torch
    from torch import nn

    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    times = [timed(step)[1] for _ in range(steps)]
    return statistics.median(times[WARMUP_STEPS:])


def build(recipe: bool, world=None):
    import torch

    from resnext_core.common import models
    from resnext_core.training import distributed
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.loop import build_optimizer

    torch.manual_seed(0)
    model = models.build_model("resnext50", num_classes=10).to(memory_format=torch.channels_last)
    optimizer = (build_optimizer(model, TrainConfig(optimizer="adamw")) if recipe
                 else torch.optim.AdamW(model.parameters(), lr=0.002))
    if world is None:
        return model, optimizer
    if recipe:
        return distributed.wrap_model(model, torch.device("cpu"), world), optimizer
    return torch.nn.parallel.DistributedDataParallel(model), optimizer


def worker(rank: int, port: int, recipe: bool, args, results) -> None:
    import torch
    import torch.distributed as dist

    from resnext_core.common.world import World

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORLD_SIZE))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    model, optimizer = build(recipe, World(rank, WORLD_SIZE))
    seconds = timed_steps(model, optimizer, args.batch // WORLD_SIZE, args.size, args.steps)
    if rank == 0:
        results.put(seconds)
    dist.destroy_process_group()


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="the global batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--out", default=default_out("ddp-step"))


def run(args) -> int:
    import torch
    import torch.multiprocessing as mp

    from resnext_core.training.launch import free_port

    single = {"recipe": [], "defaults": []}
    ddp = {"recipe": [], "defaults": []}
    results = mp.get_context("spawn").SimpleQueue()
    for _ in range(args.rounds):
        for name in ("defaults", "recipe"):
            torch.set_num_threads(os.cpu_count() or 1)
            single[name].append(timed_steps(*build(name == "recipe"), args.batch, args.size, args.steps))
            mp.spawn(worker, args=(free_port(), name == "recipe", args, results), nprocs=WORLD_SIZE)
            ddp[name].append(results.get())
            print(f"{name}: 1 process {single[name][-1] * 1000:.0f} ms, {WORLD_SIZE} processes "
                  f"{ddp[name][-1] * 1000:.0f} ms per step", flush=True)
    report = {"input_size": args.size, "global_batch": args.batch,
              "median_ms": {f"{processes} {name}": statistics.median(times) * 1000
                            for processes, runs in (("1 process", single), (f"{WORLD_SIZE} processes", ddp))
                            for name, times in runs.items()}}
    for key, value in report["median_ms"].items():
        print(f"{key}: {value:.0f} ms per step")
    for processes in ("1 process", f"{WORLD_SIZE} processes"):
        ratio = report["median_ms"][f"{processes} defaults"] / report["median_ms"][f"{processes} recipe"]
        report[f"recipe_speedup, {processes}"] = ratio
        print(f"{processes}: the recipe's step {ratio:.2f}x the speed of the defaults'")
    write_report(report, args.out)
    return 0
