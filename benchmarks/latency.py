"""First-image and per-image latency of the inference plugin through Workflow, for each model.

  python -m benchmarks latency [--repeats 5]

First image: task created -> first result, weights already cached (random weights unless --torch-home).
"""
from __future__ import annotations

import statistics

from .common import cache_weights, default_out, infer_task, isolated_ikomia, photo, run_task, timed, write_report


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-home", help="a TORCH_HOME holding real weights (default: random weights)")
    parser.add_argument("--out", default=default_out("latency"))


def run(args) -> int:
    isolated_ikomia(args.torch_home)
    from resnext_core.common.models import MODEL_NAMES

    image = photo()
    report = {"image": "640x480", "first_image_s": {}, "median_ms_per_image": {}}
    for model_name in MODEL_NAMES:
        cache_weights(model_name)
        task, first = timed(lambda: infer_task(model_name=model_name))
        first += timed(lambda: run_task(task, image))[1]
        median = statistics.median(timed(lambda: run_task(task, image))[1] for _ in range(args.repeats))
        report["first_image_s"][model_name], report["median_ms_per_image"][model_name] = first, 1000 * median
        print(f"{model_name}: first image {first:.2f} s, then median {1000 * median:.0f} ms/image (640x480)")
    write_report(report, args.out)
    return 0
