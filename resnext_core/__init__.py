"""Shared ResNeXt model building for the Ikomia plugins: no ikomia, no Qt.

  common/     what every layer uses: parameters, models and their anatomy, preprocessing, checkpoints, the scorer
  data/       image files decoded at the size needed, datasets (class folders, label files), the bulk sources
  reports/    pictures and the evaluation folder
  inference/  InferConfig -> load_classifier() -> Classifier, engines, explanations, drawing, bulk, evaluation
  training/   TrainConfig -> Trainer, its data, checkpoints, reports; launch (several processes) and relay
  train.py, predict.py, evaluate.py: the command lines (python -m resnext_core.train ...); train.train() is the
  one way into training
"""
__version__ = "3.1.0"  # first: the plugins' metadata reads it

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
