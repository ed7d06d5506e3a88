"""What every benchmark shares: timing (one call, or contenders interleaved), the machine's description, the
report writer, and the set-up of an isolated Ikomia home with the plugins installed and weights cached."""
from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")  # ignored by git; benchmarks/reference/ keeps the runs cited


def timed(fn) -> tuple:
    """(fn()'s result, seconds it took)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def race(contenders: dict, repeats: int, warmup: bool = True) -> dict:
    """Median seconds per call of each contender, the calls interleaved round-robin (the machines are noisy:
    a load that comes and goes hits every contender alike)."""
    if warmup:
        for fn in contenders.values():
            fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(timed(fn)[1])
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_model() -> str:
    """The CPU's model name and its int8/bf16-relevant instruction sets, as Linux reports them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            info = handle.read()
    except OSError:
        return ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    extensions = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{name} ({', '.join(extensions) or 'no AVX2'})"


def machine() -> str:
    """CPU, cores and GPU: the line every report carries, so that a figure is never read for another machine."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, {gpu}"


def versions() -> dict:
    names = ("torch", "torchvision", "onnxruntime", "openvino", "nncf")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def write_report(report: dict, path: str) -> None:
    """`report` as JSON at `path`, with the date, the machine and the library versions first."""
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "versions": versions(), **report}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nwritten {path}")


def default_out(name: str) -> str:
    return os.path.join(RESULTS, f"{name}.json")


def isolated_ikomia(torch_home: str | None = None) -> str:
    """An Ikomia home of its own with the plugins installed (as `make install` does), weights cached under
    `torch_home` (a temporary one unless given); returns the home."""
    home = tempfile.mkdtemp(prefix="resnext-bench-")
    os.environ.update({"HOME": home, "IKOMIA_AUTO_COMPLETION": "0", "TORCH_HOME": torch_home or os.path.join(home, "torch")})
    from resnext_tools import plugins

    for name in plugins.available_plugins():
        plugins.install_plugin(name, os.path.join(home, "Ikomia", "Plugins", "Python"))
    import ikomia  # noqa: F401  (puts ikomia's OpenCV on sys.path for the baseline's cv2)

    return home


def cache_weights(model_name: str) -> None:
    """Random weights under the torchvision file name of `model_name`'s DEFAULT weights (speed does not depend
    on the values), unless real ones are cached."""
    import torch

    from resnext_core.common import models

    path = models.cached_weights_path(models.resolve_weights(model_name))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(models.build_model(model_name).state_dict(), path)


def photo(height=480, width=640, seed=0):
    """A smooth synthetic RGB photo (uint8), the same for a seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [0.5 + 0.5 * np.sin(rng.uniform(2, 9) * yy + rng.uniform(2, 9) * xx + rng.uniform(0, 6)) for _ in range(3)]
    return (np.stack(planes, -1) * 255).astype(np.uint8)


def infer_task(**parameters):
    """The inference plugin as users create it, with `parameters` (strings) set."""
    from ikomia.dataprocess.workflow import Workflow

    task = Workflow().add_task(name="infer_torchvision_resnext")
    task.set_parameters({name: str(value) for name, value in parameters.items()})
    return task


def run_task(task, image, boxes=None):
    """One run of an inference task on `image`, on regions `boxes` ((x, y, w, h), ...) if given."""
    from ikomia import core

    task.get_input(0).set_image(image)
    task.get_input(1).set_items([core.CGraphicsRectangle(*box) for box in boxes] if boxes else [])
    task.run()
