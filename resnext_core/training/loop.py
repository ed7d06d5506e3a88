"""The training loop's parts, shared by the Trainer and the tests: set-up (model, optimizer, schedule, losses)
and computing (one epoch, predictions, validation metrics). No files, no callbacks: trainer.py orchestrates.

Recipe: RandomResizedCrop + flip (data.py); validation with exactly the inference preprocessing; SGD or AdamW;
linear warmup then cosine decay (per step); label smoothing; optional class balancing (weighted loss or
balanced sampling); AMP on CUDA, bf16 autocast on CPUs with native bf16; channels_last; on several processes
with DDP (distributed.py). After torchvision's references/classification/train.py.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision.transforms import v2 as T

from ..common.anatomy import is_classifier_parameter, replace_classifier
from ..common.errors import ConfigError
from ..common.models import build_model, load_pretrained_state_dict, resolve_weights
from ..common.runtime import autocast
from ..common.scoring import score, score_multi_label
from . import distributed
from .class_balance import balanced_class_weights
from .config import TrainConfig
from .multi_label import LabelVectorMix, SmoothedBinaryCrossEntropy, exact_matches, positive_weights
from ..common.world import SINGLE, World


@dataclass
class EpochStats:
    """What train_one_epoch returns; when stopped, only `batch` (batches completed) is meaningful."""

    loss: float = 0.0
    accuracy: float = 0.0  # top-1, or for a multi-label model the exact-match ratio at confidence 1/2
    images_per_second: float = 0.0
    lr: float = 0.0
    stopped: bool = False
    batch: int = 0
    images: int = 0  # trained on by this process
    accuracy_name: str = "top1"

    def as_metrics(self) -> dict:
        return {"train_loss": self.loss, f"train_{self.accuracy_name}": self.accuracy,
                "images_per_second": self.images_per_second, "lr": self.lr}


@dataclass
class TrainingSetup:
    """The objects one run trains with; all of them are saved in its checkpoints but the criteria."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module  # training loss: class-weighted with class_balance weighted_loss
    val_criterion: nn.Module  # never class-weighted, see build_setup
    device: torch.device
    amp_dtype: torch.dtype  # autocast's (float32: none)
    training_model: nn.Module  # what steps: `model`, or its DDP wrapper on several processes
    ema: torch.optim.swa_utils.AveragedModel | None = None  # the moving average of `model`'s weights, if asked for
    mix: Callable | None = None  # (images, labels) -> (mixed images, soft targets): MixUp and/or CutMix
    accumulation_steps: int = 1  # batches whose gradients add up before each optimizer step
    multi_label: bool = False  # a sigmoid a class (multi_label.py), labels as 0/1 vectors

    def hits(self, logits: torch.Tensor, labels: torch.Tensor) -> int:
        """Images of the batch predicted right: top-1, or for a multi-label model every label at confidence 1/2."""
        return exact_matches(logits, labels) if self.multi_label else int((logits.argmax(1) == labels).sum())

    @property
    def evaluated_model(self) -> nn.Module:
        """What validation scores and best.pth holds: the moving average where there is one."""
        return self.model if self.ema is None else self.ema.module


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LambdaLR factor: linear warmup to 1, then cosine to 0."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


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
    replace_classifier(model, num_classes)
    return model.to(device, memory_format=torch.channels_last)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on norms and biases; with backbone_lr_factor below 1, the pretrained layers at
    learning_rate x that factor and the new classifier at learning_rate."""
    groups = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            head = config.backbone_lr_factor == 1.0 or is_classifier_parameter(name)
            groups.setdefault((parameter.ndim <= 1, head), []).append(parameter)
    param_groups = [{"params": params, "weight_decay": 0.0 if no_decay else config.weight_decay,
                     "lr": config.learning_rate * (1.0 if head else config.backbone_lr_factor)}
                    for (no_decay, head), params in sorted(groups.items())]
    # fused: one kernel updates every parameter, on the CPU as on CUDA (the only devices training runs on),
    # where the default steps through the parameters in lists: `python -m benchmarks optimizer-step`.
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=config.learning_rate, fused=True)
    return torch.optim.SGD(param_groups, lr=config.learning_rate, momentum=config.momentum, nesterov=config.momentum > 0,
                           fused=True)


def ema_of(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of `model`'s parameters and buffers. Its decay is warmed up, (1 + n) / (10 + n)
    after n updates until that passes `decay`, so that a short fine-tuning run is not averaged into its start."""

    def average(averaged: list, current: list, updates: torch.Tensor) -> None:
        weight = 1.0 - min(decay, (1.0 + float(updates)) / (10.0 + float(updates)))
        for mean, value in zip(averaged, current):
            if mean.is_floating_point():
                mean.lerp_(value, weight)
            else:  # BatchNorm's counter of batches: the model's own
                mean.copy_(value)

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def batch_mixer(config: TrainConfig, num_classes: int) -> Callable | None:
    """torchvision's MixUp and/or CutMix (one of the two per batch when both are on), or None."""
    mixers = ([T.MixUp(alpha=config.mixup, num_classes=num_classes)] if config.mixup else []) + \
             ([T.CutMix(alpha=config.cutmix, num_classes=num_classes)] if config.cutmix else [])
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else T.RandomChoice(mixers)


def build_setup(config: TrainConfig, num_classes: int, device, amp_dtype, steps_per_epoch: int,
                train_labels, world: World = SINGLE) -> TrainingSetup:
    """steps_per_epoch: the epoch's batches (an optimizer step takes accumulation_steps of them). train_labels: the
    training images' class indices, or for a multi-label model their ItemList (data/items.py)."""
    multi_label = bool(getattr(train_labels, "multi_label", False))
    model = build_classifier(config, num_classes, device, world)
    optimizer = build_optimizer(model, config)
    optimizer_steps = math.ceil(steps_per_epoch / config.accumulation_steps)  # an epoch's steps of the schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(optimizer_steps * config.epochs, int(optimizer_steps * config.warmup_epochs))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    weights = loss_class_weights(config, train_labels, num_classes, device)
    # Validation loss stays unweighted, as in most references: it then measures the same thing whatever
    # class_balance is, so runs with and without balancing (and older runs) compare on it, and it does not
    # depend on the training set's class sizes. Per-class recall and macro F1 show what balancing changes.
    if multi_label:
        criterion = SmoothedBinaryCrossEntropy(config.label_smoothing, weights)
        val_criterion = SmoothedBinaryCrossEntropy(config.label_smoothing)
        mix = LabelVectorMix(config.mixup, config.cutmix) if config.mixup or config.cutmix else None
    else:
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        val_criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        mix = batch_mixer(config, num_classes)
    return TrainingSetup(model, optimizer, scheduler, scaler, criterion.to(device), val_criterion, device, amp_dtype,
                         distributed.wrap_model(model, device, world), ema_of(model, config.ema) if config.ema else None,
                         mix, config.accumulation_steps, multi_label)


def loss_class_weights(config: TrainConfig, train_labels, num_classes: int, device) -> torch.Tensor | None:
    """For class_balance weighted_loss: inverse class frequencies, or for a multi-label model each class's
    positive weight (multi_label.positive_weights); else None (every class weighs 1)."""
    if config.class_balance != "weighted_loss":
        return None
    if getattr(train_labels, "multi_label", False):
        weights = positive_weights(train_labels.class_counts(num_classes), len(train_labels))
    else:
        weights = balanced_class_weights(train_labels, num_classes)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def _never() -> bool:
    return False


def _ignore(*args) -> None:
    pass


def train_one_epoch(setup: TrainingSetup, loader, *, epoch: int, start_batch: int = 0, should_stop=_never,
                    on_batch=_ignore) -> EpochStats:
    """One pass of setup.training_model over `loader`, whose first batch is batch `start_batch` of epoch `epoch`
    (both from 0). The optimizer steps every setup.accumulation_steps batches (and after the epoch's last), each
    batch's loss divided by the batches of its step: the step's gradient is the mean over its images.

    should_stop() is asked before every step's first batch and after the last one, so a stop never waits for an
    epoch, and always leaves the run at a step's boundary. on_batch(batch, loss) follows every batch, counted from
    1 within the epoch.
    """
    model, criterion, optimizer, scheduler, scaler = (setup.training_model, setup.criterion, setup.optimizer,
                                                       setup.scheduler, setup.scaler)
    device, amp_dtype, accumulation = setup.device, setup.amp_dtype, setup.accumulation_steps
    end = start_batch + len(loader)
    model.train()
    total_loss, correct, seen, batch, step_batches = 0.0, 0, 0, start_batch, 0
    started = time.perf_counter()
    for images, labels in loader:
        first_of_step = (batch - start_batch) % accumulation == 0
        if first_of_step:
            if should_stop():
                return EpochStats(stopped=True, batch=batch)
            step_batches = min(accumulation, end - batch)
        last_of_step = (batch - start_batch) % accumulation == step_batches - 1
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        images, targets = setup.mix(images, labels) if setup.mix is not None else (images, labels)
        # DDP averages the gradients at the step's last backward only.
        synchronised = contextlib.nullcontext() if last_of_step or not hasattr(model, "no_sync") else model.no_sync()
        with synchronised:
            with autocast(device, amp_dtype):
                logits = model(images)
                loss = criterion(logits.float(), targets)
            if not torch.isfinite(loss):
                raise ConfigError(f"Training diverged (loss {loss.item()}) at epoch {epoch + 1}: lower learning_rate")
            scaler.scale(loss / step_batches).backward()
        if last_of_step:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if setup.ema is not None:
                setup.ema.update_parameters(setup.model)
        batch_loss = loss.item()
        total_loss += batch_loss * len(labels)
        correct += setup.hits(logits, labels)
        seen += len(labels)
        batch += 1
        on_batch(batch, batch_loss)
    if should_stop():
        return EpochStats(stopped=True, batch=batch)
    return EpochStats(
        loss=total_loss / max(seen, 1),
        accuracy=correct / max(seen, 1),
        images_per_second=seen / max(time.perf_counter() - started, 1e-9),
        lr=scheduler.get_last_lr()[-1],
        batch=batch,
        images=seen,
        accuracy_name="exact_match" if setup.multi_label else "top1",
    )


def combine_ranks(stats: EpochStats, world: World) -> EpochStats:
    """The epoch's training figures over every rank's images (each rank's alone otherwise)."""
    loss_sum, correct, images, rate = distributed.sum_over_ranks(
        [stats.loss * stats.images, stats.accuracy * stats.images, stats.images, stats.images_per_second], world)
    images = max(images, 1)
    return EpochStats(loss_sum / images, correct / images, rate, stats.lr, stats.stopped, stats.batch, int(images),
                      stats.accuracy_name)


@torch.inference_mode()
def predict(model, loader, device, amp_dtype, num_classes: int) -> tuple:
    """(logits, labels) of the whole loader as numpy arrays, in its order: float32 logits, and the labels as the
    loader gives them (int64 class indices, or a multi-label model's N x C 0/1 vectors)."""
    model.eval()
    all_logits, all_labels = [torch.empty(0, num_classes)], []
    for images, labels in loader:
        images = images.to(device, memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            all_logits.append(model(images).float().cpu())
        all_labels.append(labels)
    labels = torch.cat(all_labels) if all_labels else torch.empty(0, dtype=torch.int64)
    return torch.cat(all_logits).numpy(), labels.numpy()


def validation_metrics(logits, labels, criterion, class_names, multi_label: bool = False) -> dict:
    """val_loss and the scorer's report (score, or score_multi_label with each class's threshold tuned here) at the
    temperature fitted on these predictions (what the checkpoint stores), each key prefixed with val_ (val_worst:
    indices into the scored rows)."""
    val_loss = criterion(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    report = score_multi_label(logits, labels, class_names) if multi_label else score(logits, labels, class_names)
    return {"val_loss": val_loss, **{f"val_{k}": v for k, v in report.items()}}
