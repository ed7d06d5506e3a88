"""The plugin at the speed of its engine: its own time around the model against Ikomia's floor, video frames per
second against the bulk command, and a new process's first image.

  python -m benchmarks overhead [--repeats 30] [--frames 60] [--processes 3]

1. A 640x480 photo through the plugin (its task's run(), as Workflow runs it), the engine's forward timed inside
   the same run; the bare forward (the engine alone on the preprocessed photo); and Ikomia's floor: a
   classification task that does nothing but rank 1,000 classes' probabilities and hand them to Ikomia (names and
   confidences as text), what any classifier task must do.
   The three interleaved; the ratio is the plugin's time around the model over the floor.
2. A clip of --frames 640x480 frames: frames per second through the plugin (wf.run_on(path=clip)) and through the
   bulk command (python -m resnext_core.predict's function), interleaved.
3. A new process's first labelled image (--processes of them, the engine cache filled by the first): the seconds
   to import ikomia, to add the task (the plugin's imports), to the first result, and to a second one.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from .common import cache_weights, default_out, infer_task, isolated_ikomia, photo, run_task, timed, write_report

MODEL = "resnext50_32x4d"
FIRST_IMAGE = """
import json, time
started = time.perf_counter()
import numpy as np
from ikomia.dataprocess.workflow import Workflow
marks = {"import_ikomia": time.perf_counter() - started}
task = Workflow().add_task(name="infer_torchvision_resnext")
marks["add_task"] = time.perf_counter() - started
task.set_parameters({"model_name": "%s"})
task.get_input(0).set_image(np.full((480, 640, 3), 128, np.uint8))
task.run()
marks["first_result"] = time.perf_counter() - started
task.run()
marks["second_result"] = time.perf_counter() - started
print("MARKS" + json.dumps(marks))
""" % MODEL


class TimedRunner:
    """Wraps a model's runner: records the seconds of each forward."""

    def __init__(self, runner):
        self.runner, self.engine, self.seconds = runner, runner.engine, []

    def __call__(self, batch, dtype):
        logits, elapsed = timed(lambda: self.runner(batch, dtype))
        self.seconds.append(elapsed)
        return logits


def floor_task(class_names: list):
    """A classification task whose run() only ranks every class's probability and hands them to Ikomia."""
    import torch
    from ikomia import dataprocess

    probabilities = torch.rand(len(class_names), generator=torch.Generator().manual_seed(0)).softmax(0)

    class Floor(dataprocess.CClassificationTask):
        def __init__(self):
            dataprocess.CClassificationTask.__init__(self, "floor")
            self.set_names(class_names)

        def run(self):
            self.begin_task_run()
            confidences, order = probabilities.sort(descending=True)
            self.set_whole_image_results([class_names[i] for i in order.tolist()],
                                         list(map("{:.8g}".format, confidences.tolist())))
            self.end_task_run()

    return Floor()


def write_clip(path: str, frames: int) -> str:
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    for index in range(frames):
        writer.write(photo(480, 640, seed=index % 7))
    writer.release()
    return path


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--processes", type=int, default=3, help="new processes timed to their first image")
    parser.add_argument("--out", default=default_out("overhead"))


def around_the_model(args) -> dict:
    task, image = infer_task(model_name=MODEL), photo()
    run_task(task, image)  # the model loaded (converted once) into the plugin's cache
    cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"].MODEL_CACHE
    loaded = list(cache._entries.values())[-1]
    loaded.runner = timing = TimedRunner(loaded.runner)
    floor = floor_task(loaded.class_names)
    batch = loaded.preprocessing.batch([image])
    engine, dtype = timing.runner, task.get_param_object().config()
    from resnext_core.common.runtime import resolve_device, resolve_precision

    dtype = resolve_precision(dtype.precision, resolve_device(dtype.device))
    runs, floors, bare = [], [], []
    for _ in range(args.repeats + 3):
        runs.append(timed(lambda: run_task(task, image))[1])
        floors.append(timed(lambda: run_task(floor, image))[1])
        bare.append(timed(lambda: engine(batch, dtype))[1])
    loaded.runner = timing.runner
    run, forward = statistics.median(runs[3:]), statistics.median(timing.seconds[3:])
    floor_s, bare_s = statistics.median(floors[3:]), statistics.median(bare[3:])
    report = {"image": "640x480", "run_ms": 1000 * run, "forward_inside_run_ms": 1000 * forward,
              "around_model_ms": 1000 * (run - forward), "bare_forward_ms": 1000 * bare_s, "ikomia_floor_ms": 1000 * floor_s,
              "around_over_floor": (run - forward) / floor_s}
    print(f"photo 640x480: the plugin's run {report['run_ms']:.2f} ms, its forward {report['forward_inside_run_ms']:.2f} ms "
          f"(bare: {report['bare_forward_ms']:.2f} ms), around the model {report['around_model_ms']:.2f} ms; Ikomia's floor "
          f"{report['ikomia_floor_ms']:.2f} ms: {report['around_over_floor']:.2f}x the floor", flush=True)
    return report


def video(args, home: str) -> dict:
    from ikomia.dataprocess.workflow import Workflow

    from resnext_core import InferConfig
    from resnext_core.inference.bulk import predict_files

    clip = write_clip(os.path.join(home, "clip.mp4"), args.frames)

    def plugin():
        workflow = Workflow()  # a workflow a run, as bulk.py says why
        workflow.add_task(name="infer_torchvision_resnext", auto_connect=True).set_parameters({"model_name": MODEL})
        workflow.run_on(path=clip)

    def bulk():
        output = os.path.join(tempfile.mkdtemp(prefix="resnext-overhead-", dir=home), "frames.csv")
        predict_files(InferConfig(model_name=MODEL), [clip], output, progress=False)

    rates = {"plugin_run_on_video": [], "bulk_predict_video": []}
    for round_index in range(3):
        for name, fn in (("plugin_run_on_video", plugin), ("bulk_predict_video", bulk)):
            elapsed = timed(fn)[1]
            if round_index:
                rates[name].append(args.frames / elapsed)
    report = {"frames": args.frames, "frames_per_second": {name: statistics.median(r) for name, r in rates.items()}}
    report["plugin_over_bulk"] = report["frames_per_second"]["plugin_run_on_video"] / report["frames_per_second"]["bulk_predict_video"]
    for name, rate in report["frames_per_second"].items():
        print(f"video 640x480, {name}: {rate:.1f} frames/s", flush=True)
    print(f"video: the plugin at {report['plugin_over_bulk']:.2f}x the bulk command's frames per second", flush=True)
    return report


def first_image(args) -> dict:
    runs = []
    for _ in range(args.processes + 1):  # the first fills the engine cache
        completed = subprocess.run([sys.executable, "-c", FIRST_IMAGE], capture_output=True, text=True, timeout=600)
        line = [l for l in completed.stdout.splitlines() if l.startswith("MARKS")]
        assert completed.returncode == 0 and line, completed.stderr[-2000:]
        runs.append(json.loads(line[0][len("MARKS"):]))
    marks = {key: statistics.median(run[key] for run in runs[1:]) for key in runs[1]}
    print("new process, engine cache filled: " + ", ".join(f"{key} at {value:.2f} s" for key, value in marks.items()),
          flush=True)
    return {"cold_engine_cache": runs[0], "seconds": marks, "runs": runs[1:]}


def run(args) -> int:
    home = isolated_ikomia()
    cache_weights(MODEL)
    report = {"model": MODEL, "around_the_model": around_the_model(args), "video": video(args, home),
              "first_image": first_image(args)}
    write_report(report, args.out)
    return 0
