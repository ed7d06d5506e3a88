"""CPU inference through ONNX Runtime: each model exported once, kept in an on-disk cache.

An entry is keyed by what decides the exported graph: the weights (the ImageNet file's name, or the
SHA-256 of a user's checkpoint), the input size, and the versions of torch, ONNX Runtime and this
format. It is two files: `<key>.onnx` and `<key>.json`, the latter holding the ONNX file's SHA-256;
both are written atomically, the JSON last. An entry whose hash does not match, or that ONNX Runtime
refuses, is rebuilt, never used.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import threading

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_path, atomic_write_text

CACHE_FORMAT = 1  # bump when the exported graph changes (e.g. another fusion before export)
INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_EXPORT_BATCH = 1024
# Entries kept, the least recently used removed first: an entry is ~100-350 MB and every training run
# makes new weights.
CACHE_ENTRIES = max(1, int(os.environ.get("RESNEXT_ONNX_CACHE_ENTRIES", "8")))

log = logging.getLogger(__name__)


def default_cache_folder() -> str:
    """Beside torch's own downloads ($TORCH_HOME/hub): one place to clear, shared by every process."""
    return os.path.join(torch.hub.get_dir(), "resnext_onnx")


def export_onnx_model(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    """`model` (float, eval) to an ONNX file at `path`, atomically, with a dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    # Two images: a batch of one would be specialised into the graph as a constant.
    example = sample[:1].float().expand(2, -1, -1, -1).contiguous()
    with atomic_path(path, ".onnx") as tmp:
        torch.onnx.export(model, (example,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes={"x": {0: batch}}, external_data=False, dynamo=True, verbose=False)


def new_session(path: str):
    """An ONNX Runtime CPU session for the model file at `path`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Callable like the torch runner: a float batch (N, 3, H, W) -> logits (N, C), on the CPU."""

    engine = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        array = np.ascontiguousarray(batch.float().numpy())
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, computed once per process for an unchanged file."""
    stat = os.stat(path)
    return _file_sha256(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


class OnnxCache:
    """On-disk cache of exported models; `runner()` loads or (re)builds an entry."""

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self._lock = threading.Lock()  # one export at a time in a process: each takes GBs and seconds

    def key(self, weights_identity: str, input_size: int) -> str:
        import onnxruntime

        facts = [CACHE_FORMAT, weights_identity, input_size, torch.__version__, onnxruntime.__version__]
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:32]

    def paths(self, key: str) -> tuple:
        folder = self.folder or default_cache_folder()
        return os.path.join(folder, key + ".onnx"), os.path.join(folder, key + ".json")

    def runner(self, weights_identity: str, input_size: int, build_model) -> OnnxRunner:
        """The runner for these weights at this size; build_model() -> (float eval model) only on a miss."""
        key = self.key(weights_identity, input_size)
        with self._lock:
            session = self._load(key)
            if session is None:  # just exported and hashed: loaded as it is, not hashed again
                session = new_session(self._export(key, weights_identity, input_size, build_model()))
        return OnnxRunner(session)

    def _load(self, key: str):
        onnx_path, record_path = self.paths(key)
        try:
            with open(record_path, encoding="utf-8") as handle:
                expected = json.load(handle)["sha256"]
            with open(onnx_path, "rb") as handle:  # streamed: a 350 MB model is not held twice
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable entry: rebuilt
        if actual != expected:
            log.warning("ONNX cache entry %s is corrupt (hash mismatch): rebuilding it", onnx_path)
            return None
        try:
            session = new_session(onnx_path)
        except Exception as exc:  # onnxruntime raises its own exception types
            log.warning("ONNX cache entry %s does not load (%s): rebuilding it", onnx_path, exc)
            return None
        os.utime(record_path)  # recently used: pruned last
        return session

    def _export(self, key: str, weights_identity: str, input_size: int, model: nn.Module) -> str:
        """Writes the entry (ONNX file, then its record); returns the ONNX file's path."""
        onnx_path, record_path = self.paths(key)
        sample = torch.zeros(1, 3, input_size, input_size)
        export_onnx_model(model.float().eval().to(memory_format=torch.contiguous_format), sample, onnx_path)
        record = {"sha256": file_sha256(onnx_path), "weights": weights_identity, "input_size": input_size,
                  "torch": torch.__version__}
        atomic_write_text(json.dumps(record, indent=1), record_path)
        self._prune(os.path.dirname(record_path))
        return onnx_path

    @staticmethod
    def _prune(folder: str) -> None:
        """Remove the least recently used entries beyond CACHE_ENTRIES."""
        records = sorted((n for n in os.listdir(folder) if n.endswith(".json")),
                         key=lambda n: os.path.getmtime(os.path.join(folder, n)), reverse=True)
        for record in records[CACHE_ENTRIES:]:
            stem = record[: -len(".json")]
            for name in (record, stem + ".onnx"):  # the record first: a reader never trusts a lone ONNX file
                with contextlib.suppress(OSError):  # another process may have removed it first
                    os.remove(os.path.join(folder, name))


ONNX_CACHE = OnnxCache()
