"""int8 inference on the CPU, opt-in (precision="int8"): NNCF's post-training quantization of the OpenVINO model.

NNCF quantizes weights per channel and activations with ranges observed on calibration images: the
user's own (calibration_folder), or, for a checkpoint of a training run, the sample of preprocessed
validation images the run left beside it (run_folder.CALIBRATION_SAMPLE). int8 is only as good as its
calibration. The quantized model is cached like the fp32 one (openvino_engine.py). "Calibration" in this
module is int8's; the confidences' temperature is common/temperature.py's.
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
from ..common.run_folder import CALIBRATION_SAMPLE, evenly_spread, run_sample_path

NEEDS_CALIBRATION = ("precision 'int8' needs calibration_folder: a folder of representative images (your training set, "
                     f"or some of the images to classify); a checkpoint of a training run uses its run's {CALIBRATION_SAMPLE}")


def calibration_paths(folder: str) -> list:
    """Up to CALIBRATION_IMAGES image files spread evenly over the folder's tree (sorted: reproducible)."""
    if not os.path.isdir(folder):
        raise ConfigError(f"calibration_folder not found: {folder}")
    paths = find_images(folder)
    if not paths:
        raise ConfigError(f"calibration_folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return evenly_spread(paths)


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


def read_run_sample(path: str) -> np.ndarray:
    """A run's calibration sample (N x 3 x S x S float, preprocessed), checked."""
    try:
        sample = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"calibration sample {path} cannot be read ({exc}): pass calibration_folder") from None
    if sample.ndim != 4 or sample.shape[1] != 3 or not len(sample) or not np.isfinite(sample).all():
        raise ConfigError(f"calibration sample {path} is not N x 3 x S x S finite images (shape {sample.shape}): "
                          "pass calibration_folder")
    return sample.astype(np.float32)


def read_calibration(folder: str, weight_file: str):
    """calibration_folder's images (a list), else the trained checkpoint's run sample (an array)."""
    if folder:
        return calibration_images(folder)
    if weight_file and os.path.isfile(run_sample_path(weight_file)):
        return read_run_sample(run_sample_path(weight_file))
    if weight_file:
        raise ConfigError(f"{NEEDS_CALIBRATION}, and none lies beside {weight_file}")
    raise ConfigError(NEEDS_CALIBRATION)


def calibration_batch(calibration, preprocessing: Preprocessing) -> np.ndarray:
    """read_calibration()'s result as the model's input at `preprocessing`'s size (N x 3 x S x S float32)."""
    if not isinstance(calibration, np.ndarray):
        return preprocessing.batch(calibration).numpy()
    sample = torch.from_numpy(calibration)
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


def quantize_int8(model, calibration: np.ndarray):
    """The OpenVINO model `model` quantized to int8, observing `calibration` (N x 3 x S x S float32)."""
    with _quiet_nncf() as nncf:
        # One image per item: NNCF's statistics (and its bias correction) assume batch 1.
        items = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
        return nncf.quantize(model, items, subset_size=len(calibration))
