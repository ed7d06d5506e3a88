"""Image-folder datasets (a folder per class): discovery, the seeded validation split, and (path, label) items
read as model input. The trainer reads its dataset with them, the evaluation its test folder."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field

import torch

from .errors import DatasetError
from .images import read_image, unreadable_reason

logger = logging.getLogger(__name__)


@dataclass
class DatasetSplit:
    class_names: list
    train: list  # [(path, label), ...]
    val: list
    skipped: list = field(default_factory=list)  # [(path, reason), ...]
    warnings: list = field(default_factory=list)


def _class_folders(folder: str) -> list:
    if not os.path.isdir(folder):
        return []
    return sorted(
        d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _scan(folder: str, class_names: list, skipped: list) -> dict:
    """{class_name: [image paths]} for the class folders present under `folder`."""
    found = {}
    for name in class_names:
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue
        paths = []
        for root, dirs, files in os.walk(class_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for filename in sorted(files):
                if filename.startswith("."):
                    continue
                path = os.path.join(root, filename)
                reason = unreadable_reason(path)
                if reason:
                    skipped.append((path, reason))
                else:
                    paths.append(path)
        found[name] = paths
    return found


def discover(folder: str, val_split: float = 0.2, seed: int = 0) -> DatasetSplit:
    """train/<class>/ + val/<class>/, or flat <class>/ folders split by val_split (per class, seeded)."""
    if not folder:
        raise DatasetError("No dataset given: set dataset_folder, or connect a dataset folder to the task's input")
    if not os.path.isdir(folder):
        raise DatasetError(f"Dataset folder not found: {folder}")
    skipped, warnings = [], []
    train_dir, val_dir = os.path.join(folder, "train"), os.path.join(folder, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        train_classes, val_classes = _class_folders(train_dir), _class_folders(val_dir)
        class_names = sorted(set(train_classes) | set(val_classes))
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            warnings.append(
                f"train and val have different classes (using their union): only in train: "
                f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}"
            )
        _check_classes(class_names, folder)
        train_paths = _scan(train_dir, class_names, skipped)
        val_paths = _scan(val_dir, class_names, skipped)
    else:
        class_names = _check_classes(_class_folders(folder), folder)
        train_paths, val_paths = _split(_scan(folder, class_names, skipped), val_split, seed, warnings)
    empty = [n for n in class_names if not train_paths.get(n) and not val_paths.get(n)]
    if empty:
        raise DatasetError(f"Class folder(s) with no readable image in {folder}: {', '.join(empty)}")
    no_train = [n for n in class_names if not train_paths.get(n)]
    if no_train:
        warnings.append(f"class(es) with no training image (cannot be learned): {', '.join(no_train)}")
    label = {name: i for i, name in enumerate(class_names)}
    train = [(p, label[n]) for n in class_names for p in train_paths.get(n, [])]
    val = [(p, label[n]) for n in class_names for p in val_paths.get(n, [])]
    if not val:
        raise DatasetError(f"No validation image in {folder}: add a val/ folder or raise val_split")
    for path, reason in skipped:
        logger.warning("skipped %s: %s", path, reason)
    return DatasetSplit(class_names, train, val, skipped, warnings)


@dataclass
class LabelledFolder:
    """A test set: its class names (folder names) and its images as (path, class name)."""

    folder: str  # the folder the classes were read from (the given one, or its val/)
    class_names: list
    items: list  # [(path, class name), ...]
    skipped: list = field(default_factory=list)  # [(path, reason), ...]


def labelled_folder(folder: str) -> LabelledFolder:
    """<class>/ folders of images, or those of its val/ where it has one (a training dataset's held-out part)."""
    if not folder or not os.path.isdir(folder):
        raise DatasetError(f"Test folder not found: {folder!r}: expected <class>/ or val/<class>/ folders of images")
    val = os.path.join(folder, "val")
    source = val if _class_folders(val) else folder
    class_names = _class_folders(source)
    if not class_names:
        raise DatasetError(f"No class folders in {folder}: expected <class>/ or val/<class>/ folders of images")
    skipped = []
    found = _scan(source, class_names, skipped)
    items = [(path, name) for name in class_names for path in found[name]]
    if not items:
        raise DatasetError(f"No readable image in the class folders of {source}")
    return LabelledFolder(source, class_names, items, skipped)


def _check_classes(class_names: list, folder: str) -> list:
    if not class_names:
        raise DatasetError(f"No class folders in {folder}: expected <class>/ or train/<class>/ and val/<class>/")
    if len(class_names) < 2:
        raise DatasetError(f"Only one class ({class_names[0]}) in {folder}: classification needs at least 2")
    return class_names


def _split(paths: dict, val_split: float, seed: int, warnings: list):
    rng = random.Random(seed)
    train, val = {}, {}
    for name, items in paths.items():
        items = list(items)
        rng.shuffle(items)
        count = int(round(len(items) * val_split))
        if len(items) >= 2:
            count = min(max(count, 1 if val_split > 0 else 0), len(items) - 1)
        else:
            count = 0
            if items:
                warnings.append(f"class {name} has 1 image: used for training only")
        val[name], train[name] = items[:count], items[count:]
    return train, val


class ImageDataset(torch.utils.data.Dataset):
    """(path, label) items -> (normalised tensor, label)."""

    def __init__(self, items: list, transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        return self.transform(read_image(path)), label


