"""int8 inference on x86 CPUs, opt-in (precision="int8"): PT2E static quantization + torch.compile.

torchao's X86InductorQuantizer quantizes weights per channel and activations with ranges observed
on calibration images (the user's own: int8 is only as good as its calibration). The quantized
graph is fast only once compiled by inductor (a C++ compiler at run time); uncompiled it is slower
than fp32. Measured on a 2-core AVX2 EPYC: ~3x fp32 per image, but ~30-60 s to build, once per
model, input size and batch bucket: worth it for folders and videos, not for one photo.
"""
from __future__ import annotations

import os
import shutil
import threading

import torch
from torch import nn

from .data import IMAGE_EXTENSIONS, read_image
from .errors import ConfigError, ImageError
from .preprocess import Preprocessing

CALIBRATION_IMAGES = 32  # observed ranges settle well before; more only slows the (slow) observers
CALIBRATION_BATCH = 8
# Batches are padded up to a bucket: one compiled graph per bucket. The largest is inference.MAX_BATCH,
# the most images Classifier.predict sends in one call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def calibration_paths(folder: str, count: int = CALIBRATION_IMAGES) -> list:
    """Up to `count` image files spread evenly over the folder's tree (sorted: reproducible)."""
    if not folder:
        raise ConfigError(
            "precision 'int8' needs calibration_folder: a folder of representative images "
            "(your training set, or some of the images to classify)"
        )
    if not os.path.isdir(folder):
        raise ConfigError(f"calibration_folder not found: {folder}")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ConfigError(f"calibration_folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def calibration_images(folder: str) -> list:
    """The calibration images of `folder`, read; a clear error where there are none."""
    images = []
    for path in calibration_paths(folder):
        try:
            images.append(read_image(path))
        except ImageError:
            continue  # an unreadable file among many does not spoil calibration
    if not images:
        raise ConfigError(f"calibration_folder {folder}: none of its image files could be read")
    return images


def _check_toolchain() -> None:
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise ConfigError("precision 'int8' needs the torchao package: pip install torchao") from None
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError("precision 'int8' compiles its kernels and needs a C++ compiler (g++ or clang++) on PATH")


class Int8Model(nn.Module):
    """A quantized, compiled copy of a float model; batches padded to BATCH_BUCKETS sizes."""

    def __init__(self, quantized: nn.Module):
        super().__init__()
        self.quantized = quantized
        self.compiled = torch.compile(quantized, dynamic=False)
        self._lock = threading.Lock()  # one compilation at a time; compiled graphs are then shared

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        bucket = next(size for size in BATCH_BUCKETS if size >= count)
        if bucket > count:
            batch = torch.cat([batch, batch[-1:].expand(bucket - count, -1, -1, -1)])
        batch = batch.float().contiguous(memory_format=torch.channels_last)
        # Freezing (weights as constants) is what lets inductor prepack the int8 weights; it applies
        # when a graph is compiled, i.e. at the first call of each batch size.
        from torch._inductor import config as inductor_config  # seconds to import: only when int8 is used

        with self._lock, torch.inference_mode(False), torch.no_grad(), inductor_config.patch(freezing=True):
            return self.compiled(batch.clone())[:count]


def quantize_int8(model: nn.Module, preprocessing: Preprocessing, images: list) -> Int8Model:
    """Export (strict: torchvision's Bottleneck reuses one ReLU module, which non-strict export
    merges into one partition the quantizer refuses), observe `images`, convert, compile."""
    _check_toolchain()
    batches = [preprocessing.batch(images[i : i + CALIBRATION_BATCH]) for i in range(0, len(images), CALIBRATION_BATCH)]
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = model.eval().float().to(memory_format=torch.contiguous_format)
    example = torch.cat([batches[0], batches[0]])[:2]  # batch 1 would be specialised as a constant
    batch_dim = torch.export.Dim("batch", min=1, max=BATCH_BUCKETS[-1])
    with torch.no_grad():
        graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch_dim},), strict=True).module()
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for batch in batches:
            prepared(batch)
        quantized = convert_pt2e(prepared)
    return Int8Model(quantized)

