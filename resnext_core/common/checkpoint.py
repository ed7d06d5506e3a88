"""One self-describing checkpoint format, plus the public plugin's plain state dict + class file.

A checkpoint is a dict of plain data and tensors, loadable with torch.load(weights_only=True):
  format, format_version, model_name, class_names, preprocessing (crop/resize/mean/std), state_dict,
  temperature (temperature.py; absent in runs before it), and for training runs: epoch, batch, optimizer, scheduler,
  scaler, history, best, stale, train_params. A multi-label model's adds multi_label (True) and thresholds (a
  confidence a class, at its temperature), and is format version 2: a plugin that reads only version 1 would take
  its sigmoids for a softmax, and refuses it instead.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass

import torch

from .anatomy import CLASSIFIER_WEIGHT, is_classifier_parameter, strip_wrapper_prefixes
from .errors import CheckpointError
from .files import atomic_save
from .models import MODEL_NAMES, build_model, resolve_model_name
from .preprocess import Preprocessing
from .temperature import is_valid_temperature

FORMAT = "resnext-ikomia-checkpoint"
FORMAT_VERSION = 2  # the newest this code reads, and a multi-label model's
SINGLE_LABEL_FORMAT_VERSION = 1  # a single-label model's, as before multi-label models: older plugins read it


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained classifier."""

    model_name: str
    class_names: list
    preprocessing: Preprocessing
    state_dict: dict
    temperature: float | None = None  # fitted on the run's validation set; None: plain state dicts, older runs
    multi_label: bool = False
    thresholds: list | None = None  # a multi-label model's confidence threshold of each class, at `temperature`


def save_checkpoint(path: str, model_name: str, state_dict: dict, class_names, preprocessing: Preprocessing, **extra) -> None:
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if extra.get("multi_label") else SINGLE_LABEL_FORMAT_VERSION,
        "model_name": resolve_model_name(model_name),
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "state_dict": state_dict,
        **extra,
    }
    atomic_save(payload, path)


def safe_load(path: str, map_location="cpu"):
    """torch.load(weights_only=True) with errors that name the file and the problem."""
    if not path:
        raise CheckpointError("No weight file given")
    if os.path.isdir(path):
        raise CheckpointError(f"Weight file {path} is a folder: expected a .pth file (best.pth of a training run)")
    if not os.path.isfile(path):
        raise CheckpointError(f"Weight file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Weight file is empty: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        code = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if code:
            raise CheckpointError(
                f"Weight file {path} was refused: it would run {code.group(1)} when loaded "
                "(only tensors and plain data are accepted; pickled code or whole models never run)"
            ) from None
        raise CheckpointError(f"Weight file {path} is corrupt or not a PyTorch file: {_torch_reason(exc)}") from None
    except Exception as exc:  # torch raises many types for damaged files (RuntimeError, EOFError, KeyError...)
        raise CheckpointError(f"Weight file {path} is corrupt or not a PyTorch file: {_torch_reason(exc)}") from None


def _torch_reason(exc: Exception) -> str:
    """The line of torch's message that says what was wrong, without its advice to load unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "WeightsUnpickler error:" in line or line.startswith("Unsupported")]
    reason = detail[-1] if detail else (lines[0] if lines else type(exc).__name__)
    return reason.replace("WeightsUnpickler error:", "").strip()[:200]


def read_class_file(path: str) -> list:
    """One class name a line; blank lines ignored; duplicates refused (they would make labels ambiguous)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Class file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
    except UnicodeDecodeError:
        raise CheckpointError(f"Class file {path} is not UTF-8 text") from None
    if not names:
        raise CheckpointError(f"Class file {path} holds no class names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CheckpointError(f"Class file {path} repeats class names: {', '.join(duplicates)}")
    return names


def check_class_count(class_names, names_source: str, num_outputs: int, model_description: str) -> None:
    if len(class_names) != num_outputs:
        raise CheckpointError(
            f"Class count mismatch: {names_source} names {len(class_names)} classes "
            f"but {model_description} has {num_outputs} outputs"
        )


def _backbone_shapes(state_dict: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state_dict.items() if not is_classifier_parameter(k)}


_SIGNATURES: dict = {}


def detect_architecture(state_dict: dict, path: str = "") -> str:
    """Which ResNeXt variant a state dict belongs to, from its tensor shapes."""
    shapes = _backbone_shapes(state_dict)
    for name in MODEL_NAMES:
        if name not in _SIGNATURES:
            with torch.device("meta"):
                _SIGNATURES[name] = _backbone_shapes(build_model(name).state_dict())
        if _SIGNATURES[name] == shapes:
            return name
    raise CheckpointError(
        f"Weight file {path} is not a ResNeXt state dict: its tensors match none of {', '.join(MODEL_NAMES)}"
    )


def output_size(state_dict: dict, path: str = "") -> int:
    weight = state_dict.get(CLASSIFIER_WEIGHT)
    if weight is None or weight.ndim != 2:
        raise CheckpointError(f"Weight file {path} has no classifier layer ({CLASSIFIER_WEIGHT})")
    return int(weight.shape[0])


def load_checkpoint(path: str, class_file: str = "", imagenet_categories=None) -> ModelSpec:
    """A trained model's description from our checkpoint or a plain state dict (+ class file).

    imagenet_categories names a plain 1000-output state dict when no class file is given.
    """
    data = safe_load(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"Weight file {path} holds a {type(data).__name__}, expected a state dict")
    ours = data.get("format") == FORMAT
    if ours and int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"Weight file {path} has format version {data['format_version']}; "
            f"this plugin reads up to {FORMAT_VERSION}: update the plugin"
        )
    state_dict = strip_wrapper_prefixes(data["state_dict"] if ours else data)
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"Weight file {path} is not a state dict of tensors")
    model_name = detect_architecture(state_dict, path)
    num_outputs = output_size(state_dict, path)

    if class_file:
        class_names = read_class_file(class_file)
    elif ours:
        class_names = list(data["class_names"])
    elif num_outputs == 1000 and imagenet_categories is not None:
        class_names = list(imagenet_categories)
    else:
        raise CheckpointError(
            f"Weight file {path} is a plain state dict with {num_outputs} outputs: "
            f"give a class_file with its {num_outputs} class names, one a line"
        )
    check_class_count(class_names, class_file or path, num_outputs, f"the model in {path}")
    preprocessing = Preprocessing.from_dict(data["preprocessing"]) if ours else Preprocessing()
    temperature = _temperature(data["temperature"], path) if ours and "temperature" in data else None
    multi_label = bool(ours and data.get("multi_label"))
    thresholds = _thresholds(data.get("thresholds"), len(class_names), path) if multi_label else None
    return ModelSpec(model_name, class_names, preprocessing, state_dict, temperature, multi_label, thresholds)


def _thresholds(values, count: int, path: str) -> list:
    """A multi-label checkpoint's thresholds: one confidence in [0, 1] a class (0.5 each where it has none)."""
    if values is None:
        return [0.5] * count
    try:
        thresholds = [float(value) for value in values]
    except (TypeError, ValueError):
        thresholds = []
    if len(thresholds) != count or not all(0.0 <= value <= 1.0 for value in thresholds):
        raise CheckpointError(f"Weight file {path} has thresholds {values!r}: expected {count} confidences in [0, 1]")
    return thresholds


def _temperature(value, path: str) -> float:
    if not is_valid_temperature(value):
        raise CheckpointError(f"Weight file {path} has temperature {value!r}: expected a positive number")
    return float(value)
