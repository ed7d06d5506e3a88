"""The optimizer's step alone: torch's default (parameters stepped as lists, `foreach`) against `fused`,
which the training recipe uses (resnext_core.training.loop.build_optimizer).

  python -m benchmarks optimizer-step [--model resnext50] [--threads 1 2] [--rounds 5]

Every parameter of the model gets a random gradient; each round steps every contender 5 times, interleaved,
with 1 thread (what each of 2 processes gets on 2 cores) and with all of them. Prints the median milliseconds
per step and fused's speed relative to the default.
"""
from __future__ import annotations

import os
import statistics

from .common import default_out, timed, write_report

STEPS_PER_ROUND = 5


def contenders(parameters: list) -> dict:
    import torch

    def sgd(**how):
        return torch.optim.SGD(parameters, lr=0.01, momentum=0.9, nesterov=True, **how)

    def adamw(**how):
        return torch.optim.AdamW(parameters, lr=0.002, **how)

    return {"adamw_default": adamw(), "adamw_fused": adamw(fused=True),
            "sgd_default": sgd(), "sgd_fused": sgd(fused=True)}


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="resnext50")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=default_out("optimizer-step"))


def run(args) -> int:
    import torch

    from resnext_core.common import models

    model = models.build_model(args.model, num_classes=10)
    parameters = list(model.parameters())
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    report = {"model": models.resolve_model_name(args.model), "parameters": sum(p.numel() for p in parameters),
              "median_ms": {}, "fused_speedup": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        optimizers = contenders(parameters)
        for optimizer in optimizers.values():
            optimizer.step()  # state allocated outside the timing
        times = {name: [] for name in optimizers}
        for _ in range(args.rounds):
            for name, optimizer in optimizers.items():
                seconds = timed(lambda: [optimizer.step() for _ in range(STEPS_PER_ROUND)])[1]
                times[name].append(seconds / STEPS_PER_ROUND * 1000)
        medians = {name: statistics.median(values) for name, values in times.items()}
        report["median_ms"][f"{threads} threads"] = medians
        for kind in ("adamw", "sgd"):
            speedup = medians[f"{kind}_default"] / medians[f"{kind}_fused"]
            report["fused_speedup"][f"{kind}, {threads} threads"] = speedup
            print(f"{kind}, {threads} thread(s): default {medians[f'{kind}_default']:.1f} ms, "
                  f"fused {medians[f'{kind}_fused']:.1f} ms: {speedup:.2f}x", flush=True)
    write_report(report, args.out)
    return 0
