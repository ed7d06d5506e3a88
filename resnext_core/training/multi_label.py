"""What a multi-label model trains with, where it differs from single-label's softmax (loop.py): a sigmoid a class
and its binary cross-entropy, label smoothing towards 1/2, class balance through each class's positive weight,
and MixUp/CutMix that mix the images' label vectors (torchvision's take one class index an image)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_POSITIVE_WEIGHT = 100.0  # a class with one positive among a million images must not swamp the loss


class SmoothedBinaryCrossEntropy(nn.Module):
    """BCE with logits of each class, the 0/1 targets smoothed towards 1/2 by `smoothing` (timm's and the
    references' label smoothing for a sigmoid), positive examples of class c weighing pos_weight[c]."""

    def __init__(self, smoothing: float = 0.0, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.float() * (1.0 - self.smoothing) + 0.5 * self.smoothing
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)


def positive_weights(positives: np.ndarray, images: int) -> np.ndarray:
    """Each class's negatives over its positives (BCE's pos_weight): a rare class's few positives count as much
    as its many negatives. 1 for a class without positives (never a target), at most MAX_POSITIVE_WEIGHT."""
    positives = np.asarray(positives, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(positives > 0, (images - positives) / positives, 1.0)
    return np.clip(weights, 1.0 / MAX_POSITIVE_WEIGHT, MAX_POSITIVE_WEIGHT)


class LabelVectorMix:
    """MixUp (alpha_mixup) and/or CutMix (alpha_cutmix), one of the two per batch when both are on: each image
    mixed with its neighbour in the batch, and its label vector by the same share."""

    def __init__(self, alpha_mixup: float, alpha_cutmix: float):
        self.alphas = [(kind, alpha) for kind, alpha in (("mixup", alpha_mixup), ("cutmix", alpha_cutmix)) if alpha]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple:
        kind, alpha = self.alphas[int(torch.randint(len(self.alphas), ()))]
        share = float(torch.distributions.Beta(alpha, alpha).sample())
        others, other_targets = images.roll(1, 0), targets.float().roll(1, 0)
        if kind == "mixup":
            return images * share + others * (1 - share), targets.float() * share + other_targets * (1 - share)
        height, width = images.shape[-2:]
        cut_h, cut_w = int(height * (1 - share) ** 0.5), int(width * (1 - share) ** 0.5)
        top, left = int(torch.randint(height - cut_h + 1, ())), int(torch.randint(width - cut_w + 1, ()))
        images = images.clone()
        images[..., top : top + cut_h, left : left + cut_w] = others[..., top : top + cut_h, left : left + cut_w]
        share = 1 - cut_h * cut_w / (height * width)  # the pasted patch's true area
        return images, targets.float() * share + other_targets * (1 - share)


def exact_matches(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Images whose labels at confidence 1/2 are exactly their true ones."""
    return int(((logits > 0) == (targets > 0.5)).all(dim=1).sum())
