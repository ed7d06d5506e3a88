"""The optimizer's step alone: torch's default (parameters stepped as lists, `foreach`) against `fused`,
which the training recipe uses (resnext_core.training.build_optimizer).

  python benchmarks/optimizer_step.py [--model resnext50] [--threads 1 2] [--rounds 5] [--out benchmarks/results/optimizer_step.json]

Every parameter of the model gets a random gradient; each round steps every contender 5 times, interleaved,
with 1 thread (what each of 2 processes gets on 2 cores) and with all of them. Prints the median milliseconds
per step and fused's speed relative to the default.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]

STEPS_PER_ROUND = 5


def contenders(parameters: list) -> dict:
    import torch

    def sgd(**how):
        return torch.optim.SGD(parameters, lr=0.01, momentum=0.9, nesterov=True, **how)

    def adamw(**how):
        return torch.optim.AdamW(parameters, lr=0.002, **how)

    return {"adamw_default": adamw(), "adamw_fused": adamw(fused=True),
            "sgd_default": sgd(), "sgd_fused": sgd(fused=True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnext50")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "optimizer_step.json"))
    args = parser.parse_args(argv)
    import torch

    from benchmark import cpu_model, write_report
    from resnext_core import models

    model = models.build_model(args.model, num_classes=10)
    parameters = list(model.parameters())
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "model": models.resolve_model_name(args.model), "parameters": sum(p.numel() for p in parameters),
              "median_ms": {}, "fused_speedup": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        optimizers = contenders(parameters)
        for optimizer in optimizers.values():
            optimizer.step()  # state allocated outside the timing
        times = {name: [] for name in optimizers}
        for _ in range(args.rounds):
            for name, optimizer in optimizers.items():
                start = time.perf_counter()
                for _ in range(STEPS_PER_ROUND):
                    optimizer.step()
                times[name].append((time.perf_counter() - start) / STEPS_PER_ROUND * 1000)
        medians = {name: statistics.median(values) for name, values in times.items()}
        report["median_ms"][f"{threads} threads"] = medians
        for kind in ("adamw", "sgd"):
            speedup = medians[f"{kind}_default"] / medians[f"{kind}_fused"]
            report["fused_speedup"][f"{kind}, {threads} threads"] = speedup
            print(f"{kind}, {threads} thread(s): default {medians[f'{kind}_default']:.1f} ms, "
                  f"fused {medians[f'{kind}_fused']:.1f} ms: {speedup:.2f}x", flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
