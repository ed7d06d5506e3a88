"""Race our plugins against the public plugin's pipeline, side by side in one process.

  python -m benchmarks race [--models resnext50_32x4d] [--repeats 7] [--train-compile] [--training-only]

Baseline (what the public plugin does per image): cv2.resize to a square -> ToTensor -> Normalize ->
eager NCHW fp32 model, batch 1, under no_grad; one forward per region of interest; training with a
plain eager fp32 SGD loop. Ours: the plugin through Workflow (torch fp32 path, ONNX Runtime, and the
default path: engine auto, OpenVINO on the CPU), batched regions, the opt-in int8 precision (OpenVINO +
NNCF), and the training recipe's step (channels_last, AMP/bf16 where the hardware has it; with
--train-compile also under torch.compile, channels_last and NCHW, its first step timed apart). A new
process's first image is timed for torch and for the default engine with its cache empty, then filled.
Each of our paths is raced against the baseline in turn, the two interleaved and repeated (the machines
are noisy; two engines interleaved disturb each other); medians and ratios are printed and written as
JSON. Weights are random unless --torch-home points at real cached ones: speed does not depend on the values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from .common import cache_weights, default_out, infer_task, isolated_ikomia, photo, race, run_task, timed, write_report


class Baseline:
    """The public plugin's per-image pipeline, written plainly."""

    def __init__(self, model_name: str, input_size: int = 224):
        import torch
        import torchvision.transforms as transforms

        from resnext_core.common import models

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the public plugin
        self.model, _ = models.pretrained_model(model_name)
        self.model.eval().to(self.device)
        self.size = input_size
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]
        )

    def predict(self, image):
        import cv2

        tensor = self.transform(cv2.resize(image, (self.size, self.size))).unsqueeze(0).to(self.device)
        with self.torch.no_grad():
            return self.torch.nn.functional.softmax(self.model(tensor)[0], dim=0).cpu()

    def predict_regions(self, image, boxes):
        return [self.predict(image[y : y + h, x : x + w]) for x, y, w, h in boxes]


def ours(model_name: str, precision: str = "auto", quantization_folder: str = "", engine: str = "auto"):
    return infer_task(model_name=model_name, precision=precision, top_k=5, quantization_folder=quantization_folder,
                      engine=engine)


def quantization_folder(home: str) -> str:
    """Photos like the benchmark's, for the int8 contender's calibration."""
    from PIL import Image

    folder = os.path.join(home, "calibration")
    os.makedirs(folder, exist_ok=True)
    for seed in range(16):
        Image.fromarray(photo(seed=seed)).save(os.path.join(folder, f"{seed}.png"))
    return folder


def training_step_race(model_name: str, batch: int, size: int, repeats: int, compiled: bool = False) -> tuple:
    """Median seconds per training step of each contender, and the compiled contenders' first-step seconds
    (torch.compile builds the forward and backward graphs on the first step)."""
    import torch
    from torch import nn

    from resnext_core.common import models
    from resnext_core.common.runtime import autocast, disable_openmp_dynamic_threads, resolve_precision
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.loop import build_optimizer

    disable_openmp_dynamic_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)

    def make(fast: bool, channels_last: bool = True, compile_model: bool = False):
        model = models.build_model(model_name, num_classes=10).to(device)
        if fast and channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if compile_model else model
        # Ours steps with the recipe's optimizer (fused, weight decay off norms and biases); the baseline with
        # torch.optim.SGD's defaults.
        optimizer = (build_optimizer(model, TrainConfig(optimizer="sgd", learning_rate=0.01)) if fast
                     else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
        dtype = resolve_precision("auto", device) if fast else torch.float32
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        x = images.contiguous(memory_format=torch.channels_last) if fast and channels_last else images

        def step():
            with autocast(device, dtype):
                loss = nn.functional.cross_entropy(forward(x).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return step

    contenders = {"baseline_train_step": make(False), "ours_train_step": make(True)}
    first_step_s = {}
    if compiled:
        for name, channels_last in (("compiled_train_step", True), ("compiled_nchw_train_step", False)):
            contenders[name] = make(True, channels_last, compile_model=True)
            first_step_s[f"{name}_first_step_s"] = timed(contenders[name])[1]
    return race(contenders, repeats), first_step_s


def gpu_throughput(model_name: str, batches=(1, 256)) -> dict:
    """Our model path on CUDA (auto precision): bs1 latency and large-batch img/s."""
    import torch

    from resnext_core import load_classifier

    from .gpu import speed

    torch.backends.cudnn.benchmark = True
    classifier = load_classifier(model_name=model_name, device="cuda", precision="auto")
    return {f"bs{batch}": speed(classifier, batch) for batch in batches}


FIRST_IMAGE = r"""
import os, sys, time
start = time.perf_counter()
from ikomia.dataprocess.workflow import Workflow
import numpy as np
task = Workflow().add_task(name="infer_torchvision_resnext")
task.set_parameters({"model_name": sys.argv[1], "engine": sys.argv[2]})
task.get_input(0).set_image(np.full((480, 640, 3), 120, np.uint8))
task.run()
# VmHWM, not ru_maxrss: the latter survives exec and would report the benchmark's own peak.
with open("/proc/self/status") as status:
    peak_kib = int(status.read().split("VmHWM:")[1].split()[0])
print(time.perf_counter() - start, peak_kib / 1024)
"""


def first_image(model_name: str, engine: str, torch_home: str) -> tuple:
    """(seconds, peak RSS MiB) from a new process's start to its first labelled image."""
    out = subprocess.run([sys.executable, "-c", FIRST_IMAGE, model_name, engine], capture_output=True, text=True,
                         env=dict(os.environ, TORCH_HOME=torch_home), cwd=tempfile.gettempdir(), check=True)
    last = [line for line in out.stdout.splitlines() if line.strip()][-1].split()
    return float(last[0]), float(last[1])


def first_images(model_name: str) -> dict:
    """A new process's first image: torch eager, then the default engine with its cache empty, then filled.

    The processes get a TORCH_HOME of their own that shares the weights: the cold start never empties
    the cache of a --torch-home the user passed.
    """
    import torch

    torch_home = tempfile.mkdtemp(prefix="resnext-first-image-")
    os.makedirs(os.path.join(torch_home, "hub"))
    os.symlink(os.path.join(torch.hub.get_dir(), "checkpoints"), os.path.join(torch_home, "hub", "checkpoints"))
    report = {}
    for name, engine in (("torch", "torch"), ("default_cold_cache", "auto"), ("default_warm_cache", "auto")):
        report[f"first_image_{name}_s"], report[f"peak_rss_{name}_mib"] = first_image(model_name, engine, torch_home)
    return report


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", default=["resnext50_32x4d"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--no-int8", action="store_true", help="skip the opt-in int8 contender (10-20 s to build)")
    parser.add_argument("--train-compile", action="store_true",
                        help="also race the training step under torch.compile (about a minute to build on 2 cores)")
    parser.add_argument("--training-only", action="store_true", help="race the training step alone")
    parser.add_argument("--torch-home", help="a TORCH_HOME holding real weights (default: random weights)")
    parser.add_argument("--out", default=default_out("race"))


def run(args) -> int:
    home = isolated_ikomia(args.torch_home)
    from resnext_core.common.runtime import cpu_has_native_bf16, resolve_device, resolve_precision
    from resnext_core.inference.engines import resolve_engine

    device = resolve_device("auto")
    report = {
        "default_engine": resolve_engine("auto", device, resolve_precision("auto", device)),
        "native_cpu_bf16": cpu_has_native_bf16(),
        "auto_precision": str(resolve_precision("auto", device)).replace("torch.", ""),
        "results": {},
    }
    image = photo()
    boxes = [(20 + 150 * (i % 4), 20 + 110 * (i // 4), 120, 90) for i in range(16)]
    for model_name in args.models:
        cache_weights(model_name)
        baseline = Baseline(model_name)
        paths = {} if args.training_only else {
            "torch_fp32": ours(model_name, "fp32", engine="torch"),
            "onnxruntime": ours(model_name, "fp32", engine="onnxruntime"), "default": ours(model_name)}
        build = {}
        if device.type == "cpu" and not (args.no_int8 or args.training_only):  # opt-in precision: its build time is reported apart
            paths["int8"] = ours(model_name, "int8", quantization_folder(home))
            build["int8_first_image_s"] = timed(lambda: run_task(paths["int8"], image))[1]
            build["int8_first_16_regions_s"] = timed(lambda: run_task(paths["int8"], image, boxes))[1]
        times, ratios = {}, {}
        for name, task in paths.items():
            # Each path raced against the baseline alone: engines left in one process disturb each other
            # (a thread pool still spinning after its run takes the cores from the next contender).
            whole = race({"baseline": lambda: baseline.predict(image), "ours": lambda t=task: run_task(t, image)},
                         args.repeats)
            regions = race({"baseline": lambda: baseline.predict_regions(image, boxes),
                            "ours": lambda t=task: run_task(t, image, boxes)}, max(3, args.repeats // 2))
            times.update({f"baseline_vs_{name}": whole["baseline"], f"ours_{name}": whole["ours"],
                          f"baseline_16_regions_vs_{name}": regions["baseline"], f"ours_{name}_16_regions": regions["ours"]})
            ratios[f"{name}_path"] = whole["baseline"] / whole["ours"]
            ratios[f"{name}_16_regions"] = regions["baseline"] / regions["ours"]
        train_times, first_steps = training_step_race(model_name, args.train_batch, 224, max(3, args.repeats // 2),
                                                      compiled=args.train_compile)
        times.update(train_times)
        build.update(first_steps)
        for name, seconds in train_times.items():
            ratios[name.replace("_train_step", "_training_step").replace("ours_", "")] = times["baseline_train_step"] / seconds
        del ratios["baseline_training_step"]
        firsts = {} if args.training_only else first_images(model_name)
        report["results"][model_name] = {"median_s": times, "speedup_vs_baseline": ratios, **build, **firsts}
        if device.type == "cuda":
            report["results"][model_name]["gpu"] = gpu_throughput(model_name)
            for batch, row in report["results"][model_name]["gpu"].items():
                print(f"  GPU {batch}: {row['ms_per_batch']:.2f} ms/batch, {row['images_per_s']:.0f} img/s")
        print(f"\n{model_name} (auto precision: {report['auto_precision']}, "
              f"default engine: {report['default_engine']})")
        print(f"  {'contender':24s} {'median ms':>10s}")
        for name, seconds in times.items():
            print(f"  {name:24s} {1000 * seconds:10.1f}")
        for name, ratio in ratios.items():
            print(f"  speed-up {name:17s} {ratio:6.2f}x")
        for name in ("torch", "default_cold_cache", "default_warm_cache") if firsts else ():
            print(f"  new process, first image, {name:18s} {firsts[f'first_image_{name}_s']:6.2f} s, "
                  f"peak RSS {firsts[f'peak_rss_{name}_mib']:.0f} MiB")
        for name, seconds in build.items():
            print(f"  {name} {seconds:.1f} s")
    write_report(report, args.out)
    return 0
