"""Training loop shared by the training plugin and scripts: no ikomia, no Qt.

Recipe: RandomResizedCrop + flip; validation with exactly the inference preprocessing; SGD or AdamW;
linear warmup then cosine decay (per step); label smoothing; optional class balancing (weighted loss or
balanced sampling); AMP on CUDA, bf16 autocast on CPUs with native bf16; channels_last; seeded and
resumable at a batch; on several processes with DDP (distributed.py) when started by torchrun or launch.py.

Layout, after torchvision's references/classification/train.py: train_one_epoch(), predict() and
validation_metrics() do the computing; TrainingData (training_data.py) reads the dataset and makes the loaders;
CheckpointKeeper (checkpointing.py) owns best.pth/last.pth and resume; RunRecorder (recording.py) writes the
reports; Trainer.run() orchestrates them.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .balance import balanced_class_weights
from .calibration import calibration_metrics
from .checkpointing import CheckpointKeeper, CheckpointMetadata
from .distributed import SINGLE, World
from .errors import ConfigError
from .metrics import classification_metrics, worst_predictions
from .models import build_model, load_pretrained_state_dict, resolve_weights
from .recording import RunRecorder
from .runtime import autocast, disable_openmp_dynamic_threads, resolve_device, resolve_precision
from .train_config import OPTIMIZERS, TRAIN_MODES, TrainConfig  # noqa: F401 (re-exported)
from .training_data import TrainingData

WORST_SHOWN = 12  # validation images in the worst-predictions gallery


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
class EpochStats:
    """What train_one_epoch returns; when stopped, only `batch` (batches completed) is meaningful."""

    loss: float = 0.0
    top1: float = 0.0
    images_per_second: float = 0.0
    lr: float = 0.0
    stopped: bool = False
    batch: int = 0
    images: int = 0  # trained on by this process

    def as_metrics(self) -> dict:
        return {"train_loss": self.loss, "train_top1": self.top1, "images_per_second": self.images_per_second, "lr": self.lr}


@dataclass
class TrainResult:
    run_folder: str
    epochs_done: int
    stopped: bool
    best: dict
    history: list = field(default_factory=list)
    skipped: int = 0


@dataclass
class TrainingSetup:
    """The objects one run trains with; all of them are saved in its checkpoints but the criteria."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module  # training loss: class-weighted with class_balance weighted_loss
    val_criterion: nn.Module  # never class-weighted, see build_setup


def unique_run_folder(output_folder: str, run_name: str) -> str:
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


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LambdaLR factor: linear warmup to 1, then cosine to 0."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


# --- set-up -----------------------------------------------------------------------------------
def build_classifier(config: TrainConfig, num_classes: int, device: torch.device, world: World = SINGLE) -> nn.Module:
    model = build_model(config.model_name, zero_init_residual=not config.pretrained)
    distributed.check_sync_batchnorm(config.sync_batchnorm, device, world.size)  # again here: torchrun starts no launch.py
    if config.sync_batchnorm and world.distributed:  # same parameters and state_dict keys as BatchNorm2d
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if config.pretrained:
        model.load_state_dict(load_pretrained_state_dict(resolve_weights(config.model_name, config.weights)))
    if config.train_mode == "feature_extract":
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model.to(device, memory_format=torch.channels_last)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:  # no weight decay on norms and biases
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel updates every parameter, on the CPU as on CUDA (the only devices training runs on),
    # where the default steps through the parameters in lists: benchmarks/optimizer_step.py.
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, nesterov=config.momentum > 0,
                           fused=True)


def build_setup(config: TrainConfig, num_classes: int, device, amp_dtype, steps_per_epoch: int,
                train_labels: list, world: World = SINGLE) -> TrainingSetup:
    model = build_classifier(config, num_classes, device, world)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(steps_per_epoch * config.epochs, int(steps_per_epoch * config.warmup_epochs))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(weight=loss_class_weights(config, train_labels, num_classes, device),
                                    label_smoothing=config.label_smoothing)
    # Validation loss stays unweighted, as in most references: it then measures the same thing whatever
    # class_balance is, so runs with and without balancing (and older runs) compare on it, and it does not
    # depend on the training set's class sizes. Per-class recall and macro F1 show what balancing changes.
    val_criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return TrainingSetup(model, optimizer, scheduler, scaler, criterion, val_criterion)


def loss_class_weights(config: TrainConfig, train_labels: list, num_classes: int, device) -> torch.Tensor | None:
    """Inverse class frequencies for class_balance weighted_loss, else None (every class weighs 1)."""
    if config.class_balance != "weighted_loss":
        return None
    return torch.tensor(balanced_class_weights(train_labels, num_classes), dtype=torch.float32, device=device)


# --- computing --------------------------------------------------------------------------------
def _never() -> bool:
    return False


def _ignore(*args) -> None:
    pass


def train_one_epoch(model, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, *,
                    epoch: int, start_batch: int = 0, should_stop=_never, on_batch=_ignore) -> EpochStats:
    """One pass over `loader`, whose first batch is batch `start_batch` of epoch `epoch` (both from 0).

    should_stop() is asked before every batch and after the last one, so a stop never waits for an epoch.
    on_batch(batch, loss) follows every step, batch counted from 1 within the epoch.
    """
    model.train()
    total_loss, correct, seen, batch = 0.0, 0, 0, start_batch
    started = time.perf_counter()
    for images, labels in loader:
        if should_stop():
            return EpochStats(stopped=True, batch=batch)
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise ConfigError(f"Training diverged (loss {loss.item()}) at epoch {epoch + 1}: lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        batch_loss = loss.item()
        total_loss += batch_loss * labels.numel()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += labels.numel()
        batch += 1
        on_batch(batch, batch_loss)
    if should_stop():
        return EpochStats(stopped=True, batch=batch)
    return EpochStats(
        loss=total_loss / max(seen, 1),
        top1=correct / max(seen, 1),
        images_per_second=seen / max(time.perf_counter() - started, 1e-9),
        lr=scheduler.get_last_lr()[0],
        batch=batch,
        images=seen,
    )


def combine_ranks(stats: EpochStats, world: World) -> EpochStats:
    """The epoch's training figures over every rank's images (each rank's alone otherwise)."""
    loss_sum, correct, images, rate = distributed.sum_over_ranks(
        [stats.loss * stats.images, stats.top1 * stats.images, stats.images, stats.images_per_second], world)
    images = max(images, 1)
    return EpochStats(loss_sum / images, correct / images, rate, stats.lr, stats.stopped, stats.batch, int(images))


@torch.inference_mode()
def predict(model, loader, device, amp_dtype, num_classes: int) -> tuple:
    """(logits, labels) of the whole loader as float32 / int64 numpy arrays, in its order."""
    model.eval()
    all_logits, all_labels = [torch.empty(0, num_classes)], [torch.empty(0, dtype=torch.int64)]
    for images, labels in loader:
        images = images.to(device, memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            all_logits.append(model(images).float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


def validation_metrics(logits, labels, criterion, class_names) -> dict:
    """val_loss plus classification_metrics() and calibration_metrics(), each key prefixed with val_, and
    val_worst: the highest-loss samples (indices into the validation items)."""
    val_loss = criterion(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    metrics = {**classification_metrics(labels, logits, class_names), **calibration_metrics(logits, labels)}
    return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()},
            "val_worst": worst_predictions(labels, logits, WORST_SHOWN)}


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


# --- orchestration ----------------------------------------------------------------------------
class Trainer:
    """One training run. Constructing it reads the dataset and writes nothing; run() creates the run folder.

    Callbacks: on_start(run_folder) before training; on_batch(BatchProgress) after every training batch;
    on_epoch(EpochResult) after every validated epoch; should_stop() -> bool, asked before every batch.
    progress_bar: a tqdm bar per epoch (for terminals).
    world: this process's rank among several (distributed.py); constructing the Trainer joins the process
    group. Every rank computes; rank 0 alone writes the run folder. A stop asked on any rank stops all.
    """

    def __init__(self, config: TrainConfig, on_epoch=None, should_stop=None, log=print, on_batch=None,
                 on_start=None, progress_bar: bool = False, world: World = SINGLE):
        config.validate()
        self.config = config
        self.world = world
        self.on_epoch, self.on_batch, self.on_start = on_epoch or _ignore, on_batch or _ignore, on_start or _ignore
        self.should_stop = should_stop or _never
        self.log = log
        self.progress_bar = progress_bar
        self.device = distributed.start(world, resolve_device(config.device), config.gpus)
        self.amp_dtype = resolve_precision("auto", self.device) if config.amp else torch.float32
        self.data = TrainingData(config, self.device, world, log)
        self.run_folder = None  # set by run()

    def run(self) -> TrainResult:
        config = self.config
        disable_openmp_dynamic_threads()  # per thread, and this is the computing thread: see runtime.py
        world = self.world
        self.run_folder = distributed.from_main(
            unique_run_folder(config.output_folder, config.run_name) if world.is_main else None, world)
        self.on_start(self.run_folder)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        data = self.data
        setup = build_setup(config, len(data.class_names), self.device, self.amp_dtype, data.steps_per_epoch,
                            data.train_labels, world)
        if world.rank:  # other random crops than rank 0's; the weights are rank 0's (DDP broadcasts them)
            torch.manual_seed(config.seed + world.rank)
        metadata = CheckpointMetadata(config.model_name, data.class_names, data.preprocessing,
                                      {k: str(v) for k, v in asdict(config).items()})
        keeper = CheckpointKeeper(self.run_folder, setup.model, setup.optimizer, setup.scheduler, setup.scaler,
                                  metadata, keep_best=config.export_pth or config.export_onnx, writes=world.is_main)
        if config.resume:
            keeper.resume(config.resume)
            self.log(f"resuming {config.resume} at epoch {keeper.state.epoch + 1}, batch {keeper.state.batch}")
        recorder = RunRecorder(self.run_folder, data.class_names, self.log) if world.is_main else NoRecords()
        recorder.write_dataset_files(data.split.skipped, data.train_counts, data.val_counts)
        if world.is_main:  # the others would read the images for NoRecords to drop
            recorder.write_calibration_sample(data.preprocessing.batch(data.calibration_images()))
        with recorder, contextlib.closing(data):
            stopped = self._run_epochs(setup, keeper, recorder)
        if keeper.state.best is not None and config.export_onnx and not stopped and world.is_main:
            recorder.export_onnx(torch.stack([data.preprocessing(image) for image in data.onnx_sample_images()]))
        recorder.plot_curves(keeper.state.history)  # for a run that ended no epoch here (resumed after its last)
        state = keeper.state
        return TrainResult(self.run_folder, state.epochs_done, stopped, state.best or {}, state.history, len(data.split.skipped))

    def _run_epochs(self, setup: TrainingSetup, keeper: CheckpointKeeper, recorder: RunRecorder) -> bool:
        """Train and validate from the keeper's state on; True when should_stop() stopped the run."""
        config = self.config
        val_loader = self.data.val_loader()
        remaining = RemainingTime(config.epochs, self.data.steps_per_epoch)
        training_model = distributed.wrap_model(setup.model, self.device, self.world)
        for epoch in range(keeper.state.epoch, config.epochs):
            stats = self._train_epoch(setup, training_model, epoch, keeper.state.start_batch(epoch), remaining)
            if stats.stopped:
                last = keeper.save_interrupted(epoch, stats.batch)
                self.log(f"stopped during epoch {epoch + 1}: resumable checkpoint {last}")
                return True
            validation = self._validate(setup, val_loader)
            metrics = {"epoch": epoch + 1, **stats.as_metrics(), **validation, "skipped_files": len(self.data.split.skipped)}
            self._end_epoch(metrics, keeper, recorder)
            if config.patience and keeper.state.stale >= config.patience:
                self.log(f"early stop: no improvement for {config.patience} epoch(s)")
                break
        return False

    def _train_epoch(self, setup: TrainingSetup, model, epoch: int, start_batch: int,
                     remaining: RemainingTime) -> EpochStats:
        """`model` is setup.model or its DDP wrapper."""
        description = f"epoch {epoch + 1}/{self.config.epochs}"
        with tqdm(self.data.train_loader(epoch, start_batch), desc=description, total=self.data.steps_per_epoch,
                  initial=start_batch, leave=False, disable=not self.progress_bar) as batches:

            def after_batch(batch: int, loss: float) -> None:
                batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
                self.on_batch(remaining.after_batch(epoch + 1, batch, loss))

            remaining.start_epoch()
            stats = train_one_epoch(model, batches, setup.criterion, setup.optimizer, setup.scheduler, setup.scaler,
                                    self.device, self.amp_dtype, epoch=epoch, start_batch=start_batch,
                                    should_stop=lambda: distributed.any_rank(self.should_stop(), self.world),
                                    on_batch=after_batch)
        return stats if stats.stopped else combine_ranks(stats, self.world)

    def _validate(self, setup: TrainingSetup, val_loader) -> dict:
        """validation_metrics() of the whole validation set, each rank having predicted its share."""
        logits, labels = predict(setup.model, val_loader, self.device, self.amp_dtype, len(self.data.class_names))
        logits, labels = distributed.gather_val_shards(logits, labels, self.world)
        return validation_metrics(logits, labels, setup.val_criterion, self.data.class_names)

    def _end_epoch(self, metrics: dict, keeper: CheckpointKeeper, recorder: RunRecorder) -> None:
        is_best = keeper.end_epoch(metrics)
        if is_best:
            recorder.write_best_report(metrics)
        recorder.write_epoch(metrics, keeper.state.history)
        recorder.draw_epoch_pictures(metrics, keeper.state.history, self.data.split.val)
        self.log(_epoch_line(metrics, self.config.epochs))
        self.on_epoch(EpochResult(metrics["epoch"], metrics, is_best))


class NoRecords:
    """The RunRecorder of ranks other than 0: rank 0 alone writes the run folder."""

    def __getattr__(self, name):
        return _ignore

    def __enter__(self) -> NoRecords:
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def _epoch_line(metrics: dict, epochs: int) -> str:
    line = (
        f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f} top-1 {100 * metrics['train_top1']:.1f}% | "
        f"val loss {metrics['val_loss']:.4f} top-1 {100 * metrics['val_top1']:.1f}%"
    )
    if "val_top5" in metrics:
        line += f" top-5 {100 * metrics['val_top5']:.1f}%"
    return line + f" F1 {metrics['val_f1']:.3f} | {metrics['images_per_second']:.0f} img/s"
