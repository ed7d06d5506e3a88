"""OpenVINO: the CPU engine for fp32 (converted from the cached ONNX file) and int8 (quantized by NNCF).

Both are entries of engine_cache: the OpenVINO model (.xml graph, .bin weights) is written once and
compiled from there by every later process, which is faster than reading the ONNX file again.
"""
from __future__ import annotations

import functools
import hashlib
import threading

import numpy as np
import torch

from .engine_cache import ENGINE_CACHE, EngineCache
from .onnxruntime_engine import onnx_facts, onnx_file
from ..common import runtime

XML, BIN = ".xml", ".bin"


@functools.lru_cache(maxsize=None)
def _core():
    import openvino

    return openvino.Core()


def inference_precision_for(dtype: torch.dtype) -> str:
    """What the float layers compute in for a precision: bf16 for bf16, and for int8 where the CPU computes
    bf16 natively (faster there, with no larger error than int8's own: docs/performance.md); f32 otherwise."""
    return "bf16" if dtype == torch.bfloat16 or (dtype == torch.int8 and runtime.cpu_has_native_bf16()) else "f32"


class OpenVinoRunner:
    """Callable like the torch runner: a float batch (N, 3, H, W) -> logits (N, C), on the CPU.

    A single image runs on a model compiled for latency (one stream over every core); a batch is
    split over the parallel requests of a second compilation, for throughput (streams of a few cores
    each), made at the first batch: faster for batches than one request on the latency compilation
    (docs/performance.md), while a single image keeps every core.

    `inference_precision` ("f32" or "bf16") is what the float layers compute in, an int8 model's included.
    It is always set: OpenVINO's own default is bf16 wherever the CPU has AVX512-BF16 or AMX, which would
    make an fp32 request silently compute in bf16 there.
    """

    engine = "openvino"

    def __init__(self, model, inference_precision: str = "f32"):
        self.model = model
        self.inference_precision = inference_precision
        self.latency = self._compile("LATENCY")
        self.request = self.latency.create_infer_request()
        self.throughput = None
        self._lock = threading.Lock()  # a request runs one batch at a time

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        array = np.ascontiguousarray(batch.float().numpy())
        with self._lock:
            if len(array) == 1:
                return torch.from_numpy(np.array(self.request.infer({0: array})[0]))  # copied: the buffer is reused
            return torch.from_numpy(self._in_parallel(array))

    def _compile(self, performance_hint: str):
        return _core().compile_model(self.model, "CPU", {"PERFORMANCE_HINT": performance_hint,
                                                         "INFERENCE_PRECISION_HINT": self.inference_precision})

    def _in_parallel(self, array: np.ndarray) -> np.ndarray:
        import openvino

        if self.throughput is None:
            self.throughput = self._compile("THROUGHPUT")
        parts = np.array_split(array, min(len(array), self.throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue, outputs = openvino.AsyncInferQueue(self.throughput, len(parts)), [None] * len(parts)
        queue.set_callback(lambda request, index: outputs.__setitem__(index, np.array(request.get_output_tensor(0).data)))
        for index, part in enumerate(parts):
            queue.start_async({0: part}, index)
        queue.wait_all()
        return np.concatenate(outputs)


def openvino_facts(weights_identity: str, input_size: int, quantization_sample: np.ndarray | None) -> dict:
    """The ONNX file's facts, OpenVINO's version and, for int8, NNCF's and the quantization sample's hash."""
    import openvino

    facts = {**onnx_facts(weights_identity, input_size), "engine": "openvino", "openvino": openvino.__version__}
    if quantization_sample is not None:
        import nncf

        facts.update(precision="int8", nncf=nncf.__version__,
                     quantization_sample=hashlib.sha256(np.ascontiguousarray(quantization_sample, np.float32).tobytes()).hexdigest())
    return facts


def openvino_runner(weights_identity: str, input_size: int, build_model, quantization_sample: np.ndarray | None = None,
                    cache: EngineCache = ENGINE_CACHE, inference_precision: str = "f32") -> OpenVinoRunner:
    """fp32 (or bf16: `inference_precision`), or int8 when `quantization_sample` (N x 3 x S x S preprocessed images) is
    given; built on a miss from the cached ONNX file (exported first where missing: build_model() is called
    only then). fp32 and bf16 share one cache entry: the precision is chosen when the model is compiled."""

    def write(paths: dict) -> None:
        import openvino

        model = _core().read_model(onnx_file(weights_identity, input_size, build_model, cache))
        if quantization_sample is not None:
            from .int8 import quantize_int8

            model = quantize_int8(model, quantization_sample)
        # compress_to_fp16 (on by default) would round the fp32 weights: no 1e-4 agreement with torch then.
        openvino.save_model(model, paths[XML], compress_to_fp16=False)

    facts = openvino_facts(weights_identity, input_size, quantization_sample)
    return cache.entry(facts, (XML, BIN), write, lambda paths: OpenVinoRunner(_core().read_model(paths[XML]), inference_precision))
