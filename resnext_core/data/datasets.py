"""Where a labelled dataset comes from, one entry for each use: a training set (class folders or a label file)
and a test set (the same two). A new input format gets a reader module beside folders.py and label_files.py,
returning a DatasetSplit and a LabelledSet, and a branch here."""
from __future__ import annotations

from ..common.errors import DatasetError
from .folders import discover, labelled_folder
from .label_files import AUTO, is_label_file, label_file_split, labelled_label_file
from .splits import DatasetSplit, LabelledSet


def training_split(dataset_folder: str, label_file: str = "", val_split: float = 0.2, seed: int = 0,
                   multi_label=AUTO) -> DatasetSplit:
    """The training set a run reads: `label_file` where one is given, else the class folders of `dataset_folder`
    (one label an image: multi-label only where multi_label is True)."""
    if label_file:
        return label_file_split(label_file, val_split, seed, multi_label)
    if not dataset_folder:
        raise DatasetError("No dataset given: set dataset_folder or label_file, or connect a dataset folder to the "
                           "task's input")
    split = discover(dataset_folder, val_split, seed)
    return split.as_multi_label() if multi_label is True else split


def labelled_set(source: str) -> LabelledSet:
    """A test set: a label file (its val rows where it splits), or <class>/ or val/<class>/ folders."""
    return labelled_label_file(source) if is_label_file(source) else labelled_folder(source)
