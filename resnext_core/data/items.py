"""A dataset's items, (image path, label), held compactly: the paths one byte buffer relative to a root, the labels
one array (a class index an image), or for a multi-label dataset one array of class indices and where each
image's set ends. A million items cost their paths' bytes and a few bytes each, and the DataLoader's forked
workers read them without copying them (a Python list of a million tuples is ~150 MB, and every worker that
touches it copies its pages: their reference counts change)."""
from __future__ import annotations

import os

import numpy as np


class Ragged:
    """Rows of varying length in one flat array: row i is values[ends[i-1]:ends[i]]."""

    def __init__(self, values: np.ndarray, ends: np.ndarray):
        self.values, self.ends = values, ends

    @classmethod
    def of(cls, rows: list, dtype) -> Ragged:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        values = np.frombuffer(b"".join(rows), dtype=np.uint8) if dtype == np.uint8 else \
            np.fromiter((value for row in rows for value in row), dtype=dtype, count=int(lengths.sum()))
        return cls(values, np.cumsum(lengths))

    def row(self, index: int) -> np.ndarray:
        return self.values[(int(self.ends[index - 1]) if index > 0 else 0) : int(self.ends[index])]

    def take(self, indices: np.ndarray) -> Ragged:
        starts = np.concatenate([[0], self.ends])[indices]
        ends = self.ends[indices]
        pieces = [self.values[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
        values = np.concatenate(pieces) if pieces else self.values[:0]
        return Ragged(values, np.cumsum(ends - starts, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.ends.nbytes


class ItemList:
    """Sequence of (path, label) pairs: label a class index, or for a multi-label list a tuple of class indices (an
    image may have none). A slice or `take()` is another ItemList.

    root: joined before every stored path (an absolute stored path stays as it is). origin: the label file the
    items come from, whose line numbers `lines` holds; `describe(i)` then names the line beside the path.
    """

    def __init__(self, root: str, relative_paths: list, labels, lines=None, origin: str = "", multi_label: bool = False):
        self.root = root
        self.origin = origin
        self._paths = Ragged.of([os.fsencode(path) for path in relative_paths], np.uint8)
        self.labels = None if multi_label else np.asarray(labels, dtype=np.int32).reshape(len(relative_paths))
        self.label_sets = Ragged.of([sorted(set(row)) for row in labels], np.int32) if multi_label else None
        self.lines = None if lines is None else np.asarray(lines, dtype=np.int32)

    @property
    def multi_label(self) -> bool:
        return self.label_sets is not None

    def __len__(self) -> int:
        return len(self._paths.ends)

    def path(self, index: int) -> str:
        relative = os.fsdecode(self._paths.row(index).tobytes())
        return os.path.join(self.root, relative) if self.root else relative

    def label(self, index: int):
        """The item's class index, or its tuple of class indices (multi-label)."""
        if self.multi_label:
            return tuple(self.label_sets.row(index).tolist())
        return int(self.labels[index])

    def line_note(self, index: int) -> str:
        """Where a label file lists the item ("labels.csv line 12"); empty for items of class folders."""
        return "" if self.lines is None else f"{os.path.basename(self.origin)} line {int(self.lines[index])}"

    def describe(self, index: int) -> str:
        """The item's path, and its line where it comes from a label file."""
        note = self.line_note(index)
        return f"{self.path(index)} ({note})" if note else self.path(index)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.path(index), self.label(index)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, indices) -> ItemList:
        """The items at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        subset = ItemList.__new__(ItemList)
        subset.root, subset.origin = self.root, self.origin
        subset._paths = self._paths.take(indices)
        subset.labels = None if self.labels is None else self.labels[indices]
        subset.label_sets = None if self.label_sets is None else self.label_sets.take(indices)
        subset.lines = None if self.lines is None else self.lines[indices]
        return subset

    def as_label_sets(self) -> ItemList:
        """The same items as a multi-label list (each single label a set of one)."""
        if self.multi_label:
            return self
        copy = self.take(np.arange(len(self)))
        copy.label_sets, copy.labels = Ragged(self.labels.copy(), np.arange(1, len(self) + 1, dtype=np.int64)), None
        return copy

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Images of each class (an image counts once in each of its classes)."""
        labels = self.label_sets.values if self.multi_label else self.labels
        return np.bincount(labels, minlength=num_classes)

    def targets(self, num_classes: int) -> np.ndarray:
        """The labels as an N x num_classes 0/1 float32 matrix (multi-label scoring)."""
        matrix = np.zeros((len(self), num_classes), dtype=np.float32)
        if self.multi_label:
            rows = np.repeat(np.arange(len(self)), np.diff(np.concatenate([[0], self.label_sets.ends])))
            matrix[rows, self.label_sets.values] = 1.0
        else:
            matrix[np.arange(len(self)), self.labels] = 1.0
        return matrix

    def relabelled(self, mapping: np.ndarray) -> ItemList:
        """The items with each class index i replaced by mapping[i]: a single-label item mapped to -1 is dropped,
        a multi-label item loses its labels mapped to -1 (and keeps its place)."""
        if not self.multi_label:
            known = np.flatnonzero(mapping[self.labels] >= 0)
            subset = self.take(known)
            subset.labels = mapping[subset.labels].astype(np.int32)
            return subset
        subset = self.take(np.arange(len(self)))
        mapped = mapping[self.label_sets.values]
        lengths = np.diff(np.concatenate([[0], self.label_sets.ends]))
        row_of = np.repeat(np.arange(len(self)), lengths)
        kept = mapped >= 0
        subset.label_sets = Ragged(mapped[kept].astype(np.int32),
                                   np.cumsum(np.bincount(row_of[kept], minlength=len(self)), dtype=np.int64))
        return subset

    def paths(self) -> list:
        return [self.path(i) for i in range(len(self))]

    @property
    def nbytes(self) -> int:
        """What the items hold in memory, less the object itself."""
        labels = self.label_sets.nbytes if self.multi_label else self.labels.nbytes
        return self._paths.nbytes + labels + (0 if self.lines is None else self.lines.nbytes)
