"""Reading a dataset's images for torch's DataLoader, where broken files are met: a file that cannot be decoded
never ends a run. It is skipped, and reported with the batch it would have been in (its path, its label
file's line, why), so that the caller can name it and count it.

Training batches stay whole: an unreadable training image is replaced by the next readable item of the list,
so every batch, and every DDP rank's shard of it, keeps its size and the ranks stay in step. An evaluated
image (validation, test sets) is never replaced: its slot is marked unread and left out of the scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common.errors import DatasetError, UnreadableImageError
from .decode import FULL, PixelsNeeded, read_image
from .items import ItemList

MAX_REPLACEMENTS = 64  # consecutive unreadable items before the dataset is declared broken


@dataclass
class Unreadable:
    """A file skipped because it could not be read, why, and where a label file lists it ("labels.csv line 12")."""

    path: str
    reason: str
    line_note: str = ""

    @property
    def where(self) -> str:
        return f"{self.path} ({self.line_note})" if self.line_note else self.path


@dataclass
class LoadedBatch:
    """What the loaders deliver: the images, their labels, which slots hold a read image (False: an evaluated
    image that could not be read, a blank in its place), and the files skipped while reading the batch."""

    images: torch.Tensor
    labels: torch.Tensor
    read: torch.Tensor
    unreadable: list


class ItemImages(torch.utils.data.Dataset):
    """(path, label) items -> (transformed image, label, read, unreadable files met); a multi-label item's label as
    a 0/1 float vector of num_classes.

    replace_unreadable: training's rule (the next readable item instead), else evaluation's (a blank of
    `blank_size`, marked unread). Each copy of the dataset (one per loader worker) remembers the items it found
    unreadable and does not decode them again.
    """

    def __init__(self, items: ItemList, transform, needed: PixelsNeeded = FULL, replace_unreadable: bool = False,
                 blank_size: int = 0, num_classes: int = 0):
        self.items = items
        self.transform = transform
        self.needed = needed
        self.replace_unreadable = replace_unreadable
        self.blank_size = blank_size
        self.num_classes = num_classes
        self.known_unreadable = set()

    def _label(self, index: int):
        label = self.items.label(index)
        if not self.items.multi_label:
            return label
        vector = torch.zeros(self.num_classes)
        vector[list(label)] = 1.0
        return vector

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        met = []
        for attempt in range(MAX_REPLACEMENTS if self.replace_unreadable else 1):
            current = (index + attempt) % len(self.items)
            if current in self.known_unreadable:
                continue
            path = self.items.path(current)
            try:
                image = read_image(path, self.needed)
            except UnreadableImageError as exc:
                self.known_unreadable.add(current)
                met.append(Unreadable(path, exc.reason, self.items.line_note(current)))
                continue
            return self.transform(image), self._label(current), True, met
        if not self.replace_unreadable:
            return torch.zeros(3, self.blank_size, self.blank_size), self._label(index), False, met
        raise DatasetError(f"{MAX_REPLACEMENTS} unreadable images in a row from {self.items.describe(index)} on: "
                           f"{met[0].reason if met else 'already found unreadable'}")


def collate(samples: list) -> LoadedBatch:
    images, labels, read, met = zip(*samples)
    labels = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.as_tensor(labels)
    return LoadedBatch(torch.stack(images), labels, torch.as_tensor(read), [entry for entries in met for entry in entries])


class UnreadableFiles:
    """The files a run found unreadable, each once, in the order met; limit: the largest share of `listed`
    images that may be unreadable before the run stops with an error."""

    def __init__(self, listed: int, limit: float):
        self.listed, self.limit = listed, limit
        self.found = {}  # path -> Unreadable

    def add(self, entries) -> list:
        """Records `entries`; returns those not met before."""
        new = [entry for entry in entries if entry.path not in self.found]
        for entry in new:
            self.found.setdefault(entry.path, entry)
        return new

    def __len__(self) -> int:
        return len(self.found)

    @property
    def over_limit(self) -> bool:
        return len(self.found) > self.limit * self.listed

    def error(self) -> DatasetError:
        examples = "; ".join(f"{entry.where}: {entry.reason}" for entry in list(self.found.values())[:3])
        return DatasetError(f"{len(self.found)} of the {self.listed} images are unreadable, more than unreadable_limit "
                            f"({self.limit:g}) allows: the dataset is damaged (e.g. {examples}). Repair or remove "
                            "the files, or raise unreadable_limit to train on the rest")
