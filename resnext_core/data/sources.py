"""What the bulk commands read: sources (folders, globs, lists of paths, videos) expanded into units of work, and
each unit decoded and preprocessed into samples by background threads, so that decoding overlaps the model.
Threads, not processes: decoders and torch release the GIL, and a process holding an engine's or OpenCV's
threads (Ikomia's, STUDIO's) cannot be forked safely (a forked worker hung in OpenCV's video decoding).

A unit is what one worker takes whole: an image file, or a run of consecutive frames of a video (VIDEO_CHUNK at
most: a long video is spread over the workers and the processes). A file that cannot be read becomes a sample
with its error, never the end of the run.
"""
from __future__ import annotations

import contextlib
import glob
import os
import queue
import threading
from dataclasses import dataclass, field

import torch

from ..common.errors import ConfigError, ImageError
from ..common.preprocess import Preprocessing
from .decode import PixelsNeeded, find_images, is_image_file, read_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
VIDEO_CHUNK = 256  # frames a worker decodes in one go (one seek)
LIST_SUFFIX = ".txt"  # a source ending so is a list of paths, one a line


def is_video_file(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def _is_media(path: str) -> bool:
    return is_image_file(path) or is_video_file(path)


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


_DONE = object()  # a worker thread's last item: it has no unit left


def batches(units: list, preprocessing: Preprocessing, batch_size: int, workers: int):
    """Samples of `units` in batches of up to batch_size, decoded by `workers` background threads (0: in this
    one). A unit's items come in order; the units of different threads interleave."""
    if not workers:
        samples = (sample for unit in units for sample in _unit_samples(unit, preprocessing))
        yield from _batched(samples, batch_size)
        return
    pending, results, stop = queue.Queue(), queue.Queue(maxsize=4 * batch_size), threading.Event()
    for unit in units:
        pending.put(unit)

    def work():
        try:
            while not stop.is_set():
                try:
                    unit = pending.get_nowait()
                except queue.Empty:
                    break
                for sample in _unit_samples(unit, preprocessing):
                    results.put(sample)
        except BaseException as exc:  # re-raised in the consumer's thread
            results.put(exc)
        results.put(_DONE)

    threads = [threading.Thread(target=work, daemon=True, name=f"resnext-decode-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield from _batched(_until_done(results, len(threads)), batch_size)
    finally:
        stop.set()
        while any(thread.is_alive() for thread in threads):  # a thread blocked on a full queue: unblock it
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.05)


def _until_done(results: queue.Queue, workers: int):
    done = 0
    while done < workers:
        item = results.get()
        if item is _DONE:
            done += 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item


def _batched(samples, batch_size: int):
    batch = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            yield collate(batch)
            batch = []
    if batch:
        yield collate(batch)
