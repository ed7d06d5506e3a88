"""The one table of ResNeXt variants, their aliases and their torchvision weights.

Everything else (builders, weights, transforms, categories, metrics) is read from torchvision's
model registry, so a new torchvision release brings its weights without edits here.
"""
from __future__ import annotations

import os
import urllib.error

import torch
from torch import nn
from torchvision.models import get_model_builder, get_model_weights
from torchvision.models._api import WeightsEnum

from .errors import ConfigError, WeightsUnavailableError

MODEL_NAMES = ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d")
# Names the public Ikomia plugins and Ikomia's docs use.
ALIASES = {"resnext50": "resnext50_32x4d", "resnext101": "resnext101_32x8d"}
DEFAULT_MODEL = "resnext50_32x4d"
# Accepted "no pretrained weights" spellings for training from scratch.
NO_WEIGHTS = ("none", "")


def resolve_model_name(name: str) -> str:
    """Canonical torchvision name for a model name or alias, case-insensitive."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODEL_NAMES:
        valid = ", ".join(MODEL_NAMES + tuple(ALIASES))
        raise ConfigError(f"Unknown model_name '{name}': expected one of {valid}")
    return key


def weight_names(model_name: str) -> list[str]:
    """Weight names torchvision offers for a model, DEFAULT first."""
    enum = get_model_weights(resolve_model_name(model_name))
    return ["DEFAULT"] + [w.name for w in enum]


def offered_weights(model_name: str) -> list[str]:
    """weight_names() for a widget: DEFAULT alone while the model name is not (yet) valid."""
    try:
        return weight_names(model_name)
    except ConfigError:
        return ["DEFAULT"]


def resolve_weights(model_name: str, weights: str = "DEFAULT") -> WeightsEnum:
    """torchvision weights entry for `weights` ("DEFAULT", "IMAGENET1K_V1", ...), validated."""
    model_name = resolve_model_name(model_name)
    enum = get_model_weights(model_name)
    key = str(weights).strip().upper() or "DEFAULT"
    try:
        return enum[key]
    except KeyError:
        valid = ", ".join(weight_names(model_name))
        raise ConfigError(
            f"Unknown weights '{weights}' for {model_name}: expected one of {valid}"
        ) from None


def build_model(model_name: str, num_classes: int = 1000, zero_init_residual: bool = False) -> nn.Module:
    """Randomly initialised model; load a state dict into it to use it.

    zero_init_residual starts each residual block as the identity: from-scratch training is then
    stable at learning rates that otherwise diverge.
    """
    builder = get_model_builder(resolve_model_name(model_name))
    return builder(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)


def model_with_weights(model_name: str, state_dict: dict, num_classes: int = 1000) -> nn.Module:
    """The model holding `state_dict`'s tensors; built on the meta device, so no time goes into a
    random initialisation that would be overwritten (0.3-0.9 s a model). Mismatched keys or shapes
    raise RuntimeError, as load_state_dict does."""
    with torch.device("meta"):
        model = build_model(model_name, num_classes=num_classes)
    model.load_state_dict(state_dict, assign=True)
    # Assigned tensors keep their dtype and layout (a half-precision file, channels_last weights of a
    # training run): bring them to what a freshly built model has.
    return model.float().to(memory_format=torch.contiguous_format)


def cached_weights_path(weights: WeightsEnum) -> str:
    """Where torch.hub keeps (or will keep) the file of these weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def load_pretrained_state_dict(weights: WeightsEnum, progress: bool = False) -> dict:
    """State dict of torchvision weights: from torch's cache, downloaded there if missing.

    Offline with an empty cache, the error says which file to put where.
    """
    path = cached_weights_path(weights)
    try:
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if os.path.isfile(path):
            raise WeightsUnavailableError(
                f"Cached weights file {path} could not be loaded ({exc}); delete it to download it again"
            ) from exc
        raise WeightsUnavailableError(
            f"Weights {weights} are not in torch's cache and could not be downloaded ({exc}). "
            f"Download {weights.url} and put it at {path} "
            f"($TORCH_HOME/hub/checkpoints/{os.path.basename(path)})"
        ) from exc


def pretrained_model(model_name: str, weights: str = "DEFAULT") -> tuple[nn.Module, WeightsEnum]:
    """Model with torchvision's ImageNet weights loaded."""
    entry = resolve_weights(model_name, weights)
    return model_with_weights(model_name, load_pretrained_state_dict(entry)), entry
