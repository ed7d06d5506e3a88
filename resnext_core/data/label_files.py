"""Label files: a dataset listed in a CSV file (a header with `path` and `label` columns) or a JSON Lines file
(one object a line with the same keys), Kaggle-style, instead of a folder per class.

    path,label,split
    images/0001.jpg,cat,train
    /data/extra/0002.jpg,dog,val

Several labels an image (a multi-label dataset): a `labels` column instead, class names separated by `;` (in
JSON Lines, a list), none for an image that shows none of the classes:

    path,labels
    images/0001.jpg,cat;dog
    images/0002.jpg,

Paths are relative to the label file's folder, or absolute. The optional `split` column (`train` or `val`)
chooses the validation images; without it val_split holds out a share of each class (of the images, for a
multi-label file), as for class folders. Other columns are ignored. A line that cannot be used (no path, an
empty label, an unknown split, a line that is not a JSON object) is an error naming its line; a listed file that
is missing is met when it is read, and skipped and named with its line as an unreadable image is.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

from ..common.errors import DatasetError
from .items import ItemList
from .splits import DatasetSplit, LabelledSet, check_classes, checked_split, split_at_random, split_by_class

CSV_SUFFIXES = (".csv", ".tsv")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
LABEL_FILE_SUFFIXES = CSV_SUFFIXES + JSON_LINES_SUFFIXES
PATH, LABEL, LABELS, SPLIT = "path", "label", "labels", "split"
LABEL_SEPARATOR = ";"
AUTO = "auto"  # multi_label's: a labels column, or a row with other than one label, makes a file multi-label
SPLITS = ("train", "val")
ERRORS_SHOWN = 10  # bad lines named in the error; the rest are counted
PATHS_PROBED = 200  # listed paths checked at start: where none exists, the paths' root is wrong


def is_label_file(path: str) -> bool:
    return path.lower().endswith(LABEL_FILE_SUFFIXES) and os.path.isfile(path)


@dataclass
class LabelFile:
    """A label file read and checked: its rows' paths (relative to its folder), label names (a list a row), line
    numbers and splits (None: the file has no split column), and whether it is multi-label."""

    path: str
    paths: list
    labels: list
    lines: list
    splits: list | None
    multi_label: bool = False

    @property
    def folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def class_names(self) -> list:
        names = sorted({name for row in self.labels for name in row})
        return check_classes(names, self.path, f"Label file {self.path} lists no label")

    def items(self, class_names: list) -> ItemList:
        index = {name: i for i, name in enumerate(class_names)}
        labels = [[index[name] for name in row] for row in self.labels]
        return ItemList(self.folder, self.paths, labels if self.multi_label else [row[0] for row in labels], self.lines,
                        self.path, self.multi_label)


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


def read_label_file(path: str, multi_label=AUTO) -> LabelFile:
    """The rows of a CSV or JSON Lines label file; a DatasetError names every bad line (the first ERRORS_SHOWN).

    multi_label: AUTO (multi-label where the file has a `labels` column, or a row with no label or several),
    True, or False (every row must then hold exactly one label)."""
    if not os.path.isfile(path):
        raise DatasetError(f"Label file not found: {path}")
    if not path.lower().endswith(LABEL_FILE_SUFFIXES):
        raise DatasetError(f"Label file {path}: expected a {', '.join(LABEL_FILE_SUFFIXES)} file")
    bad = _BadLines(path)
    rows = _json_lines_rows(path, bad) if path.lower().endswith(JSON_LINES_SUFFIXES) else _csv_rows(path, bad)
    label_file = LabelFile(path, [], [], [], None)
    has_split, has_labels = None, False
    for line, record in rows:
        has_split = SPLIT in record if has_split is None else has_split
        has_labels |= LABELS in record
        names, problem = _row_labels(record)
        problem = problem or _row_problem(record, has_split)
        if problem:
            bad.add(line, problem)
            continue
        label_file.paths.append(record[PATH].strip())
        label_file.labels.append(names)
        label_file.lines.append(line)
        if has_split:
            label_file.splits = label_file.splits or []
            label_file.splits.append(record[SPLIT].strip().lower())
    label_file.multi_label = _is_multi_label(label_file, has_labels, multi_label, bad)
    _check_duplicates(label_file, bad)
    bad.raise_if_any()
    if not label_file.paths:
        raise DatasetError(f"Label file {path} lists no image")
    _check_paths_exist(label_file)
    return label_file


def _row_labels(record: dict) -> tuple:
    """(the row's class names, a problem or None): `labels` split on ';' (or a JSON list), else `label` whole."""
    if LABELS in record:
        value = record[LABELS]
        if isinstance(value, str):
            value = value.split(LABEL_SEPARATOR)
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            return [], f"labels must be text or a list of text, got {json.dumps(value)}"
        return list(dict.fromkeys(name.strip() for name in value if name.strip())), None
    value = record.get(LABEL)
    if isinstance(value, list) and all(isinstance(name, str) and name.strip() for name in value):
        return list(dict.fromkeys(name.strip() for name in value)), None
    if not isinstance(value, str):
        return [], f"no {LABEL}" if value in (None, "") else f"{LABEL} must be text, got {json.dumps(value)}"
    return ([value.strip()], None) if value.strip() else ([], f"empty {LABEL}")


def _is_multi_label(label_file: LabelFile, has_labels: bool, multi_label, bad: _BadLines) -> bool:
    """Whether the file is read as multi-label; with multi_label False, a row with other than one label is bad."""
    if multi_label == AUTO:
        return has_labels or any(len(row) != 1 for row in label_file.labels)
    if not multi_label:
        for row, line in zip(label_file.labels, label_file.lines):
            if len(row) != 1:
                bad.add(line, f"{len(row)} labels, and multi_label is False")
    return bool(multi_label)


def _csv_rows(path: str, bad: _BadLines):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.lower().endswith(".tsv") else ",")
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        if PATH not in columns or (LABEL not in columns and LABELS not in columns):
            raise DatasetError(f"Label file {path}: its first line must name the columns, with '{PATH}' and "
                               f"'{LABEL}' (or '{LABELS}', several a line) among them, and optionally '{SPLIT}'; got "
                               f"{', '.join(columns) or 'nothing'}")
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
    """What makes a row's path or split unusable, or None."""
    value = record.get(PATH)
    if not isinstance(value, str):
        return f"no {PATH}" if value in (None, "") else f"{PATH} must be text, got {json.dumps(value)}"
    if not value.strip():
        return f"empty {PATH}"
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


def label_file_split(path: str, val_split: float = 0.2, seed: int = 0, multi_label=AUTO) -> DatasetSplit:
    """A training dataset from a label file: its split column, else val_split of each class held out (of the
    images, for a multi-label file), seeded."""
    label_file = read_label_file(path, multi_label)
    class_names = label_file.class_names
    items, warnings = label_file.items(class_names), []
    if label_file.splits is not None:
        splits = np.asarray(label_file.splits)
        train, val = items.take(np.flatnonzero(splits == "train")), items.take(np.flatnonzero(splits == "val"))
    else:
        if items.multi_label:
            train_indices, val_indices = split_at_random(len(items), val_split, seed)
        else:
            train_indices, val_indices = split_by_class(items.labels, class_names, val_split, seed, warnings)
        train, val = items.take(train_indices), items.take(val_indices)
    return checked_split(class_names, train, val, path, [], warnings)


def labelled_label_file(path: str) -> LabelledSet:
    """A test set from a label file: its val rows where it has a split column, else every row."""
    label_file = read_label_file(path)
    class_names = label_file.class_names
    items = label_file.items(class_names)
    if label_file.splits is not None and "val" in label_file.splits:
        items = items.take(np.flatnonzero(np.asarray(label_file.splits) == "val"))
    return LabelledSet(path, class_names, items, [])
