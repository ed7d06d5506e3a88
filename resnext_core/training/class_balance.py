"""Imbalanced datasets: images per class, the warnings they call for, and the class weights that the
weighted loss and the balanced sampling share."""
from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

# A class with fewer training images is warned about whatever class_balance is: balancing reweighs the images
# there are, it adds none (docs/performance.md, "Class balance", measures a rare digit's recall).
MIN_TRAIN_IMAGES = 20
# Largest over smallest class from which class_balance is suggested (the same measurements).
IMBALANCE_RATIO = 10
SMALLEST_LOGGED = 3


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


def _listed(class_names: list, counts: list, labels) -> str:
    return ", ".join(f"{class_names[i]} ({counts[i]})" for i in labels)


def smallest_classes_line(class_names: list, counts: list) -> str:
    """The log line naming the classes with the fewest training images."""
    smallest = np.argsort(counts, kind="stable")[:SMALLEST_LOGGED]
    return f"fewest training images: {_listed(class_names, counts, smallest)}"


def imbalance_warnings(class_names: list, counts: list, balancing: bool) -> list:
    """Warnings about small classes (always: balancing adds no information) and about a large size ratio
    (unless balancing already compensates).

    Classes without training images are left out: discover() already warns about them.
    """
    present = [i for i, count in enumerate(counts) if count]
    warnings = []
    if not present:
        return warnings
    few = [i for i in present if counts[i] < MIN_TRAIN_IMAGES]
    if few:
        warnings.append(f"class(es) with fewer than {MIN_TRAIN_IMAGES} training images: "
                        f"{_listed(class_names, counts, few)}: expect low recall on them; more images of them help most")
    largest, smallest = max(present, key=counts.__getitem__), min(present, key=counts.__getitem__)
    ratio = counts[largest] / counts[smallest]
    if not balancing and ratio >= IMBALANCE_RATIO:
        warnings.append(f"imbalanced training set: class {class_names[largest]} has {ratio:.0f}x the images of class "
                        f"{class_names[smallest]} ({counts[largest]} vs {counts[smallest]}): set class_balance to "
                        f"weighted_loss or balanced_sampling")
    return warnings
