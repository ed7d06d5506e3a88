"""The CPU engines side by side on one model, in one process, interleaved: what `engine` auto and int8 rest on.

  python -m benchmarks engines [--repeats 7]

resnext50_32x4d (random weights, BatchNorm folded) at 224 px, batch 1 and 16 of preprocessed photos-like
images: torch eager (channels_last), ONNX Runtime fp32, OpenVINO fp32 and OpenVINO + NNCF int8 through
resnext_core's own runners and disk cache (a temporary TORCH_HOME: every build is timed from nothing), torch
bf16 autocast and OpenVINO bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX: precision auto's
choice there). Prints build times, the largest logit difference to torch and medians with their speed-up over
torch eager; writes them as JSON.
"""
from __future__ import annotations

import os
import tempfile

from .common import default_out, photo, race, timed, write_report


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=default_out("engines"))


def run(args) -> int:
    os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="resnext-engines-")  # every build timed from nothing
    import torch

    from resnext_core.common.models import build_model
    from resnext_core.common.preprocess import Preprocessing
    from resnext_core.common.runtime import cpu_has_native_bf16, disable_openmp_dynamic_threads
    from resnext_core.common.anatomy import fold_batch_norms
    from resnext_core.inference.onnxruntime_engine import onnxruntime_runner
    from resnext_core.inference.openvino_engine import inference_precision_for, openvino_runner

    disable_openmp_dynamic_threads()

    def build():
        torch.manual_seed(0)
        return fold_batch_norms(build_model("resnext50_32x4d").eval())

    preprocessing = Preprocessing(224, 232)
    calibration = preprocessing.batch([photo(seed=seed) for seed in range(32)])
    inputs = {"b1": preprocessing.batch([photo(seed=99)]), "b16": preprocessing.batch([photo(seed=100 + i) for i in range(16)])}
    eager_model = build().to(memory_format=torch.channels_last)

    def eager(x):
        with torch.inference_mode():
            return eager_model(x.contiguous(memory_format=torch.channels_last))

    def eager_bf16(x):
        with torch.autocast("cpu", torch.bfloat16):
            return eager(x).float()

    runners, build_s = {"torch eager": eager}, {}
    if cpu_has_native_bf16():
        runners["torch bf16"] = eager_bf16
    runners["onnxruntime fp32"], build_s["onnxruntime fp32 (export)"] = timed(lambda: onnxruntime_runner("race", 224, build))
    runners["openvino fp32"], build_s["openvino fp32 (convert)"] = timed(lambda: openvino_runner("race", 224, build))
    if cpu_has_native_bf16():  # the same cache entry, compiled for bf16
        runners["openvino bf16"], build_s["openvino bf16 (compile)"] = timed(
            lambda: openvino_runner("race", 224, build, inference_precision=inference_precision_for(torch.bfloat16)))
    int8 = lambda: openvino_runner("race", 224, build, calibration.numpy(),  # noqa: E731
                                   inference_precision=inference_precision_for(torch.int8))
    runners["openvino int8"], build_s["openvino int8 (quantize)"] = timed(int8)
    _, build_s["openvino int8 (load, cache filled)"] = timed(int8)
    reference = eager(inputs["b16"])
    difference = {name: float((run(inputs["b16"]) - reference).abs().max()) for name, run in runners.items()}
    contenders = {f"{name} {batch}": (lambda run=run, x=x: run(x)) for batch, x in inputs.items() for name, run in runners.items()}
    median = race(contenders, args.repeats)
    speedup = {name: median[f"torch eager {name.rsplit(' ', 1)[1]}"] / seconds for name, seconds in median.items()}
    report = {"native_bf16": cpu_has_native_bf16(), "build_s": build_s,
              "max_logit_difference_to_torch_b16": difference, "median_s": median, "speedup_vs_torch_eager": speedup}
    for name, seconds in build_s.items():
        print(f"  build {name:42s} {seconds:6.1f} s")
    for name, value in difference.items():
        print(f"  max |logit - torch's| {name:20s} {value:.1e}")
    for name, seconds in median.items():
        print(f"  {name:22s} {1000 * seconds:8.1f} ms  {speedup[name]:5.2f}x torch eager")
    write_report(report, args.out)
    return 0
