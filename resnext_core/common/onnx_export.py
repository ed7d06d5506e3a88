"""ONNX files of a model: the export every CPU engine starts from (and training's model.onnx), and ONNX Runtime
sessions to run or check them."""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from .files import atomic_path

INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_EXPORT_BATCH = 1024
ONNX = ".onnx"
TORCHSCRIPT_OPSET = 17  # ONNX Runtime and OpenVINO both run it
log = logging.getLogger(__name__)


def export_onnx_model(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    """`model` (float, eval) to an ONNX file at `path`, atomically, with a dynamic batch axis.

    torch's TorchScript-based exporter first: it writes ResNeXt in under a second where the torch.export-based
    one (torch's default) takes 6-8 s, the same graph to 1e-7 (docs/performance.md). torch deprecates it; where
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
