"""First-image and per-image latency of the inference plugin through Workflow, for each model.

  python benchmarks/latency.py [--repeats 5]

First image: task created -> first result, weights already cached (random weights unless --torch-home).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmark import cache_weights, photo, run_task, setup_environment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-home", help="a TORCH_HOME holding real weights (default: random weights)")
    args = parser.parse_args(argv)
    setup_environment(args.torch_home)
    from ikomia.dataprocess.workflow import Workflow

    from resnext_core.models import MODEL_NAMES

    image = photo()
    for model_name in MODEL_NAMES:
        cache_weights(model_name)
        start = time.perf_counter()
        task = Workflow().add_task(name="infer_torchvision_resnext")
        task.set_parameters({"model_name": model_name})
        run_task(task, image)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_task(task, image)
            times.append(time.perf_counter() - start)
        print(f"{model_name}: first image {first:.2f} s, then median {1000 * statistics.median(times):.0f} ms/image (640x480)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
