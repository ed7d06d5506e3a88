"""Shared ResNeXt model building for the Ikomia plugins: no ikomia, no Qt.

  common/     what both sides use: parameters, models, preprocessing, checkpoints, metrics, plots
  inference/  InferConfig -> load_classifier() -> Classifier, engines, explanations, drawing
  training/   TrainConfig -> Trainer (one process) or launch.train (several), its data, checkpoints, reports
  train.py, predict.py, evaluate.py: the command lines (python -m resnext_core.train ...)
"""
__version__ = "3.0.0"  # first: the plugins' metadata reads it

from .common.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    ResNeXtError,
    WeightsUnavailableError,
)
from .inference.classifier import Classifier, load_classifier
from .inference.config import InferConfig

__all__ = [
    "CheckpointError", "Classifier", "ConfigError", "DatasetError", "ImageError", "InferConfig", "ResNeXtError",
    "WeightsUnavailableError", "load_classifier",
]
