"""Files written so that a crash or an error never leaves half of one, and files known by their bytes' hash."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile

import torch


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; once written, it is synced and renamed onto `path`.

    A crash or an error never leaves half a file: readers see the old file or the new one.
    suffix keeps the extension writers read the format from (matplotlib, ONNX).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj, path: str) -> None:
    """torch.save, atomically."""
    with atomic_path(path, ".pth") as tmp:
        torch.save(obj, tmp)


def atomic_copy(source: str, path: str) -> None:
    """`path` becomes a copy of `source`, atomically: a hard link where the file system allows one (no bytes
    written; `source` replaced later by a rename leaves `path` as it was), else a copy."""
    with atomic_path(path, os.path.splitext(path)[1]) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (FAT, some network shares) or another file system
            shutil.copyfile(source, tmp)


def atomic_write_text(text: str, path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as handle:  # streamed: a model's file is not held twice
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, computed once per process for an unchanged file."""
    stat = os.stat(path)
    return _file_sha256(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)




def file_identity(path: str):
    """What changes when a file (or a folder's list of entries) is rewritten, e.g. by a new training run: part
    of a cache key. None for no path; a missing file is named by its path alone (loading it reports it)."""
    if not path:
        return None
    try:
        stat = os.stat(path)
        return (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return (path, None, None)
