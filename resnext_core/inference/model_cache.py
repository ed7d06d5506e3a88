"""The process-wide cache of prepared models: a bounded LRU shared by every task and thread of a process."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

MODEL_CACHE_SIZE = max(1, int(os.environ.get("RESNEXT_MODEL_CACHE_SIZE", "2")))


class ModelCache:
    """Bounded LRU of prepared models (classifier.LoadedModel), keyed by what defines them (classifier.model_key);
    thread-safe."""

    def __init__(self, capacity: int = MODEL_CACHE_SIZE):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, loader):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            # Room is made before loading: the new model never coexists with the one it replaces.
            while len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)
            loaded = loader()
            self._entries[key] = loaded
            return loaded

    def holds(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MODEL_CACHE = ModelCache()
