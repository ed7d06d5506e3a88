"""The bulk prediction's output: one row per image or video frame (path, frame, top-k classes and confidences, or
the error that kept it from being classified), as CSV, JSON Lines or Parquet (by the output's extension).

While a run goes, each process appends its rows to its own part file (<output>.parts/rank-N.jsonl), flushed and
synced after every batch: a killed run loses no finished row, and a rerun skips every row the output and the
parts already hold. When every process is done, the first merges the parts and the previous output into the
output, in the sources' order, written atomically, and removes the parts.
"""
from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import shutil

from ..common.errors import ConfigError
from ..common.files import atomic_path

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
FIXED_COLUMNS = ("path", "frame", "error")


def output_format(path: str) -> str:
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise ConfigError(f"output {path}: expected a file ending in {', '.join(FORMATS)}")
    if kind == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(f"output {path}: Parquet needs pyarrow (pip install pyarrow); or write .csv or .jsonl")
    return kind


def row(path: str, frame, classes=(), confidences=(), error=None) -> dict:
    return {"path": path, "frame": frame, "classes": list(classes), "confidences": list(confidences), "error": error}


def key_of(row: dict) -> tuple:
    return row["path"], row["frame"]


class ResultsFile:
    """The output `path` of a run in which this process is rank `rank`."""

    def __init__(self, path: str, rank: int = 0):
        self.path = path
        self.kind = output_format(path)
        self.parts = path + ".parts"
        self.part = os.path.join(self.parts, f"rank-{rank}.jsonl")
        self._handle = None

    def rows(self) -> dict:
        """key -> row of everything written so far: the output, then the parts (a later row wins)."""
        found = {key_of(r): r for r in _read(self.path, self.kind)} if os.path.isfile(self.path) else {}
        for part in sorted(glob.glob(os.path.join(self.parts, "rank-*.jsonl"))):
            found.update((key_of(r), r) for r in _read_jsonl(part))
        return found

    def append(self, rows: list) -> None:
        """`rows` on disk when this returns (flushed and synced)."""
        if self._handle is None:
            os.makedirs(self.parts, exist_ok=True)
            _cut_torn_line(self.part)
            self._handle = open(self.part, "a", encoding="utf-8")
        self._handle.writelines(json.dumps(r) + "\n" for r in rows)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def merge(self, order: dict) -> int:
        """The output rewritten with every row, those of `order`'s paths first in its order (path -> position),
        then any others by path; the parts removed. Returns the row count."""
        self.close()
        rows = sorted(self.rows().values(), key=lambda r: (order.get(r["path"], len(order)), r["path"],
                                                           -1 if r["frame"] is None else r["frame"]))
        with atomic_path(self.path, os.path.splitext(self.path)[1]) as tmp:
            _WRITERS[self.kind](rows, tmp)
        shutil.rmtree(self.parts, ignore_errors=True)
        return len(rows)


def _cut_torn_line(path: str) -> None:
    """A process killed while appending leaves half a line: cut it, so that the next row starts a line of its own."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _read_jsonl(path: str) -> list:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except ValueError:  # the torn last line of a killed run
                continue
    return rows


def _read(path: str, kind: str) -> list:
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "parquet":
        import pyarrow.parquet

        return pyarrow.parquet.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as handle:
        return [_from_csv(record) for record in csv.DictReader(handle)]


def _from_csv(record: dict) -> dict:
    ranks = range(1, 1 + sum(1 for name in record if name.startswith("class_")))
    classes = [record[f"class_{k}"] for k in ranks if record[f"class_{k}"]]
    return row(record["path"], int(record["frame"]) if record["frame"] else None, classes,
               [float(record[f"confidence_{k}"]) for k in ranks if record[f"class_{k}"]], record["error"] or None)


def _write_csv(rows: list, path: str) -> None:
    width = max((len(r["classes"]) for r in rows), default=0)
    columns = [*FIXED_COLUMNS] + [f"{kind}_{k}" for k in range(1, width + 1) for kind in ("class", "confidence")]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in rows:
            ranked = [value for pair in zip(r["classes"], (f"{c:.8g}" for c in r["confidences"])) for value in pair]
            writer.writerow([r["path"], "" if r["frame"] is None else r["frame"], r["error"] or "",
                             *ranked, *[""] * (2 * width - len(ranked))])


def _write_jsonl(rows: list, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)


def _write_parquet(rows: list, path: str) -> None:
    import pyarrow
    import pyarrow.parquet

    schema = pyarrow.schema([("path", pyarrow.string()), ("frame", pyarrow.int64()),
                             ("classes", pyarrow.list_(pyarrow.string())), ("confidences", pyarrow.list_(pyarrow.float64())),
                             ("error", pyarrow.string())])
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows, schema=schema), path)


_WRITERS = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}
