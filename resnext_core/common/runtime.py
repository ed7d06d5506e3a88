"""Devices and numeric precision: what the hardware offers, chosen once, validated with clear errors.
Both sides use them: inference (with its engines, engines.py) and training (autocast)."""
from __future__ import annotations

import contextlib
import ctypes
import functools

import torch

from .errors import ConfigError
from .schema import option

DEVICES = ("auto", "cpu", "cuda")
# Precision names and the dtypes they compute in; int8: opt-in, CPU, OpenVINO, calibrated (inference/int8.py).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
PRECISIONS = ("auto", *DTYPES)


def device_choices(values=None) -> list:
    """Devices to offer: the names above and each CUDA device of this machine."""
    return list(DEVICES) + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def device_option(**spec):
    """The `device` parameter, as both plugins declare it."""
    return option("auto", "Device", "auto: the first CUDA GPU if any, else the CPU.", choices=device_choices,
                  accepted="`auto`, `cpu`, `cuda`, `cuda:N`", **spec)


def choice_key(name) -> str:
    """A device or precision name as compared: case and spaces ignored, empty meaning 'auto'."""
    return str(name).strip().lower() or "auto"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' or 'cuda:N' only where CUDA exists."""
    key = choice_key(name)
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or key.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' was asked for but CUDA is not available on this machine: use cpu or auto")
        try:
            device = torch.device(key)
        except RuntimeError:
            raise ConfigError(f"Invalid device '{name}': expected {', '.join(DEVICES)} or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise ConfigError(f"Unknown device '{name}': expected one of {', '.join(DEVICES)} (or cuda:N)")


def disable_openmp_dynamic_threads() -> None:
    """Turn off OpenMP's dynamic thread count in the calling thread.

    Importing ikomia 0.16.1 enables it (omp_set_dynamic(1)); GOMP then hands oneDNN fewer threads
    than it planned for whenever the load average is high, and oneDNN's convolution backward kernels
    spin forever waiting for the missing thread: training hangs. The setting is per thread, so
    every entry point calls this in the thread that computes.
    """
    libgomp = _libgomp()
    if libgomp is not None:
        libgomp.omp_set_dynamic(0)


@functools.lru_cache(maxsize=None)
def _libgomp():
    try:
        return ctypes.CDLL("libgomp.so.1")  # the copy torch already loaded
    except OSError:  # a torch built with another OpenMP runtime
        return None


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """Compute dtype for a precision name. 'auto': bf16 where the hardware runs it natively, else fp32."""
    key = choice_key(name)
    if key not in PRECISIONS:
        raise ConfigError(f"Unknown precision '{name}': expected one of {', '.join(PRECISIONS)}")
    if key == "fp16" and device.type != "cuda":
        raise ConfigError("precision 'fp16' needs a CUDA device: CPUs run it emulated; use bf16 or fp32")
    if key == "int8" and device.type != "cpu":
        raise ConfigError("precision 'int8' runs on the CPU (x86): use device cpu, or bf16/fp16 on CUDA")
    if key != "auto":
        return DTYPES[key]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """The precision name of a dtype (DTYPES read backwards)."""
    return next(name for name, value in DTYPES.items() if value == dtype)


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for `dtype`; nothing for fp32, nor for int8 (its model is quantized)."""
    if dtype in (torch.float32, torch.int8):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
