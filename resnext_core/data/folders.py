"""Class-folder datasets (a folder per class): train/<class>/ + val/<class>/, or flat <class>/ folders split by
val_split; test sets of <class>/ or val/<class>/ folders. Listing reads names only: a file is opened when the
images are read (loading.py), where an unreadable one is met, skipped and named."""
from __future__ import annotations

import os

from ..common.errors import DatasetError
from .decode import is_image_file
from .items import ItemList
from .splits import DatasetSplit, LabelledSet, check_classes, checked_split, split_by_class

NOT_AN_IMAGE = "not an image file (by its extension)"
NO_CLASSES = "No class folders in {}: expected <class>/ folders of images, or train/<class>/ and val/<class>/"


def class_folders(folder: str) -> list:
    if not os.path.isdir(folder):
        return []
    return sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))


def list_classes(folder: str, class_names: list, skipped: list) -> ItemList:
    """The image files of the class folders present under `folder` (label: the index in class_names), in class
    order, each class's files in the order of a sorted walk; other files go to `skipped`."""
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        for root, dirs, files in os.walk(class_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            relative_root = os.path.relpath(root, folder)
            for filename in sorted(files):
                if filename.startswith("."):
                    continue
                if is_image_file(filename):
                    paths.append(os.path.join(relative_root, filename))
                    labels.append(label)
                else:
                    skipped.append((os.path.join(root, filename), NOT_AN_IMAGE))
    return ItemList(folder, paths, labels)


def discover(folder: str, val_split: float = 0.2, seed: int = 0) -> DatasetSplit:
    """train/<class>/ + val/<class>/, or flat <class>/ folders split by val_split (per class, seeded)."""
    if not os.path.isdir(folder):
        raise DatasetError(f"Dataset folder not found: {folder}")
    skipped, warnings = [], []
    train_dir, val_dir = os.path.join(folder, "train"), os.path.join(folder, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        train_classes, val_classes = class_folders(train_dir), class_folders(val_dir)
        class_names = sorted(set(train_classes) | set(val_classes))
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            warnings.append(
                f"train and val have different classes (using their union): only in train: "
                f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}"
            )
        check_classes(class_names, folder, NO_CLASSES.format(folder))
        train = list_classes(train_dir, class_names, skipped)
        val = list_classes(val_dir, class_names, skipped)
    else:
        class_names = check_classes(class_folders(folder), folder, NO_CLASSES.format(folder))
        items = list_classes(folder, class_names, skipped)
        train_indices, val_indices = split_by_class(items.labels, class_names, val_split, seed, warnings)
        train, val = items.take(train_indices), items.take(val_indices)
    return checked_split(class_names, train, val, folder, skipped, warnings)


def labelled_folder(folder: str) -> LabelledSet:
    """<class>/ folders of images, or those of its val/ where it has one (a training dataset's held-out part)."""
    if not folder or not os.path.isdir(folder):
        raise DatasetError(f"Test folder not found: {folder!r}: expected <class>/ or val/<class>/ folders of images")
    val = os.path.join(folder, "val")
    source = val if class_folders(val) else folder
    class_names = class_folders(source)
    if not class_names:
        raise DatasetError(f"No class folders in {folder}: expected <class>/ or val/<class>/ folders of images")
    skipped = []
    items = list_classes(source, class_names, skipped)
    if not len(items):
        raise DatasetError(f"No image file in the class folders of {source}")
    return LabelledSet(source, class_names, items, skipped)
