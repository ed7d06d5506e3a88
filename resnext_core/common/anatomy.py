"""The ResNeXt family's anatomy, as torchvision's ResNet class builds it: where each part the project touches lives,
stated once beside the models table (models.py). A family with other names changes here alone.

  stem -> layer1 .. layer4 (bottleneck blocks; convN followed by bnN, downsample = [conv, bn]) -> avgpool -> fc
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CLASSIFIER = "fc"  # the last layer, a Linear: replaced for a dataset's classes, the "head" of fine-tuning
CLASSIFIER_WEIGHT = f"{CLASSIFIER}.weight"
# What wrappers put before every key of the state dicts they save: DataParallel and DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def is_classifier_parameter(name: str) -> bool:
    """Whether a parameter's (or a state dict key's) name is the classifier's."""
    return name.startswith(CLASSIFIER + ".")


def classifier_inputs(model: nn.Module) -> int:
    return getattr(model, CLASSIFIER).in_features


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """A new, randomly initialised classifier for `num_classes` outputs."""
    setattr(model, CLASSIFIER, nn.Linear(classifier_inputs(model), num_classes))
    return model


def last_block(model: nn.Module) -> nn.Module:
    """The last bottleneck block: where class-activation maps look (the last spatial features)."""
    return model.layer4[-1]


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """A state dict saved from a wrapper (every key prefixed) as the bare model's."""
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Each eval-mode BatchNorm folded into the convolution before it (bnN after convN, downsample[1] after
    downsample[0]): the same function up to fp32 rounding (~1e-6), one pass less over every activation
    (docs/performance.md measures it)."""
    for module in model.modules():
        for name, child in list(module.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            conv_name = str(int(name) - 1) if name.isdigit() else "conv" + name[2:]
            conv = getattr(module, conv_name, None)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"no convolution before BatchNorm '{name}' in {type(module).__name__}")
            setattr(module, conv_name, fuse_conv_bn_eval(conv, child))
            setattr(module, name, nn.Identity())
    return model
