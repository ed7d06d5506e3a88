"""What an explanation costs: the inference plugin with `explain` off and on, per image, in one process.

  python benchmarks/explain_cost.py [--methods gradcam,gradcam++] [--repeats 9] [--out FILE.json]

resnext50_32x4d at 224 (its weights' own crop), 640x480 photo, CPU, the default engine (ONNX Runtime)
for classifying; the maps run on the float torch model, built during the warm-up. A map costs about one
torch forward, so `explain none` on engine torch is timed too, for reference. The tasks run interleaved,
one image each round, and medians are compared: the machine's load drifts, the ratios hold better.
Weights are random: speed does not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from benchmark import cache_weights, photo, race, run_task, setup_environment

MODEL = "resnext50_32x4d"
TORCH_REFERENCE = "none, engine torch"


def task_with(explain: str, engine: str = "auto"):
    from ikomia.dataprocess.workflow import Workflow

    task = Workflow().add_task(name="infer_torchvision_resnext")
    task.set_parameters({"model_name": MODEL, "input_size": "224", "device": "cpu", "explain": explain, "engine": engine})
    return task


def default_engine() -> str:
    """The engine `auto` picks on this machine's CPU."""
    from resnext_core.runtime import resolve_device, resolve_engine, resolve_precision

    device = resolve_device("cpu")
    return resolve_engine("auto", device, resolve_precision("auto", device))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="gradcam", help="comma-separated explain methods to time against none")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    setup_environment(None)
    cache_weights(MODEL)
    image = photo()
    tasks = {method: task_with(method) for method in ["none"] + args.methods.split(",")}
    tasks[TORCH_REFERENCE] = task_with("none", engine="torch")
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()[0]
    seconds = race({method: (lambda task=task: run_task(task, image)) for method, task in tasks.items()}, args.repeats)
    report = {
        "date": started, "model": MODEL, "input_size": 224, "image": "640x480", "repeats": args.repeats,
        "engine": default_engine(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ms_per_image": {method: round(1000 * value, 1) for method, value in seconds.items()},
        "ratio_to_none": {method: round(value / seconds["none"], 2) for method, value in seconds.items() if method != "none"},
    }
    for method, value in seconds.items():
        ratio = f"  ({value / seconds['none']:.2f}x explain none)" if method != "none" else ""
        print(f"explain {method:20s} {1000 * value:7.1f} ms/image{ratio}")
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
