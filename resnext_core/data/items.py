"""A dataset's items, (image path, label index), held compactly: the paths one byte buffer relative to a root, the
labels one array. A million items cost their paths' bytes and a few bytes each, and the DataLoader's forked
workers read them without copying them (a Python list of a million tuples is ~150 MB, and every worker that
touches it copies its pages: their reference counts change)."""
from __future__ import annotations

import os

import numpy as np


class ItemList:
    """Sequence of (path, label) pairs; a slice or `take()` is another ItemList.

    root: joined before every stored path (an absolute stored path stays as it is). origin: the label file the
    items come from, whose line numbers `lines` holds; `describe(i)` then names the line beside the path.
    """

    def __init__(self, root: str, relative_paths: list, labels, lines=None, origin: str = ""):
        encoded = [os.fsencode(path) for path in relative_paths]
        self.root = root
        self.origin = origin
        self._buffer = b"".join(encoded)
        self._ends = np.cumsum([len(path) for path in encoded], dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int32).reshape(len(encoded))
        self.lines = None if lines is None else np.asarray(lines, dtype=np.int32)

    @classmethod
    def from_pairs(cls, root: str, pairs) -> ItemList:
        pairs = list(pairs)
        return cls(root, [os.path.relpath(path, root) if root else path for path, _ in pairs],
                   [label for _, label in pairs])

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        end = int(self._ends[index])
        start = int(self._ends[index - 1]) if index > 0 else 0
        relative = os.fsdecode(self._buffer[start:end])
        return os.path.join(self.root, relative) if self.root else relative

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
        return self.path(index), int(self.labels[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, indices) -> ItemList:
        """The items at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        subset = ItemList.__new__(ItemList)
        subset.root, subset.origin = self.root, self.origin
        starts = np.concatenate([[0], self._ends])[indices]
        ends = self._ends[indices]
        subset._buffer = b"".join(self._buffer[s:e] for s, e in zip(starts.tolist(), ends.tolist()))
        subset._ends = np.cumsum(ends - starts, dtype=np.int64)
        subset.labels = self.labels[indices]
        subset.lines = None if self.lines is None else self.lines[indices]
        return subset

    def paths(self) -> list:
        return [self.path(i) for i in range(len(self))]

    @property
    def nbytes(self) -> int:
        """What the items hold in memory, less the object itself."""
        return len(self._buffer) + self._ends.nbytes + self.labels.nbytes + (0 if self.lines is None else self.lines.nbytes)
