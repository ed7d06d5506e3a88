"""What an explanation costs: the inference plugin with `explain` off and on, per image, in one process.

  python -m benchmarks explain [--methods gradcam,gradcam++] [--repeats 9]

resnext50_32x4d at 224 (its weights' own crop), 640x480 photo, CPU, the default engine for classifying; the maps run on the float torch model, built during the warm-up. A map costs about one
torch forward, so `explain none` on engine torch is timed too, for reference. The tasks run interleaved,
one image each round, and medians are compared: the machine's load drifts, the ratios hold better.
Weights are random: speed does not depend on their values.
"""
from __future__ import annotations

import os

from .common import cache_weights, default_out, infer_task, isolated_ikomia, photo, race, run_task, write_report

MODEL = "resnext50_32x4d"
TORCH_REFERENCE = "none, engine torch"


def task_with(explain: str, engine: str = "auto"):
    return infer_task(model_name=MODEL, input_size=224, device="cpu", explain=explain, engine=engine)


def default_engine() -> str:
    """The engine `auto` picks on this machine's CPU."""
    from resnext_core.common.runtime import resolve_device, resolve_precision
    from resnext_core.inference.engines import resolve_engine

    device = resolve_device("cpu")
    return resolve_engine("auto", device, resolve_precision("auto", device))


def add_arguments(parser) -> None:
    parser.add_argument("--methods", default="gradcam", help="comma-separated explain methods to time against none")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=default_out("explain"))


def run(args) -> int:
    isolated_ikomia()
    cache_weights(MODEL)
    image = photo()
    tasks = {method: task_with(method) for method in ["none"] + args.methods.split(",")}
    tasks[TORCH_REFERENCE] = task_with("none", engine="torch")
    load_before = os.getloadavg()[0]
    seconds = race({method: (lambda task=task: run_task(task, image)) for method, task in tasks.items()}, args.repeats)
    report = {
        "model": MODEL, "input_size": 224, "image": "640x480", "repeats": args.repeats, "engine": default_engine(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ms_per_image": {method: round(1000 * value, 1) for method, value in seconds.items()},
        "ratio_to_none": {method: round(value / seconds["none"], 2) for method, value in seconds.items() if method != "none"},
    }
    for method, value in seconds.items():
        ratio = f"  ({value / seconds['none']:.2f}x explain none)" if method != "none" else ""
        print(f"explain {method:20s} {1000 * value:7.1f} ms/image{ratio}")
    write_report(report, args.out)
    return 0
