"""Training loop shared by the training plugin and scripts: no ikomia, no Qt.

Recipe: RandomResizedCrop + flip; validation with exactly the inference preprocessing; SGD or AdamW;
linear warmup then cosine decay (per step); label smoothing; AMP on CUDA, bf16 autocast on CPUs with
native bf16; channels_last; seeded and resumable at a batch.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_path, atomic_write_text, safe_load, save_checkpoint
from .data import EpochBatches, ImageDataset, TrainTransform, discover, read_image
from .errors import CheckpointError, ConfigError
from .metrics import classification_metrics
from .models import NO_WEIGHTS, build_model, load_pretrained_state_dict, resolve_model_name, resolve_weights
from .preprocess import Preprocessing
from .runtime import autocast, disable_openmp_dynamic_threads, resolve_device, resolve_precision

logger = logging.getLogger(__name__)

TRAIN_MODES = ("fine_tune", "feature_extract", "scratch")
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    dataset_folder: str
    output_folder: str
    model_name: str = "resnext50_32x4d"
    weights: str = "DEFAULT"
    train_mode: str = "fine_tune"
    input_size: int = 224
    epochs: int = 15
    batch_size: int = 8
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.25
    hflip: bool = True
    val_split: float = 0.2
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True
    patience: int = 0  # epochs without improvement before stopping; 0 = never
    export_pth: bool = True  # False: no best.pth (last.pth stays, so a run is never lost)
    export_onnx: bool = False
    resume: str = ""
    run_name: str = ""

    def validate(self) -> None:
        self.model_name = resolve_model_name(self.model_name)
        if self.train_mode not in TRAIN_MODES:
            raise ConfigError(f"train_mode must be one of {', '.join(TRAIN_MODES)}, got '{self.train_mode}'")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.pretrained:
            resolve_weights(self.model_name, self.weights)
        elif self.train_mode == "feature_extract":
            raise ConfigError("train_mode 'feature_extract' needs pretrained weights (weights is 'none')")

    @property
    def pretrained(self) -> bool:
        return self.train_mode != "scratch" and str(self.weights).strip().lower() not in NO_WEIGHTS


@dataclass
class EpochResult:
    epoch: int
    metrics: dict
    is_best: bool


@dataclass
class TrainResult:
    run_folder: str
    epochs_done: int
    stopped: bool
    best: dict
    history: list = field(default_factory=list)
    skipped: int = 0


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


class Trainer:
    """One training run. Callbacks: on_epoch(EpochResult), should_stop() -> bool (checked every batch)."""

    def __init__(self, config: TrainConfig, on_epoch=None, should_stop=None, log=print):
        config.validate()
        self.config = config
        self.on_epoch = on_epoch or (lambda result: None)
        self.should_stop = should_stop or (lambda: False)
        self.log = log
        self.device = resolve_device(config.device)
        self.amp_dtype = self._amp_dtype()
        self.split = discover(config.dataset_folder, config.val_split, config.seed)
        for warning in self.split.warnings:
            self.log(f"warning: {warning}")
        if self.split.skipped:
            self.log(f"skipped {len(self.split.skipped)} unreadable file(s), e.g. {self.split.skipped[0][0]}: {self.split.skipped[0][1]}")
        self.class_names = self.split.class_names
        self.preprocessing = self._preprocessing()
        self.batch_size = self._batch_size()
        self.run_folder = unique_run_folder(config.output_folder, config.run_name)

    # --- set-up -------------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype:
        if not self.config.amp:
            return torch.float32
        return resolve_precision("auto", self.device)

    def _preprocessing(self) -> Preprocessing:
        if self.config.pretrained:
            return Preprocessing.from_weights(resolve_weights(self.config.model_name, self.config.weights), self.config.input_size)
        return Preprocessing().at_size(self.config.input_size)

    def _batch_size(self) -> int:
        if self.config.batch_size > len(self.split.train):
            self.log(f"warning: batch_size {self.config.batch_size} > {len(self.split.train)} training images: using {len(self.split.train)}")
            return len(self.split.train)
        return self.config.batch_size

    def _build_model(self) -> nn.Module:
        config = self.config
        model = build_model(config.model_name, zero_init_residual=not config.pretrained)
        if config.pretrained:
            model.load_state_dict(load_pretrained_state_dict(resolve_weights(config.model_name, config.weights)))
        if config.train_mode == "feature_extract":
            for parameter in model.parameters():
                parameter.requires_grad = False
        model.fc = nn.Linear(model.fc.in_features, len(self.class_names))
        return model.to(self.device, memory_format=torch.channels_last)

    def _optimizer(self, model: nn.Module):
        config = self.config
        decay, no_decay = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:  # no weight decay on norms and biases
                (no_decay if parameter.ndim <= 1 else decay).append(parameter)
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if config.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=config.learning_rate)
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, nesterov=config.momentum > 0)

    def _loader(self, dataset, **batching):
        """batching: batch_sampler=... (training) or batch_size=... (validation, in order)."""
        return torch.utils.data.DataLoader(
            dataset, num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda", **batching
        )

    # --- run ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        config = self.config
        disable_openmp_dynamic_threads()
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        model = self._build_model()
        optimizer = self._optimizer(model)
        train_set = ImageDataset(self.split.train, TrainTransform(self.preprocessing, config.min_crop_scale, config.hflip))
        val_loader = self._loader(ImageDataset(self.split.val, self.preprocessing), batch_size=max(self.batch_size, 32))
        steps_per_epoch = len(EpochBatches(len(train_set), self.batch_size, config.seed, 0))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(steps_per_epoch * config.epochs, int(steps_per_epoch * config.warmup_epochs))
        )
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        state = {"epoch": 0, "batch": 0, "history": [], "best": None, "stale": 0}
        if config.resume:
            state = self._resume(model, optimizer, scheduler, scaler)
        self._write_text_files()
        writer = self._tensorboard()
        stopped = False
        try:
            for epoch in range(state["epoch"], config.epochs):
                start_batch = state["batch"] if epoch == state["epoch"] else 0
                stopped, train_stats = self._train_epoch(model, optimizer, scheduler, scaler, criterion, train_set, epoch, start_batch)
                if stopped:
                    self._save("last.pth", model, optimizer, scheduler, scaler, state, epoch=epoch, batch=train_stats["batch"])
                    self.log(f"stopped during epoch {epoch + 1}: resumable checkpoint {os.path.join(self.run_folder, 'last.pth')}")
                    break
                metrics = {"epoch": epoch + 1, **train_stats, **self._evaluate(model, criterion, val_loader)}
                metrics["skipped_files"] = len(self.split.skipped)
                is_best = self._is_better(metrics, state["best"])
                # Per epoch: every scalar plus per-class precision/recall/F1 (JSON; the CSV keeps scalars).
                state["history"].append({**_scalars(metrics), "val_per_class": metrics["val_per_class"]})
                if is_best:
                    state["best"], state["stale"] = _scalars(metrics), 0
                    if config.export_pth or config.export_onnx:
                        self._save("best.pth", model, optimizer, scheduler, scaler, state, epoch=epoch + 1, batch=0)
                    self._write_report(metrics)
                else:
                    state["stale"] += 1
                self._save("last.pth", model, optimizer, scheduler, scaler, state, epoch=epoch + 1, batch=0)
                self._write_metrics(state["history"])
                if writer is not None:
                    for key, value in _scalars(metrics).items():
                        writer.add_scalar(key, value, epoch + 1)
                    writer.flush()
                self.log(_epoch_line(metrics, config.epochs))
                self.on_epoch(EpochResult(epoch + 1, metrics, is_best))
                if config.patience and state["stale"] >= config.patience:
                    self.log(f"early stop: no improvement for {config.patience} epoch(s)")
                    break
        finally:
            if writer is not None:
                writer.close()
        if state["best"] is not None and config.export_onnx and not stopped:
            self._export_onnx()
        self._plot_curves(state["history"])
        epochs_done = state["history"][-1]["epoch"] if state["history"] else 0
        return TrainResult(self.run_folder, epochs_done, stopped, state["best"] or {}, state["history"], len(self.split.skipped))

    def _train_epoch(self, model, optimizer, scheduler, scaler, criterion, train_set, epoch, start_batch):
        model.train()
        sampler = EpochBatches(len(train_set), self.batch_size, self.config.seed, epoch, start_batch)
        total_loss, correct, seen, started = 0.0, 0, 0, time.perf_counter()
        batch = start_batch
        for images, labels in self._loader(train_set, batch_sampler=sampler):
            if self.should_stop():
                return True, {"batch": batch}
            images = images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
            labels = labels.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp_dtype):
                logits = model(images)
                loss = criterion(logits.float(), labels)
            if not torch.isfinite(loss):
                raise ConfigError(f"Training diverged (loss {loss.item()}) at epoch {epoch + 1}: lower learning_rate")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total_loss += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
            batch += 1
        if self.should_stop():
            return True, {"batch": batch}
        elapsed = time.perf_counter() - started
        return False, {
            "train_loss": total_loss / max(seen, 1),
            "train_top1": correct / max(seen, 1),
            "images_per_second": seen / max(elapsed, 1e-9),
            "lr": scheduler.get_last_lr()[0],
        }

    @torch.inference_mode()
    def _evaluate(self, model, criterion, loader) -> dict:
        model.eval()
        all_logits, all_labels, total_loss = [], [], 0.0
        for images, labels in loader:
            images = images.to(self.device, memory_format=torch.channels_last)
            with autocast(self.device, self.amp_dtype):
                logits = model(images).float().cpu()
            total_loss += criterion(logits, labels).item() * labels.numel()
            all_logits.append(logits)
            all_labels.append(labels)
        logits, labels = torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()
        metrics = classification_metrics(labels, logits, self.class_names)
        result = {"val_loss": total_loss / len(labels)}
        result.update({f"val_{k}": v for k, v in metrics.items()})
        return result

    @staticmethod
    def _is_better(metrics: dict, best) -> bool:
        if best is None:
            return True
        return (metrics["val_top1"], -metrics["val_loss"]) > (best["val_top1"], -best["val_loss"])

    # --- files --------------------------------------------------------------------------------
    def _save(self, filename, model, optimizer, scheduler, scaler, state, epoch, batch):
        save_checkpoint(
            os.path.join(self.run_folder, filename),
            self.config.model_name,
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            self.class_names,
            self.preprocessing,
            epoch=epoch,
            batch=batch,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            history=state["history"],
            best=state["best"],
            stale=state["stale"],
            train_params={k: str(v) for k, v in asdict(self.config).items()},
        )

    def _resume(self, model, optimizer, scheduler, scaler) -> dict:
        data = safe_load(self.config.resume)
        needed = ("state_dict", "optimizer", "scheduler", "epoch", "class_names", "model_name")
        if not isinstance(data, dict) or any(k not in data for k in needed):
            raise CheckpointError(f"resume file {self.config.resume} is not a training checkpoint (last.pth or best.pth of a run)")
        if data["model_name"] != self.config.model_name:
            raise CheckpointError(f"resume file {self.config.resume} is a {data['model_name']}, model_name is {self.config.model_name}")
        saved = data.get("train_params", {})
        for name in ("optimizer", "train_mode"):
            if name in saved and saved[name] != str(getattr(self.config, name)):
                raise CheckpointError(
                    f"resume file {self.config.resume} was trained with {name} '{saved[name]}', "
                    f"this run asks for '{getattr(self.config, name)}': they must match to continue"
                )
        if list(data["class_names"]) != self.class_names:
            raise CheckpointError(f"resume file {self.config.resume} was trained on other classes: {', '.join(data['class_names'])}")
        model.load_state_dict(data["state_dict"])
        optimizer.load_state_dict(data["optimizer"])
        scheduler.load_state_dict(data["scheduler"])
        if data.get("scaler"):
            scaler.load_state_dict(data["scaler"])
        self.log(f"resuming {self.config.resume} at epoch {data['epoch'] + 1}, batch {data.get('batch', 0)}")
        best = data.get("best")
        previous_best = os.path.join(os.path.dirname(os.path.abspath(self.config.resume)), "best.pth")
        if best is not None and os.path.isfile(previous_best):
            # The new run folder starts with the best model so far: best.pth always exists there.
            with atomic_path(os.path.join(self.run_folder, "best.pth"), ".pth") as tmp:
                shutil.copy2(previous_best, tmp)
        else:
            best = None  # its weights are gone: this run's own best becomes best.pth
        return {
            "epoch": int(data["epoch"]),
            "batch": int(data.get("batch", 0)),
            "history": list(data.get("history", [])),
            "best": best,
            "stale": int(data.get("stale", 0)),
        }

    def _write_text_files(self):
        atomic_write_text("\n".join(self.class_names) + "\n", os.path.join(self.run_folder, "classes.txt"))
        if self.split.skipped:
            lines = [f"{path}\t{reason}" for path, reason in self.split.skipped]
            atomic_write_text("\n".join(lines) + "\n", os.path.join(self.run_folder, "skipped_files.txt"))

    def _write_metrics(self, history: list):
        atomic_write_text(json.dumps(history, indent=2), os.path.join(self.run_folder, "metrics.json"))
        rows = [_scalars(row) for row in history]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        path = os.path.join(self.run_folder, "metrics.csv")
        with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def _write_report(self, metrics: dict):
        """Per-class metrics and confusion matrix of the best epoch."""
        report = {k: metrics[k] for k in ("epoch", "val_top1", "val_precision", "val_recall", "val_f1", "val_per_class", "val_confusion_matrix")}
        report["class_names"] = self.class_names
        atomic_write_text(json.dumps(report, indent=2), os.path.join(self.run_folder, "best_metrics.json"))
        from .reports import plot_confusion_matrix

        plot_confusion_matrix(metrics["val_confusion_matrix"], self.class_names, os.path.join(self.run_folder, "confusion_matrix.png"))

    def _plot_curves(self, history: list):
        if history:
            from .reports import plot_training_curves

            plot_training_curves(history, os.path.join(self.run_folder, "training_curves.png"))

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("warning: tensorboard is not installed: no event files")
            return None
        return SummaryWriter(os.path.join(self.run_folder, "tensorboard"))

    def _export_onnx(self):
        from .reports import export_onnx

        images = torch.stack([self.preprocessing(img) for img in _sample_images(self.split.val, 4)])
        path, difference = export_onnx(os.path.join(self.run_folder, "best.pth"), os.path.join(self.run_folder, "model.onnx"), images)
        self.log(f"exported {path} (max difference to torch: {difference:.2e})")


def _sample_images(items, count):
    return [read_image(path) for path, _ in items[:count]]


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _epoch_line(metrics: dict, epochs: int) -> str:
    line = (
        f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f} top-1 {100 * metrics['train_top1']:.1f}% | "
        f"val loss {metrics['val_loss']:.4f} top-1 {100 * metrics['val_top1']:.1f}%"
    )
    if "val_top5" in metrics:
        line += f" top-5 {100 * metrics['val_top5']:.1f}%"
    return line + f" F1 {metrics['val_f1']:.3f} | {metrics['images_per_second']:.0f} img/s"
