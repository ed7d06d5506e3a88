"""The plugin's own time around the model, and video frames per second, on the default CPU path.

  python -m benchmarks overhead [--repeats 20] [--frames 60]

1. A 640x480 photo through Workflow (task.run()), its engine's forward timed inside the same run: the share of the
   run spent outside the forward (preprocessing, ranking and formatting every class, drawing, Ikomia's I/O).
2. A clip of --frames 640x480 frames: frames per second through the plugin (wf.run_on(path=clip)) and through the
   bulk prediction (python -m resnext_core.predict's function), interleaved.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile

from .common import cache_weights, default_out, infer_task, isolated_ikomia, photo, run_task, timed, write_report

MODEL = "resnext50_32x4d"


class TimedRunner:
    """Wraps a model's runner: records the seconds of each forward."""

    def __init__(self, runner):
        self.runner, self.engine, self.seconds = runner, runner.engine, []

    def __call__(self, batch, dtype):
        logits, elapsed = timed(lambda: self.runner(batch, dtype))
        self.seconds.append(elapsed)
        return logits


def write_clip(path: str, frames: int) -> str:
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    for index in range(frames):
        writer.write(photo(480, 640, seed=index % 7))
    writer.release()
    return path


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", default=default_out("overhead"))


def run(args) -> int:
    home = isolated_ikomia()
    cache_weights(MODEL)
    from ikomia.dataprocess.workflow import Workflow

    from resnext_core import InferConfig
    from resnext_core.inference.bulk import predict_files

    task, image = infer_task(model_name=MODEL), photo()
    run_task(task, image)  # the model loaded (converted once) into the plugin's cache
    cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"].MODEL_CACHE
    loaded = list(cache._entries.values())[-1]
    loaded.runner = timing = TimedRunner(loaded.runner)
    runs = [timed(lambda: run_task(task, image))[1] for _ in range(args.repeats)]
    whole, forward = statistics.median(runs), statistics.median(timing.seconds[-args.repeats:])
    loaded.runner = timing.runner
    clip = write_clip(os.path.join(home, "clip.mp4"), args.frames)

    def plugin():
        workflow = Workflow()  # a workflow a run, as bulk.py says why
        workflow.add_task(name="infer_torchvision_resnext", auto_connect=True).set_parameters({"model_name": MODEL})
        workflow.run_on(path=clip)

    def bulk():
        output = os.path.join(tempfile.mkdtemp(prefix="resnext-overhead-", dir=home), "frames.csv")
        predict_files(InferConfig(model_name=MODEL), [clip], output, progress=False)

    video = {"plugin_run_on_video": [], "bulk_predict_video": []}
    for round_index in range(3):
        for name, fn in (("plugin_run_on_video", plugin), ("bulk_predict_video", bulk)):
            elapsed = timed(fn)[1]
            if round_index:
                video[name].append(args.frames / elapsed)
    report = {"model": MODEL, "image": "640x480", "run_ms": 1000 * whole, "forward_ms": 1000 * forward,
              "outside_forward_share": (whole - forward) / whole, "frames": args.frames,
              "frames_per_second": {name: statistics.median(rates) for name, rates in video.items()}}
    print(f"photo 640x480: run {report['run_ms']:.1f} ms, the engine's forward {report['forward_ms']:.1f} ms, "
          f"{100 * report['outside_forward_share']:.1f}% outside it")
    for name, rate in report["frames_per_second"].items():
        print(f"video 640x480, {name}: {rate:.1f} frames/s")
    write_report(report, args.out)
    return 0
