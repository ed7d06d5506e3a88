"""Shared ResNeXt model building for the Ikomia plugins: no ikomia, no Qt.

Entry points: load_classifier() for inference, the checkpoint format in checkpoint.py,
the model table in models.py, preprocessing in preprocess.py.
"""
__version__ = "3.0.0"  # first: metadata.py reads it

from .checkpoint import ModelSpec, load_checkpoint, read_class_file, save_checkpoint
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    ResNeXtError,
    WeightsUnavailableError,
)
from .inference import MODEL_CACHE, Classifier, load_classifier
from .models import ALIASES, DEFAULT_MODEL, MODEL_NAMES, resolve_model_name, resolve_weights, weight_names
from .preprocess import Preprocessing
from .runtime import DEVICES, PRECISIONS


__all__ = [
    "ALIASES", "DEFAULT_MODEL", "DEVICES", "MODEL_CACHE", "MODEL_NAMES", "PRECISIONS",
    "CheckpointError", "Classifier", "ConfigError", "DatasetError", "ImageError", "ModelSpec", "Preprocessing",
    "ResNeXtError", "WeightsUnavailableError", "load_checkpoint", "load_classifier",
    "read_class_file", "resolve_model_name", "resolve_weights", "save_checkpoint", "weight_names",
]
