"""What a training run leaves beside its checkpoints for inference to read: one statement of each name."""
from __future__ import annotations

import os

# A batch of preprocessed validation images (N x 3 x S x S float32, .npy) that precision int8 calibrates on
# for the run's checkpoints, so that a trained model needs no calibration_folder.
CALIBRATION_SAMPLE = "calibration_sample.npy"
CALIBRATION_IMAGES = 32  # observed activation ranges settle well before; more only slows the int8 build


def evenly_spread(items: list, count: int = CALIBRATION_IMAGES) -> list:
    """Up to `count` of `items`, spread evenly over the list (every class of a list sorted by class)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def run_sample_path(weight_file: str) -> str:
    """Where a training run's calibration sample lies: beside its checkpoints, in the run folder."""
    return os.path.join(os.path.dirname(os.path.abspath(weight_file)), CALIBRATION_SAMPLE)
