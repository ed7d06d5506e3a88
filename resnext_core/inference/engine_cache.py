"""The CPU engines' on-disk cache: each model exported (and converted, quantized) once, reused by every process.

An entry is named by the SHA-256 of its facts: what decides its files (the weights: the ImageNet file's
name or the SHA-256 of a user's checkpoint; the input size; the engine; for int8 the quantization sample's
hash; the versions of the libraries that wrote it; CACHE_FORMAT). It is its files, `<key><suffix>`, and
a record `<key>.json` holding the facts and each file's SHA-256. The files are written into a temporary
folder and moved in, the record last: a reader never trusts files without their record. An entry whose
hashes do not match, or that its engine refuses, is rebuilt, never used.

Entries: the ONNX file (every engine starts from it; ONNX Runtime runs it as it is), and OpenVINO's
model (.xml graph + .bin weights) converted from it, in fp32 or quantized to int8 by NNCF.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading

import torch

from ..common.files import atomic_write_text, file_sha256

CACHE_FORMAT = 2  # bump when an entry's files change (2: records hash several files; OpenVINO entries)
# Entries kept, the least recently used removed first: an entry holds a whole model (int8 a quarter of fp32's
# bytes), and every training run makes new weights.
CACHE_ENTRIES = max(1, int(os.environ.get("RESNEXT_ONNX_CACHE_ENTRIES", "8")))
RECORD = ".json"

log = logging.getLogger(__name__)


def default_cache_folder() -> str:
    """Beside torch's own downloads ($TORCH_HOME/hub): one place to clear, shared by every process."""
    return os.path.join(torch.hub.get_dir(), "resnext_onnx")


class EngineCache:
    """Hash-checked entries on disk; `entry()` opens one, building it first where missing or corrupt."""

    def __init__(self, folder: str | None = None):
        self.folder = folder
        # One build at a time in a process (each takes GBs and seconds); reentrant: an OpenVINO entry
        # is built from the ONNX entry, which may have to be built first.
        self._lock = threading.RLock()

    @staticmethod
    def key(facts: dict) -> str:
        return hashlib.sha256(json.dumps({**facts, "format": CACHE_FORMAT}, sort_keys=True).encode()).hexdigest()[:32]

    def paths(self, facts: dict, suffixes: tuple) -> dict:
        """suffix -> path of each file of the entry named by `facts`, and RECORD -> its record's path."""
        stem = os.path.join(self.folder or default_cache_folder(), self.key(facts))
        return {suffix: stem + suffix for suffix in (*suffixes, RECORD)}

    def entry(self, facts: dict, suffixes: tuple, write, open_):
        """open_(paths) of the entry; on a miss write(paths), given temporary paths, builds its files first."""
        paths = self.paths(facts, suffixes)
        with self._lock:
            opened = self._open(paths, open_)
            if opened is None:  # just written and hashed: opened as it is, not hashed again
                self._write(paths, facts, write)
                opened = open_(paths)
        return opened

    @staticmethod
    def _open(paths: dict, open_):
        record_path = paths[RECORD]
        try:
            with open(record_path, encoding="utf-8") as handle:
                expected = json.load(handle)["sha256"]
            for suffix, path in paths.items():
                if suffix != RECORD and file_sha256(path) != expected[suffix]:
                    log.warning("engine cache entry %s is corrupt (hash mismatch): rebuilding it", path)
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable entry: rebuilt
        try:
            opened = open_(paths)
        except Exception as exc:  # the engines raise their own exception types
            log.warning("engine cache entry %s does not load (%s): rebuilding it", record_path, exc)
            return None
        os.utime(record_path)  # recently used: pruned last
        return opened

    def _write(self, paths: dict, facts: dict, write) -> None:
        folder = os.path.dirname(paths[RECORD])
        os.makedirs(folder, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
        try:
            staged = {suffix: os.path.join(staging, os.path.basename(path)) for suffix, path in paths.items()}
            write(staged)
            hashes = {}
            for suffix, path in paths.items():
                if suffix != RECORD:
                    with open(staged[suffix], "rb") as handle:
                        os.fsync(handle.fileno())
                    os.replace(staged[suffix], path)
                    hashes[suffix] = file_sha256(path)
            atomic_write_text(json.dumps({**facts, "sha256": hashes}, indent=1), paths[RECORD])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._prune(folder)

    @staticmethod
    def _prune(folder: str) -> None:
        """Remove the least recently used entries beyond CACHE_ENTRIES."""
        records = sorted((n for n in os.listdir(folder) if n.endswith(RECORD)),
                         key=lambda n: os.path.getmtime(os.path.join(folder, n)), reverse=True)
        for record in records[CACHE_ENTRIES:]:
            stem = record[: -len(RECORD)]
            files = [n for n in os.listdir(folder) if n.startswith(stem + ".") and n != record]
            for name in (record, *files):  # the record first: a reader never trusts files without it
                with contextlib.suppress(OSError):  # another process may have removed it first
                    os.remove(os.path.join(folder, name))


ENGINE_CACHE = EngineCache()
