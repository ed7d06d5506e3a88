"""Inference engines: torch everywhere, and on the CPU OpenVINO (the default) or ONNX Runtime; which one runs
a model, chosen once, with errors that name the parameter."""
from __future__ import annotations

import functools
import importlib

import torch

from ..common.errors import ConfigError
from ..common import runtime
from ..common.runtime import choice_key, dtype_name

# auto: OpenVINO on the CPU (fp32, bf16 and int8; ONNX Runtime where OpenVINO is not installed), torch elsewhere.
ENGINES = ("auto", "torch", "onnxruntime", "openvino")
# The CPU engines in auto's order of preference (docs/performance.md: the engine race), each with the float precisions it
# runs. bf16 runs only where the CPU computes it natively (runtime.cpu_has_native_bf16); int8 is OpenVINO's alone.
CPU_ENGINES = {"openvino": (torch.float32, torch.bfloat16), "onnxruntime": (torch.float32,)}


def resolve_engine(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """Which engine runs inference: torch, or one of CPU_ENGINES (on the CPU, in its precisions; int8 on OpenVINO)."""
    key = choice_key(name)
    if key not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got '{name}'")
    if dtype == torch.int8:  # resolve_precision put it on the CPU
        if key not in ("auto", "openvino"):
            raise ConfigError(f"precision 'int8' runs on engine openvino (quantized by NNCF), got engine '{name}': "
                              "use engine auto or openvino")
        return "openvino"
    if key == "auto":
        return next((engine for engine in CPU_ENGINES if engine_runs(engine, device, dtype) and is_installed(engine)),
                    "torch")
    if key in CPU_ENGINES and not engine_runs(key, device, dtype):
        native = " (bf16 where the CPU computes it natively: AVX512-BF16 or AMX)" if torch.bfloat16 in CPU_ENGINES[key] else ""
        raise ConfigError(f"engine '{key}' runs {' or '.join(map(dtype_name, CPU_ENGINES[key]))} on the CPU{native}; "
                          f"got device {device}, precision {dtype_name(dtype)}: use engine torch (or auto)")
    return key


def engine_runs(engine: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether CPU engine `engine` runs `dtype` on `device` (a float precision)."""
    if device.type != "cpu" or dtype not in CPU_ENGINES[engine]:
        return False
    return dtype != torch.bfloat16 or runtime.cpu_has_native_bf16()


@functools.lru_cache(maxsize=None)
def is_installed(module: str) -> bool:
    """Whether `module` imports (an engine's package: each is optional to the core)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
