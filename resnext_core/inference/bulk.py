"""Bulk prediction: many images and video frames through one classifier (the plugin's, from the same InferConfig),
in batches, decoded and preprocessed by background threads while the model runs; on one process or on many
(torchrun: each rank takes a deterministic shard, on its own GPU where there are GPUs), into one results file
that a rerun completes (results_file.py)."""
from __future__ import annotations

import collections
import dataclasses
import datetime
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..common.world import SINGLE, World, cores_per_process
from .classifier import Classifier, load_classifier
from .config import InferConfig
from .results_file import ResultsFile, row
from ..data.sources import BATCH_SIZE, Unit, auto_workers, batches, expand_sources, units_of

# A rank done with its shard waits this long at most for the others before the merge (a slow GPU, a big shard).
MERGE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class BulkResult:
    output: str
    classified: int  # items this process classified in this run
    errors: int  # items this process could not read
    already_done: int  # items of this process's shard the output already held
    seconds: float
    rows: int | None = None  # rows of the merged output (the first process; None elsewhere)

    @property
    def images_per_second(self) -> float:
        return (self.classified + self.errors) / max(self.seconds, 1e-9)


def rank_config(config: InferConfig, world: World) -> InferConfig:
    """Under torchrun, device auto means this rank's own GPU, and on the CPU each rank takes its share of the cores."""
    if not world.distributed:
        return config
    if config.device == "auto" and torch.cuda.is_available():
        return dataclasses.replace(config, device=f"cuda:{world.local_rank % torch.cuda.device_count()}")
    torch.set_num_threads(cores_per_process(world))
    return config


def pending_units(units: list, done: dict) -> list:
    """`units` less what `done` (key -> row) holds: finished images and videos dropped, done frames skipped."""
    done_by_path = collections.defaultdict(set)
    for path, frame in done:
        done_by_path[path].add(frame)
    pending = []
    for unit in units:
        finished = done_by_path.get(unit.path, set())
        if None in finished:  # an image, or a video that did not open
            continue
        if unit.frames is not None and all(frame in finished for frame in unit.frames):
            continue
        pending.append(dataclasses.replace(unit, skip=frozenset(finished)) if finished else unit)
    return pending


def _items(unit: Unit) -> int | None:
    if unit.start is None:
        return 1
    return None if unit.frames is None else len(unit.frames) - len(unit.skip & set(unit.frames))


def predict_files(config: InferConfig, sources: list, output: str, batch_size: int = BATCH_SIZE,
                  workers: int | None = None, world: World = SINGLE, progress: bool | None = None) -> BulkResult:
    """Classify every image and video frame of `sources` into `output`; items it already holds are skipped.

    config: the inference plugin's parameters (top_k: the classes each row keeps, at least 1). workers: decoding
    threads (None: auto_workers). world: this process's place under torchrun; the first process merges once
    every process is done. progress: a tqdm bar (None: where stderr is a terminal).
    """
    started = time.perf_counter()
    config = rank_config(config, world)
    paths = expand_sources(sources)
    results = ResultsFile(output, world.rank)
    done = results.rows()
    shard = units_of(paths)[world.rank :: world.size]
    units = pending_units(shard, done)
    shard_paths = {unit.path for unit in shard}
    already_done = sum(1 for path, _ in done if path in shard_paths)
    classifier = load_classifier(config)
    workers = auto_workers(classifier.device, world) if workers is None else workers
    counts = {"classified": 0, "errors": 0}
    sizes = [_items(unit) for unit in units]
    total = None if None in sizes else sum(sizes)
    with tqdm(total=total, unit="img", disable=None if progress is None else not progress,
              desc=f"rank {world.rank}" if world.distributed else None) as bar:
        for samples in batches(units, classifier.preprocessing, batch_size, workers):
            rows = _rows(classifier, samples, max(1, config.top_k))
            results.append(rows)
            errors = sum(1 for r in rows if r["error"])
            counts["errors"] += errors
            counts["classified"] += len(rows) - errors
            bar.update(len(rows))
    results.close()
    merged = _merge_when_all_done(results, paths, world)
    return BulkResult(output, counts["classified"], counts["errors"], already_done, time.perf_counter() - started, merged)


def _rows(classifier: Classifier, samples, k: int) -> list:
    """The batch's rows: every item's top-k (a multi-label model's: every label at or above its threshold), or its
    error."""
    k = len(classifier.class_names) if classifier.multi_label else k
    probabilities = iter(classifier.probabilities(samples.images) if len(samples.images) else [])
    rows = []
    for (path, frame), error in zip(samples.keys, samples.errors):
        if error is not None:
            rows.append(row(path, frame, error=error))
            continue
        labels = classifier.labels(next(probabilities), k)
        rows.append(row(path, frame, [name for name, _ in labels], [confidence for _, confidence in labels]))
    return rows


def _merge_when_all_done(results: ResultsFile, paths: list, world: World) -> int | None:
    """The first process merges every part into the output, once every process has written its own."""
    if world.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=MERGE_TIMEOUT)
        dist.barrier()
    merged = results.merge({path: index for index, path in enumerate(paths)}) if world.is_main else None
    if world.distributed:
        dist.barrier()  # no process returns before the output is whole
        dist.destroy_process_group()
    return merged

