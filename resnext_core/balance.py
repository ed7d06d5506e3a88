"""Imbalanced datasets: the class weights that the weighted loss and the balanced sampling share."""
from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight


def balanced_class_weights(labels, num_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weight of each label (n_images / (n_classes * n_images_of_label)).

    A class without training images never appears as a target, so its weight is never used: it gets 1
    (scikit-learn refuses classes absent from the labels).
    """
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def image_sampling_weights(labels, num_classes: int) -> np.ndarray:
    """Each image's weight for balanced sampling: its class's balanced weight, so every class is drawn
    about equally often whatever its size."""
    return balanced_class_weights(labels, num_classes)[np.asarray(labels, dtype=np.int64)]
