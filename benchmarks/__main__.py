"""python -m benchmarks <command> [options]: see `python -m benchmarks --help` and each command's --help."""
from __future__ import annotations

import argparse
import importlib
import sys

# command: (module, what it measures)
COMMANDS = {
    "race": ("race", "the plugins against the public plugin's pipeline: whole image, regions, int8, training step"),
    "engines": ("engines", "the CPU engines alone on one model: torch, ONNX Runtime, OpenVINO fp32/bf16/int8"),
    "latency": ("latency", "first image and per-image time of every model through Workflow"),
    "explain": ("explain", "what an explanation costs per image, against explain none"),
    "tta": ("tta", "test-time augmentation: held-out accuracy and time, off against on"),
    "loader-workers": ("loader_workers", "data-loader workers against none, for num_workers auto"),
    "optimizer-step": ("optimizer_step", "the optimizer's step: torch's default against fused"),
    "ddp-step": ("ddp_step", "a training step on 2 gloo processes: the recipe's against the defaults'"),
    "bulk": ("bulk", "python -m resnext_core.predict against the plugin's run_on(folder): images per second"),
    "overhead": ("overhead", "the plugin's time outside the engine's forward; video frames per second"),
    "transfer": ("transfer", "fine-tuning recipes on 10 and 30 images a class: held-out accuracy over seeds"),
    "data": ("data", "users' data: 12 MP photos decoded reduced, broken files, a million listed images, label files"),
    "multi-label": ("multi_label", "a multi-label model on grids of digits: held-out mAP, thresholds, calibration, time"),
    "gpu": ("gpu", "CUDA: precision fidelity, bs1 latency and bs256 throughput, a training run"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(f"benchmarks.{module_name}")
        sub = commands.add_parser(name, help=summary, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
