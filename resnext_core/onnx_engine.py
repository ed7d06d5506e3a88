"""ONNX: every CPU engine's starting point (each model exported once into engine_cache), run by ONNX Runtime."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_path
from .engine_cache import ENGINE_CACHE, EngineCache

INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_EXPORT_BATCH = 1024
ONNX = ".onnx"
TORCHSCRIPT_OPSET = 17  # ONNX Runtime and OpenVINO both run it
log = logging.getLogger(__name__)


def export_onnx_model(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    """`model` (float, eval) to an ONNX file at `path`, atomically, with a dynamic batch axis.

    torch's TorchScript-based exporter first: it writes ResNeXt in under a second where the torch.export-based
    one (torch's default) takes 6-8 s, the same graph to 1e-7 (README, Measured). torch deprecates it; where
    it fails or is gone, the torch.export-based exporter writes the file.
    """
    # Two images: a batch of one would be specialised into the graph as a constant.
    example = sample[:1].float().expand(2, -1, -1, -1).contiguous()
    with atomic_path(path, ONNX) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the deprecation is handled here
                torch.onnx.export(model, (example,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                                  dynamo=False, opset_version=TORCHSCRIPT_OPSET)
        except Exception as exc:  # noqa: BLE001 (any failure: the other exporter is the fallback, and raises its own)
            log.info("TorchScript ONNX export failed (%s): using the torch.export-based exporter", exc)
            batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
            torch.onnx.export(model, (example,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes={"x": {0: batch}}, external_data=False, dynamo=True, verbose=False)


def new_session(path: str):
    """An ONNX Runtime CPU session for the model file at `path`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Callable like the torch runner: a float batch (N, 3, H, W) -> logits (N, C), on the CPU."""

    engine = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        array = np.ascontiguousarray(batch.float().numpy())
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def onnx_facts(weights_identity: str, input_size: int) -> dict:
    """What decides the exported graph: the weights, the input size and the exporter's versions."""
    import onnxscript

    return {"weights": weights_identity, "input_size": input_size, "torch": torch.__version__,
            "onnxscript": onnxscript.__version__}


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
