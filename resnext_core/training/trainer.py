"""One training run from its TrainConfig: Trainer.run() orchestrates the loop's parts (loop.py), the data
(data.py), the checkpoints (checkpoint_keeper.py) and the reports (records.py), and tells its caller what
happens through one Callbacks object: the plugin's, the command line's, and on several processes the
launcher's relay (launch.py), which hands rank 0's calls on to the caller's Callbacks.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..common.errors import ConfigError, DatasetError
from ..common.runtime import disable_openmp_dynamic_threads, resolve_device, resolve_precision
from ..common.world import SINGLE, World
from . import distributed
from .checkpoint_keeper import CheckpointKeeper, CheckpointMetadata
from .config import TRAIN_SCHEMA, TrainConfig
from .data import UNREAD, TrainingData
from .loop import EpochStats, TrainingSetup, build_setup, combine_ranks, predict, train_one_epoch, validation_metrics
from .records import RunRecorder


def _never() -> bool:
    return False


def _ignore(*args) -> None:
    pass


@dataclass
class EpochResult:
    """Passed to on_epoch after every validated epoch (epoch counts from 1)."""

    epoch: int
    metrics: dict
    is_best: bool


@dataclass
class BatchProgress:
    """Passed to on_batch after every training batch; epoch and batch count from 1."""

    epoch: int
    epochs: int
    batch: int
    batches: int  # per epoch
    loss: float  # of this batch
    seconds_left: float  # whole run, from the mean training-batch time so far (validation not counted)


@dataclass
class TrainResult:
    run_folder: str
    epochs_done: int
    stopped: bool
    best: dict
    history: list = field(default_factory=list)
    skipped: int = 0  # files left out: not images by name, or found unreadable
    test: dict = field(default_factory=dict)  # test_folder's scalar metrics, filled by resnext_core.train.train()


@dataclass(frozen=True)
class Callbacks:
    """What a run tells its caller, and the caller's stop; every field is optional.

    on_start(run_folder) once the run folder exists; on_batch(BatchProgress) after every training batch;
    on_epoch(EpochResult) after every validated epoch; log(line) for each line of the run's log;
    should_stop() -> bool, asked before every batch.
    """

    on_start: Callable[[str], None] = _ignore
    on_batch: Callable[[BatchProgress], None] = _ignore
    on_epoch: Callable[[EpochResult], None] = _ignore
    log: Callable[[str], None] = print
    should_stop: Callable[[], bool] = _never


def unique_run_folder(output_folder: str, run_name: str) -> str:
    if not output_folder:
        raise ConfigError("output_folder is empty: say where the run folder goes")
    try:
        os.makedirs(output_folder, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Output folder {output_folder} cannot be created: {exc.strerror}") from None
    if not os.access(output_folder, os.W_OK):
        raise ConfigError(f"Output folder {output_folder} is not writable")
    base = os.path.join(output_folder, run_name or time.strftime("%Y-%m-%d_%H-%M-%S"))
    folder, index = base, 1
    while os.path.exists(folder):
        index += 1
        folder = f"{base}_{index}"
    os.makedirs(folder)
    return folder


class RemainingTime:
    """BatchProgress for each training batch: seconds left from the mean batch time so far."""

    def __init__(self, epochs: int, batches: int):
        self.epochs, self.batches = epochs, batches
        self.seconds, self.count, self.last = 0.0, 0, time.perf_counter()

    def start_epoch(self) -> None:
        self.last = time.perf_counter()  # validation time between epochs is not batch time

    def after_batch(self, epoch: int, batch: int, loss: float) -> BatchProgress:
        now = time.perf_counter()
        self.seconds, self.count, self.last = self.seconds + now - self.last, self.count + 1, now
        batches_left = (self.epochs - epoch) * self.batches + self.batches - batch
        return BatchProgress(epoch, self.epochs, batch, self.batches, loss, self.seconds / self.count * batches_left)


class Trainer:
    """One training run. Constructing it reads the dataset and writes nothing; run() creates the run folder.

    callbacks: what the caller hears (Callbacks). progress_bar: a tqdm bar per epoch (for terminals).
    world: this process's rank among several (distributed.py); constructing the Trainer joins the process
    group. Every rank computes; rank 0 alone writes the run folder. A stop asked on any rank stops all.
    """

    def __init__(self, config: TrainConfig, callbacks: Callbacks = Callbacks(), progress_bar: bool = False,
                 world: World = SINGLE):
        self.config = config
        self.world = world
        self.callbacks = callbacks
        self.progress_bar = progress_bar
        self.device = distributed.start(world, resolve_device(config.device), config.gpus)
        self.amp_dtype = resolve_precision("auto", self.device) if config.amp else torch.float32
        self.data = TrainingData(config, self.device, world, callbacks.log)
        self.run_folder = None  # set by run()

    def run(self) -> TrainResult:
        config = self.config
        disable_openmp_dynamic_threads()  # per thread, and this is the computing thread: see runtime.py
        world = self.world
        self.run_folder = distributed.from_main(
            unique_run_folder(config.output_folder, config.run_name) if world.is_main else None, world)
        self.callbacks.on_start(self.run_folder)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        data = self.data
        setup = build_setup(config, len(data.class_names), self.device, self.amp_dtype, data.steps_per_epoch,
                            data.train_labels, world)
        if world.rank:  # other random crops than rank 0's; the weights are rank 0's (DDP broadcasts them)
            torch.manual_seed(config.seed + world.rank)
        metadata = CheckpointMetadata(config.model_name, data.class_names, data.preprocessing, TRAIN_SCHEMA.stored(config),
                                      data.multi_label)
        keeper = CheckpointKeeper(self.run_folder, setup.model, setup.optimizer, setup.scheduler, setup.scaler,
                                  metadata, keep_best=config.export_pth or config.export_onnx, writes=world.is_main,
                                  ema=setup.ema)
        if config.resume:
            keeper.resume(config.resume)
            self.callbacks.log(f"resuming {config.resume} at epoch {keeper.state.epoch + 1}, batch {keeper.state.batch}")
        recorder = RunRecorder(self.run_folder, data.class_names, self.callbacks.log) if world.is_main else NoRecords()
        recorder.write_dataset_files(data.train_counts, data.val_counts)
        recorder.write_skipped_files(data.split.skipped, [])
        if world.is_main:  # the others would read the images for NoRecords to drop
            recorder.write_quantization_sample(data.preprocessing.batch(data.quantization_images()))
        with recorder, contextlib.closing(data):
            stopped = self._run_epochs(setup, keeper, recorder)
        if keeper.state.best is not None and config.export_onnx and not stopped and world.is_main:
            recorder.export_onnx(torch.stack([data.preprocessing(image) for image in data.onnx_sample_images()]))
        recorder.plot_curves(keeper.state.history)  # for a run that ended no epoch here (resumed after its last)
        state = keeper.state
        return TrainResult(self.run_folder, state.epochs_done, stopped, state.best or {}, state.history,
                           self._skipped_files())

    def _skipped_files(self) -> int:
        return len(self.data.split.skipped) + len(self.data.unreadable)

    def _run_epochs(self, setup: TrainingSetup, keeper: CheckpointKeeper, recorder: RunRecorder) -> bool:
        """Train and validate from the keeper's state on; True when should_stop() stopped the run."""
        config = self.config
        val_loader = self.data.val_loader()
        remaining = RemainingTime(config.epochs, self.data.steps_per_epoch)
        for epoch in range(keeper.state.epoch, config.epochs):
            stats = self._train_epoch(setup, epoch, keeper.state.start_batch(epoch), remaining)
            if stats.stopped:
                last = keeper.save_interrupted(epoch, stats.batch)
                self.callbacks.log(f"stopped during epoch {epoch + 1}: resumable checkpoint {last}")
                return True
            validation = self._validate(setup, val_loader)
            self._gather_unreadable(recorder)
            metrics = {"epoch": epoch + 1, **stats.as_metrics(), **validation, "skipped_files": self._skipped_files()}
            self._end_epoch(metrics, keeper, recorder)
            if config.patience and keeper.state.stale >= config.patience:
                self.callbacks.log(f"early stop: no improvement for {config.patience} epoch(s)")
                break
        return False

    def _train_epoch(self, setup: TrainingSetup, epoch: int, start_batch: int, remaining: RemainingTime) -> EpochStats:
        description = f"epoch {epoch + 1}/{self.config.epochs}"
        with tqdm(self.data.train_loader(epoch, start_batch), desc=description, total=self.data.steps_per_epoch,
                  initial=start_batch, leave=False, disable=not self.progress_bar) as batches:

            def after_batch(batch: int, loss: float) -> None:
                batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
                self.callbacks.on_batch(remaining.after_batch(epoch + 1, batch, loss))

            remaining.start_epoch()
            stats = train_one_epoch(setup, batches, epoch=epoch, start_batch=start_batch, on_batch=after_batch,
                                    should_stop=self._should_stop)
        return stats if stats.stopped else combine_ranks(stats, self.world)

    def _should_stop(self) -> bool:
        """The caller's stop, on any rank; a DatasetError on every rank at once where any has met more unreadable
        images than unreadable_limit allows."""
        stop, damaged = distributed.any_rank([self.callbacks.should_stop(), self.data.unreadable.over_limit], self.world)
        if damaged:
            self._gather_unreadable(None)
            raise self.data.unreadable.error()
        return stop

    def _gather_unreadable(self, recorder) -> None:
        """Every rank's unreadable files recorded on each (rank 0 logs those others met) and written to
        skipped_files.txt; a DatasetError where they are more than unreadable_limit allows."""
        data = self.data
        for met in distributed.every_rank(list(data.unreadable.found.values()), self.world):
            data.record_unreadable(met)
        if recorder is not None:
            recorder.write_skipped_files(data.split.skipped, list(data.unreadable.found.values()))
        if data.unreadable.over_limit:
            raise data.unreadable.error()

    def _validate(self, setup: TrainingSetup, val_loader) -> dict:
        """validation_metrics() of the whole validation set, each rank having predicted its share; images that
        could not be read are left out (val_worst's indices still point into the validation items)."""
        logits, labels = predict(setup.evaluated_model, val_loader, self.device, self.amp_dtype, len(self.data.class_names))
        logits, labels = distributed.gather_val_shards(logits, labels, self.world)
        read = np.flatnonzero(labels.reshape(len(labels), -1)[:, 0] != UNREAD)
        if not len(read):
            raise DatasetError(f"No validation image of {self.data.split.source} could be read")
        metrics = validation_metrics(logits[read], labels[read], setup.val_criterion, self.data.class_names,
                                     self.data.multi_label)
        for worst in metrics["val_worst"]:
            worst["index"] = int(read[worst["index"]])
        return metrics

    def _end_epoch(self, metrics: dict, keeper: CheckpointKeeper, recorder: RunRecorder) -> None:
        is_best = keeper.end_epoch(metrics)
        if is_best:
            recorder.write_best_report(metrics)
        recorder.write_epoch(metrics, keeper.state.history)
        recorder.draw_epoch_pictures(metrics, keeper.state.history, self.data.split.val)
        self.callbacks.log(_epoch_line(metrics, self.config.epochs))
        self.callbacks.on_epoch(EpochResult(metrics["epoch"], metrics, is_best))


class NoRecords:
    """The RunRecorder of ranks other than 0: rank 0 alone writes the run folder."""

    def __getattr__(self, name):
        return _ignore

    def __enter__(self) -> NoRecords:
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def _epoch_line(metrics: dict, epochs: int) -> str:
    if "val_mAP" in metrics:  # multi-label
        line = (f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f} exact match "
                f"{100 * metrics['train_exact_match']:.1f}% | val loss {metrics['val_loss']:.4f} mAP {metrics['val_mAP']:.3f} "
                f"exact match {100 * metrics['val_exact_match']:.1f}%")
    else:
        line = (f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f} top-1 "
                f"{100 * metrics['train_top1']:.1f}% | val loss {metrics['val_loss']:.4f} top-1 {100 * metrics['val_top1']:.1f}%")
        if "val_top5" in metrics:
            line += f" top-5 {100 * metrics['val_top5']:.1f}%"
    return line + f" F1 {metrics['val_f1']:.3f} | {metrics['images_per_second']:.0f} img/s"
