"""What a training run leaves beside its checkpoints for inference to read: one statement of each name."""
from __future__ import annotations

import os

# A batch of preprocessed validation images (N x 3 x S x S float32, .npy) that precision int8 quantizes with
# for the run's checkpoints, so that a trained model needs no quantization_folder.
QUANTIZATION_SAMPLE = "quantization_sample.npy"
EARLIER_QUANTIZATION_SAMPLE = "calibration_sample.npy"  # its name in runs of plugin versions before 3.1
QUANTIZATION_IMAGES = 32  # observed activation ranges settle well before; more only slows the int8 build


def evenly_spread(items: list, count: int = QUANTIZATION_IMAGES) -> list:
    """Up to `count` of `items`, spread evenly over the list (every class of a list sorted by class)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def run_sample_path(weight_file: str) -> str:
    """Where a training run's quantization sample lies: beside its checkpoints, in the run folder (under its
    earlier name in older runs)."""
    folder = os.path.dirname(os.path.abspath(weight_file))
    earlier = os.path.join(folder, EARLIER_QUANTIZATION_SAMPLE)
    return earlier if os.path.isfile(earlier) and not os.path.isfile(os.path.join(folder, QUANTIZATION_SAMPLE)) \
        else os.path.join(folder, QUANTIZATION_SAMPLE)
