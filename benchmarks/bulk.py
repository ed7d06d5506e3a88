"""Bulk prediction against the plugin on a folder: python -m resnext_core.predict's images per second beside
wf.run_on(folder=...)'s, the same engine (the default) and model, in one process, the two interleaved.

  python -m benchmarks bulk [--images 200] [--rounds 2] [--batch-size 32] [--workers auto]

The folder holds --images synthetic photos of varied sizes (320 to 800 px a side), half JPEG, half PNG. Each round
runs the plugin over the folder through Workflow (which saves every output, as run_on(folder) does) and the bulk
prediction into a fresh CSV; the first round of each is a warm-up (the engine's one-off conversion).
"""
from __future__ import annotations

import os
import statistics
import tempfile

from .common import cache_weights, default_out, isolated_ikomia, photo, timed, write_report

MODEL = "resnext50_32x4d"


def photo_folder(count: int) -> str:
    from PIL import Image

    folder = tempfile.mkdtemp(prefix="resnext-bulk-photos-")
    for index in range(count):
        height, width = 320 + (index * 37) % 480, 320 + (index * 53) % 480
        extension = "jpg" if index % 2 else "png"
        Image.fromarray(photo(height, width, seed=index)).save(os.path.join(folder, f"{index:04d}.{extension}"), quality=90)
    return folder


def add_arguments(parser) -> None:
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each, after a warm-up")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, help="the bulk command's decoding threads (default: its auto)")
    parser.add_argument("--out", default=default_out("bulk"))


def run(args) -> int:
    home = isolated_ikomia()
    cache_weights(MODEL)
    from ikomia.dataprocess.workflow import Workflow

    from resnext_core import InferConfig
    from resnext_core.data.sources import auto_workers
    from resnext_core.inference.bulk import predict_files
    from resnext_core.common.runtime import resolve_device

    folder = photo_folder(args.images)
    config = InferConfig(model_name=MODEL)

    def plugin():
        # A workflow a run: ikomia 0.16.1's run_on(folder) adds a folder input at each call, and a second call on one
        # workflow hands the task a path instead of an image.
        workflow = Workflow()
        workflow.add_task(name="infer_torchvision_resnext", auto_connect=True).set_parameters({"model_name": MODEL})
        workflow.set_output_folder(tempfile.mkdtemp(prefix="resnext-bulk-plugin-", dir=home))
        workflow.run_on(folder=folder)

    def bulk():
        output = os.path.join(tempfile.mkdtemp(prefix="resnext-bulk-out-", dir=home), "predictions.csv")
        predict_files(config, [folder], output, args.batch_size, args.workers, progress=False)

    seconds = {"plugin_run_on_folder": [], "bulk_predict": []}
    for round_index in range(args.rounds + 1):
        for name, fn in (("plugin_run_on_folder", plugin), ("bulk_predict", bulk)):
            elapsed = timed(fn)[1]
            if round_index:  # round 0 warms both up
                seconds[name].append(elapsed)
            print(f"round {round_index}: {name} {elapsed:.1f} s ({args.images / elapsed:.1f} img/s)", flush=True)
    rate = {name: args.images / statistics.median(values) for name, values in seconds.items()}
    report = {"model": MODEL, "images": args.images, "batch_size": args.batch_size,
              "workers": auto_workers(resolve_device("auto")) if args.workers is None else args.workers,
              "seconds": seconds, "images_per_second": rate,
              "bulk_speedup": rate["bulk_predict"] / rate["plugin_run_on_folder"]}
    print(f"bulk prediction {rate['bulk_predict']:.1f} img/s, the plugin's run_on(folder) {rate['plugin_run_on_folder']:.1f} "
          f"img/s: {report['bulk_speedup']:.2f}x")
    write_report(report, args.out)
    return 0
