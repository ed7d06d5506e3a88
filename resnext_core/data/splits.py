"""The shapes a labelled dataset takes, whatever it is read from (class folders or a label file): a training set
split into train and val, or a test set; and the rules both readers share (the seeded per-class split, at
least two classes, every class with an image)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from ..common.errors import DatasetError
from .items import ItemList


@dataclass
class DatasetSplit:
    """A training dataset: its classes (label order), its train and val items, the files left out when it was
    listed ([(path, reason)]: names that are no image's) and warnings for the run's log."""

    class_names: list
    train: ItemList
    val: ItemList
    skipped: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    source: str = ""  # the folder or label file it was read from

    @property
    def multi_label(self) -> bool:
        return self.train.multi_label

    def as_multi_label(self) -> DatasetSplit:
        """The same split with each image's label as a set of one (a multi-label model trained on single labels)."""
        return DatasetSplit(self.class_names, self.train.as_label_sets(), self.val.as_label_sets(), self.skipped,
                            self.warnings, self.source)


@dataclass
class LabelledSet:
    """A test set: its class names, its items (label: an index into class_names) and the files left out when it
    was listed."""

    source: str  # the folder the classes were read from (the given one, or its val/), or the label file
    class_names: list
    items: ItemList
    skipped: list = field(default_factory=list)


def check_classes(class_names: list, source: str, none_found: str) -> list:
    """At least two classes; none_found: the error's message where there is none."""
    if not class_names:
        raise DatasetError(none_found)
    if len(class_names) < 2:
        raise DatasetError(f"Only one class ({class_names[0]}) in {source}: classification needs at least 2")
    return class_names


def split_by_class(labels: np.ndarray, class_names: list, val_split: float, seed: int, warnings: list) -> tuple:
    """(train indices, val indices) of items whose labels are `labels`: each class's items shuffled (seeded) and
    val_split of them held out, at least one where a class has two or more and val_split > 0."""
    rng = random.Random(seed)
    train, val = [], []
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(class_names) + 1))
    for label, name in enumerate(class_names):
        members = order[bounds[label] : bounds[label + 1]].tolist()
        rng.shuffle(members)
        count = int(round(len(members) * val_split))
        if len(members) >= 2:
            count = min(max(count, 1 if val_split > 0 else 0), len(members) - 1)
        else:
            count = 0
            if members:
                warnings.append(f"class {name} has 1 image: used for training only")
        val += members[:count]
        train += members[count:]
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


def split_at_random(count: int, val_split: float, seed: int) -> tuple:
    """(train indices, val indices): val_split of `count` images held out, seeded (a multi-label dataset's, whose
    images hold several classes or none)."""
    order = np.random.default_rng(seed).permutation(count)
    held = min(max(int(round(count * val_split)), 1 if val_split > 0 else 0), max(count - 1, 0))
    return np.sort(order[held:]), np.sort(order[:held])


def checked_split(class_names: list, train: ItemList, val: ItemList, source: str, skipped: list,
                  warnings: list) -> DatasetSplit:
    """The split, once every class has an image and validation has one; classes without training images warned."""
    train_counts, val_counts = train.class_counts(len(class_names)), val.class_counts(len(class_names))
    empty = [name for name, t, v in zip(class_names, train_counts, val_counts) if not t and not v]
    if empty:  # (a label file's classes are those it names: never empty)
        raise DatasetError(f"Class(es) with no image file in {source}: {', '.join(empty)}")
    no_train = [name for name, count in zip(class_names, train_counts) if not count]
    if no_train:
        warnings.append(f"class(es) with no training image (cannot be learned): {', '.join(no_train)}")
    if not len(val):
        raise DatasetError(f"No validation image in {source}: add validation images or raise val_split")
    return DatasetSplit(class_names, train, val, skipped, warnings, source)
