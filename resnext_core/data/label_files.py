"""Label files: a dataset listed in a CSV file (a header with `path` and `label` columns) or a JSON Lines file
(one object a line with the same keys), Kaggle-style, instead of a folder per class.

    path,label,split
    images/0001.jpg,cat,train
    /data/extra/0002.jpg,dog,val

Paths are relative to the label file's folder, or absolute. The optional `split` column (`train` or `val`)
chooses the validation images; without it val_split holds out a share of each class, as for class folders.
Other columns are ignored. A line that cannot be used (no path, an empty label, an unknown split, a line that
is not a JSON object) is an error naming its line; a listed file that is missing is met when it is read, and
skipped and named with its line as an unreadable image is.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

from ..common.errors import DatasetError
from .items import ItemList
from .splits import DatasetSplit, LabelledSet, check_classes, checked_split, split_by_class

CSV_SUFFIXES = (".csv", ".tsv")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
LABEL_FILE_SUFFIXES = CSV_SUFFIXES + JSON_LINES_SUFFIXES
PATH, LABEL, SPLIT = "path", "label", "split"
SPLITS = ("train", "val")
ERRORS_SHOWN = 10  # bad lines named in the error; the rest are counted
PATHS_PROBED = 200  # listed paths checked at start: where none exists, the paths' root is wrong


def is_label_file(path: str) -> bool:
    return path.lower().endswith(LABEL_FILE_SUFFIXES) and os.path.isfile(path)


@dataclass
class LabelFile:
    """A label file read and checked: its rows' paths (relative to its folder), label names, line numbers and
    splits (None: the file has no split column)."""

    path: str
    paths: list
    labels: list
    lines: list
    splits: list | None

    @property
    def folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def items(self, class_names: list) -> ItemList:
        index = {name: i for i, name in enumerate(class_names)}
        return ItemList(self.folder, self.paths, [index[label] for label in self.labels], self.lines, self.path)


class _BadLines:
    """The bad lines met while reading, reported together."""

    def __init__(self, path: str):
        self.path, self.found, self.count = path, [], 0

    def add(self, line: int, problem: str) -> None:
        self.count += 1
        if len(self.found) < ERRORS_SHOWN:
            self.found.append((line, problem))

    def raise_if_any(self) -> None:
        if self.count:
            shown = "; ".join(f"line {line}: {problem}" for line, problem in sorted(self.found))
            more = f"; and {self.count - len(self.found)} more" if self.count > len(self.found) else ""
            raise DatasetError(f"Label file {self.path}: {self.count} bad line(s): {shown}{more}")


def read_label_file(path: str) -> LabelFile:
    """The rows of a CSV or JSON Lines label file; a DatasetError names every bad line (the first ERRORS_SHOWN)."""
    if not os.path.isfile(path):
        raise DatasetError(f"Label file not found: {path}")
    if not path.lower().endswith(LABEL_FILE_SUFFIXES):
        raise DatasetError(f"Label file {path}: expected a {', '.join(LABEL_FILE_SUFFIXES)} file")
    bad = _BadLines(path)
    rows = _json_lines_rows(path, bad) if path.lower().endswith(JSON_LINES_SUFFIXES) else _csv_rows(path, bad)
    label_file = LabelFile(path, [], [], [], None)
    has_split = None
    for line, record in rows:
        has_split = SPLIT in record if has_split is None else has_split
        problem = _row_problem(record, has_split)
        if problem:
            bad.add(line, problem)
            continue
        label_file.paths.append(record[PATH].strip())
        label_file.labels.append(record[LABEL].strip())
        label_file.lines.append(line)
        if has_split:
            label_file.splits = label_file.splits or []
            label_file.splits.append(record[SPLIT].strip().lower())
    _check_duplicates(label_file, bad)
    bad.raise_if_any()
    if not label_file.paths:
        raise DatasetError(f"Label file {path} lists no image")
    _check_paths_exist(label_file)
    return label_file


def _csv_rows(path: str, bad: _BadLines):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.lower().endswith(".tsv") else ",")
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        if PATH not in columns or LABEL not in columns:
            raise DatasetError(f"Label file {path}: its first line must name the columns, with '{PATH}' and "
                               f"'{LABEL}' among them (and optionally '{SPLIT}'); got {', '.join(columns) or 'nothing'}")
        reader.fieldnames = columns
        for record in reader:
            yield reader.line_num, {key: value if value is not None else "" for key, value in record.items() if key}


def _json_lines_rows(path: str, bad: _BadLines):
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                bad.add(line, f"not JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                bad.add(line, f"not a JSON object with '{PATH}' and '{LABEL}'")
                continue
            yield line, {str(key).lower(): value for key, value in record.items()}


def _row_problem(record: dict, has_split: bool) -> str | None:
    """What makes a row unusable, or None."""
    for key in (PATH, LABEL):
        value = record.get(key)
        if not isinstance(value, str):
            return f"no {key}" if value in (None, "") else f"{key} must be text, got {json.dumps(value)}"
        if not value.strip():
            return f"empty {key}"
    if has_split != (SPLIT in record):
        return f"'{SPLIT}' given on some lines only"
    if has_split and str(record[SPLIT]).strip().lower() not in SPLITS:
        return f"unknown split '{record[SPLIT]}' (expected {' or '.join(SPLITS)})"
    return None


def _check_duplicates(label_file: LabelFile, bad: _BadLines) -> None:
    """A path listed twice is a bad line: its labels would compete (hashes first, so a million paths cost an array)."""
    hashes = np.fromiter((hash(path) for path in label_file.paths), dtype=np.int64, count=len(label_file.paths))
    order = np.argsort(hashes, kind="stable")
    same_hash = hashes[order[1:]] == hashes[order[:-1]]
    candidates = {label_file.paths[i] for i in np.concatenate([order[1:][same_hash], order[:-1][same_hash]]).tolist()}
    first_line = {}
    for path, line in zip(label_file.paths, label_file.lines):
        if path not in candidates:
            continue
        if path in first_line:
            bad.add(line, f"{path} is listed already, on line {first_line[path]}")
        else:
            first_line[path] = line


def _check_paths_exist(label_file: LabelFile) -> None:
    """Where none of a spread of the listed paths exists, the paths' root is wrong: said at once, not as a
    run of unreadable images."""
    step = max(1, len(label_file.paths) // PATHS_PROBED)
    probed = list(zip(label_file.paths[::step], label_file.lines[::step]))
    if not any(os.path.exists(os.path.join(label_file.folder, path)) for path, _ in probed):
        path, line = probed[0]
        raise DatasetError(f"Label file {label_file.path}: none of the {len(probed)} listed files checked exists "
                           f"(line {line}: {os.path.join(label_file.folder, path)}): relative paths are read from the "
                           f"label file's folder, {label_file.folder}")


def _class_names(label_file: LabelFile) -> list:
    return check_classes(sorted(set(label_file.labels)), label_file.path, f"Label file {label_file.path} lists no label")


def label_file_split(path: str, val_split: float = 0.2, seed: int = 0) -> DatasetSplit:
    """A training dataset from a label file: its split column, else val_split of each class held out (seeded)."""
    label_file = read_label_file(path)
    class_names = _class_names(label_file)
    items, warnings = label_file.items(class_names), []
    if label_file.splits is not None:
        splits = np.asarray(label_file.splits)
        train, val = items.take(np.flatnonzero(splits == "train")), items.take(np.flatnonzero(splits == "val"))
    else:
        train_indices, val_indices = split_by_class(items.labels, class_names, val_split, seed, warnings)
        train, val = items.take(train_indices), items.take(val_indices)
    return checked_split(class_names, train, val, path, [], warnings)


def labelled_label_file(path: str) -> LabelledSet:
    """A test set from a label file: its val rows where it has a split column, else every row."""
    label_file = read_label_file(path)
    class_names = _class_names(label_file)
    items = label_file.items(class_names)
    if label_file.splits is not None and "val" in label_file.splits:
        items = items.take(np.flatnonzero(np.asarray(label_file.splits) == "val"))
    return LabelledSet(path, class_names, items, [])
