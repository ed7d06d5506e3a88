"""What the bulk commands read: sources (folders, globs, lists of paths, videos) expanded into units of work, and
each unit decoded and preprocessed into samples by background threads, so that decoding overlaps the model.
Threads, not processes: decoders and torch release the GIL, and a process holding an engine's or OpenCV's
threads (Ikomia's, STUDIO's) cannot be forked safely (a forked worker hung in OpenCV's video decoding).

A unit is what one worker takes whole: an image file, or a run of consecutive frames of a video (VIDEO_CHUNK at
most: a long video is spread over the workers and the processes). Samples come out in the units' order, so a
batch holds the same images whatever the threads' timing. A file that cannot be read becomes a sample with its
error, never the end of the run.
"""
from __future__ import annotations

import collections
import glob
import os
import threading
from dataclasses import dataclass, field

import torch

from ..common.errors import ConfigError, ImageError
from ..common.preprocess import Preprocessing
from ..common.world import SINGLE, World, cores_per_process
from .decode import PixelsNeeded, find_images, is_image_file, read_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
VIDEO_CHUNK = 256  # frames a worker decodes in one go (one seek)
BATCH_SIZE = 32  # the bulk commands' images per forward
MAX_AUTO_WORKERS = 8
LIST_SUFFIX = ".txt"  # a source ending so is a list of paths, one a line


def is_video_file(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def _is_media(path: str) -> bool:
    return is_image_file(path) or is_video_file(path)


def auto_workers(device: torch.device, world: World = SINGLE) -> int:
    """Decoding threads: on the CPU one more than this process's share of the cores (threads ahead of the model
    wait once 4 batches are decoded, so spare ones cost nothing where the model is slow, and keep a fast one fed:
    docs/performance.md, "Users' data"), on CUDA the share less one, up to MAX_AUTO_WORKERS."""
    cores = cores_per_process(world)
    return max(1, min(MAX_AUTO_WORKERS, cores + 1 if device.type == "cpu" else cores - 1))


def expand_sources(sources: list) -> list:
    """The files `sources` name, in order: a folder's images and videos (recursive, sorted), a glob's matches
    (sorted), a .txt file's paths (one a line; relative ones from the list's folder), or a file itself. A
    source that names nothing is an error; a listed path that is missing becomes an error row later."""
    paths = []
    for source in sources:
        if os.path.isdir(source):
            paths += find_images(source, accept=_is_media)
        elif any(char in source for char in "*?["):
            matches = sorted(path for path in glob.glob(source, recursive=True) if os.path.isfile(path))
            if not matches:
                raise ConfigError(f"source {source}: the pattern matches no file")
            paths += matches
        elif source.endswith(LIST_SUFFIX) and os.path.isfile(source):
            paths += _listed_paths(source)
        elif os.path.isfile(source):
            paths.append(source)
        else:
            raise ConfigError(f"source {source} not found: expected a folder, a file, a glob pattern or a {LIST_SUFFIX} "
                              "list of paths")
    return list(dict.fromkeys(paths))  # a file named twice is classified once


def _listed_paths(list_file: str) -> list:
    folder = os.path.dirname(os.path.abspath(list_file))
    with open(list_file, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    return [line if os.path.isabs(line) else os.path.join(folder, line) for line in lines]


@dataclass(frozen=True)
class Unit:
    """An image (start None), or frames start .. start + count - 1 of a video (count None: to its end)."""

    path: str
    start: int | None = None
    count: int | None = None
    skip: frozenset = field(default_factory=frozenset)  # frames already done (a resumed run)

    @property
    def frames(self) -> range | None:
        return None if self.start is None or self.count is None else range(self.start, self.start + self.count)


def units_of(paths: list, chunk: int = VIDEO_CHUNK) -> list:
    """An image is one unit; a video with a known frame count is cut into runs of `chunk` frames."""
    units = []
    for path in paths:
        frames = video_frame_count(path) if is_video_file(path) else None
        if not is_video_file(path):
            units.append(Unit(path))
        elif not frames:  # unknown length, or unreadable: one unit, which reads (or reports) it whole
            units.append(Unit(path, 0, None))
        else:
            units += [Unit(path, start, min(chunk, frames - start)) for start in range(0, frames, chunk)]
    return units


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ConfigError("reading videos needs OpenCV: pip install opencv-python-headless (or import ikomia first)") from None
    return cv2


def video_frame_count(path: str) -> int | None:
    """The frame count the container states, or None where it states none (or the file does not open)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count if count > 0 else None


def video_frames(path: str, start: int = 0, count: int | None = None):
    """(index, RGB frame) of frames start .. start + count - 1 (to the end when count is None)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ImageError(f"Cannot read video {path}: OpenCV does not open it")
    try:
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != start:  # a container that seeks inexactly: decode up to it
                capture.release()
                capture = cv2.VideoCapture(path)
                for _ in range(start):
                    capture.grab()
        index = start
        while count is None or index < start + count:
            ok, frame = capture.read()
            if not ok:
                return
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


@dataclass
class Samples:
    """A batch as the workers deliver it: every item's key and error (None: read), the read ones' input."""

    keys: list  # [(path, frame or None), ...]
    errors: list  # [str or None, ...]
    images: torch.Tensor  # the read items, preprocessed, in order: K x 3 x S x S


def _unit_samples(unit: Unit, preprocessing: Preprocessing):
    """(key, tensor or None, error or None) of every item of `unit` not in unit.skip. An image file is decoded at
    the size the preprocessing's resize needs."""
    if unit.start is None:
        try:
            yield (unit.path, None), preprocessing(read_image(unit.path, PixelsNeeded.for_resize(preprocessing.resize_size))), None
        except ImageError as exc:
            yield (unit.path, None), None, str(exc)
        return
    index = unit.start
    try:
        for index, frame in video_frames(unit.path, unit.start, unit.count):
            if index not in unit.skip:
                yield (unit.path, index), preprocessing(frame), None
            index += 1
    except ImageError as exc:
        yield (unit.path, None), None, str(exc)
        return
    if unit.count is not None and index < unit.start + unit.count and index not in unit.skip:  # a truncated video
        yield (unit.path, index), None, (f"Cannot read video {unit.path} from frame {index}: it ends there, its "
                                         f"container states {unit.start + unit.count} frames or more")


def collate(samples: list) -> Samples:
    read = [tensor for _, tensor, error in samples if error is None]
    images = torch.stack(read) if read else torch.empty(0)
    return Samples([key for key, _, _ in samples], [error for _, _, error in samples], images)


def batches(units: list, preprocessing: Preprocessing, batch_size: int, workers: int):
    """Samples of `units` in batches of up to batch_size, in the units' order whatever the number of threads and
    their timing (a batch's images, hence the engine's rounding, are the same at every run), decoded by `workers`
    background threads (0: in this one) at most 4 batches ahead."""
    if workers:
        samples = InOrderDecoding(units, preprocessing, workers, ahead=4 * batch_size).samples()
    else:
        samples = (sample for unit in units for sample in _unit_samples(unit, preprocessing))
    yield from _batched(samples, batch_size)


class InOrderDecoding:
    """Units decoded by background threads, their samples handed over in the units' order.

    Threads take units in order. A thread's samples of a unit ahead of the one being handed over wait in memory,
    `ahead` samples at most over all units; the thread producing the unit being handed over never waits, and it
    was taken before any later one, so the hand-over always progresses.
    """

    def __init__(self, units: list, preprocessing: Preprocessing, workers: int, ahead: int):
        self.units, self.preprocessing, self.workers, self.ahead = units, preprocessing, workers, ahead
        self.changed = threading.Condition()
        self.taken = 0  # units taken by threads
        self.head = 0  # the unit being handed over
        self.waiting = {}  # unit index -> deque of its samples decoded and not handed over
        self.finished = set()  # units whose every sample is decoded (or that failed: a BaseException waits)
        self.buffered = 0
        self.stop = False

    def samples(self):
        threads = [threading.Thread(target=self._work, daemon=True, name=f"resnext-decode-{i}") for i in range(self.workers)]
        for thread in threads:
            thread.start()
        try:
            for index in range(len(self.units)):
                yield from self._hand_over(index)
        finally:
            with self.changed:
                self.stop = True
                self.changed.notify_all()
            for thread in threads:
                thread.join()

    def _hand_over(self, index: int):
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.waiting.get(index) or index in self.finished)
                if not self.waiting.get(index):  # finished, nothing left
                    self.waiting.pop(index, None)
                    self.head = index + 1
                    self.changed.notify_all()
                    return
                sample = self.waiting[index].popleft()
                self.buffered -= 1
                self.changed.notify_all()
            if isinstance(sample, BaseException):  # re-raised in the consumer's thread
                raise sample
            yield sample

    def _work(self) -> None:
        while True:
            with self.changed:
                if self.stop or self.taken == len(self.units):
                    return
                index = self.taken
                self.taken += 1
            try:
                for sample in _unit_samples(self.units[index], self.preprocessing):
                    if not self._keep(index, sample):
                        return
            except BaseException as exc:
                self._keep(index, exc)
            with self.changed:
                self.finished.add(index)
                self.changed.notify_all()

    def _keep(self, index: int, sample) -> bool:
        """Holds `sample` for the hand-over once there is room (or at once for the unit being handed over);
        False when the hand-over has stopped."""
        with self.changed:
            self.changed.wait_for(lambda: self.stop or index == self.head or self.buffered < self.ahead)
            if self.stop:
                return False
            self.waiting.setdefault(index, collections.deque()).append(sample)
            self.buffered += 1
            self.changed.notify_all()
            return True


def _batched(samples, batch_size: int):
    batch = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            yield collate(batch)
            batch = []
    if batch:
        yield collate(batch)
