"""ONNX Runtime, a CPU engine, and the cached ONNX file every CPU engine starts from (exported once per weights
and input size into engine_cache)."""
from __future__ import annotations

import importlib.metadata

import numpy as np
import torch

from ..common.onnx_export import INPUT_NAME, ONNX, OUTPUT_NAME, export_onnx_model, new_session
from .engine_cache import ENGINE_CACHE, EngineCache


class OnnxRunner:
    """Callable like the torch runner: a float batch (N, 3, H, W) -> logits (N, C), on the CPU."""

    engine = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        array = np.ascontiguousarray(batch.float().numpy())
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def onnx_facts(weights_identity: str, input_size: int) -> dict:
    """What decides the exported graph: the weights, the input size and the exporter's versions (onnxscript's read
    from its installed metadata: importing it, which only an export needs, would cost a cached model's load most
    of its time)."""
    return {"weights": weights_identity, "input_size": input_size, "torch": torch.__version__,
            "onnxscript": importlib.metadata.version("onnxscript")}


def _onnx_entry(weights_identity: str, input_size: int, build_model, open_, cache: EngineCache):
    def write(paths: dict) -> None:
        model = build_model().float().eval().to(memory_format=torch.contiguous_format)
        export_onnx_model(model, torch.zeros(1, 3, input_size, input_size), paths[ONNX])

    return cache.entry(onnx_facts(weights_identity, input_size), (ONNX,), write, open_)


def onnx_file(weights_identity: str, input_size: int, build_model, cache: EngineCache = ENGINE_CACHE) -> str:
    """The cached ONNX file of these weights at this size; build_model() -> (float eval model) only on a miss."""
    return _onnx_entry(weights_identity, input_size, build_model, lambda paths: paths[ONNX], cache)


def onnxruntime_runner(weights_identity: str, input_size: int, build_model, cache: EngineCache = ENGINE_CACHE) -> OnnxRunner:
    """ONNX Runtime on the cached ONNX file; a file ONNX Runtime refuses is exported again."""
    return OnnxRunner(_onnx_entry(weights_identity, input_size, build_model, lambda paths: new_session(paths[ONNX]), cache))
