"""int8 inference on the CPU, opt-in (precision="int8"): NNCF's post-training quantization of the OpenVINO model.

NNCF quantizes weights per channel and activations with ranges observed on a quantization sample: images of the
user's own (quantization_folder), or, for a checkpoint of a training run, the preprocessed validation images the
run left beside it (run_folder.QUANTIZATION_SAMPLE). int8 is only as good as its sample. The quantized model is
cached like the fp32 one (openvino_engine.py). (NNCF calls this sample's job calibration; "calibrated"
confidences are another thing, common/temperature.py's.)
"""
from __future__ import annotations

import contextlib
import io
import logging
import os

import numpy as np
import torch

from ..common.errors import ConfigError, ImageError
from ..data.decode import IMAGE_EXTENSIONS, find_images, read_image
from ..common.preprocess import Preprocessing
from ..common.run_folder import QUANTIZATION_SAMPLE, evenly_spread, run_sample_path

NEEDS_QUANTIZATION_SAMPLE = ("precision 'int8' needs quantization_folder: a folder of representative images (your training set, "
                     f"or some of the images to classify); a checkpoint of a training run uses its run's {QUANTIZATION_SAMPLE}")


def quantization_paths(folder: str) -> list:
    """Up to QUANTIZATION_IMAGES image files spread evenly over the folder's tree (sorted: reproducible)."""
    if not os.path.isdir(folder):
        raise ConfigError(f"quantization_folder not found: {folder}")
    paths = find_images(folder)
    if not paths:
        raise ConfigError(f"quantization_folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return evenly_spread(paths)


def quantization_images(folder: str) -> list:
    """The quantization images of `folder`, read; a clear error where there are none."""
    images = []
    for path in quantization_paths(folder):
        try:
            images.append(read_image(path))
        except ImageError:
            continue  # an unreadable file among many does not spoil the sample
    if not images:
        raise ConfigError(f"quantization_folder {folder}: none of its image files could be read")
    return images


def read_run_sample(path: str) -> np.ndarray:
    """A run's quantization sample (N x 3 x S x S float, preprocessed), checked."""
    try:
        sample = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"quantization sample {path} cannot be read ({exc}): pass quantization_folder") from None
    if sample.ndim != 4 or sample.shape[1] != 3 or not len(sample) or not np.isfinite(sample).all():
        raise ConfigError(f"quantization sample {path} is not N x 3 x S x S finite images (shape {sample.shape}): "
                          "pass quantization_folder")
    return sample.astype(np.float32)


def read_quantization_sample(folder: str, weight_file: str):
    """quantization_folder's images (a list), else the trained checkpoint's run sample (an array)."""
    if folder:
        return quantization_images(folder)
    if weight_file and os.path.isfile(run_sample_path(weight_file)):
        return read_run_sample(run_sample_path(weight_file))
    if weight_file:
        raise ConfigError(f"{NEEDS_QUANTIZATION_SAMPLE}, and none lies beside {weight_file}")
    raise ConfigError(NEEDS_QUANTIZATION_SAMPLE)


def quantization_batch(quantization_sample, preprocessing: Preprocessing) -> np.ndarray:
    """read_quantization_sample()'s result as the model's input at `preprocessing`'s size (N x 3 x S x S float32)."""
    if not isinstance(quantization_sample, np.ndarray):
        return preprocessing.batch(quantization_sample).numpy()
    sample = torch.from_numpy(quantization_sample)
    size = preprocessing.crop_size
    if sample.shape[-2:] != (size, size):  # inference at another input_size than training's
        sample = torch.nn.functional.interpolate(sample, size=(size, size), mode="bilinear", antialias=True)
    return sample.numpy()


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF's INFO lines and progress bars (drawn on stdout whatever the log level) are not the plugin
    user's business: its warnings are kept, its bars go nowhere for the build's few seconds."""
    import nncf

    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield nncf
    finally:
        nncf.set_log_level(level)


def quantize_int8(model, quantization_sample: np.ndarray):
    """The OpenVINO model `model` quantized to int8, observing `quantization_sample` (N x 3 x S x S float32)."""
    with _quiet_nncf() as nncf:
        # One image per item: NNCF's statistics (and its bias correction) assume batch 1.
        items = nncf.Dataset([quantization_sample[i : i + 1] for i in range(len(quantization_sample))])
        return nncf.quantize(model, items, subset_size=len(quantization_sample))
