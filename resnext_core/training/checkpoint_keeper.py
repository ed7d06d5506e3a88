"""A training run's checkpoints: best/stale tracking, history, atomic best.pth and last.pth, resume."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..common.checkpoint import safe_load, save_checkpoint
from ..common.errors import CheckpointError
from ..common.files import atomic_copy
from ..common.preprocess import Preprocessing
from .config import TRAIN_SCHEMA


# Settings a resumed run must share with its checkpoint: the optimizer state, its parameter groups, the set of
# trainable parameters and the moving average only fit the run that wrote them, and a changed recipe would make
# the resumed run another run.
MUST_MATCH_ON_RESUME = ("optimizer", "train_mode", "ema", "backbone_lr_factor", "accumulation_steps", "augment",
                        "random_erasing", "mixup", "cutmix")


@dataclass(frozen=True)
class CheckpointMetadata:
    """What every checkpoint of a run repeats: how to rebuild the model, and how it was trained."""

    model_name: str
    class_names: list
    preprocessing: Preprocessing
    train_params: dict  # {setting: stored string} of the run's TrainConfig: TRAIN_SCHEMA.stored(config)
    multi_label: bool = False  # a sigmoid a class, each with its threshold


@dataclass
class TrainingState:
    """Where a run stands; saved into every checkpoint, so a resumed run carries on from it."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed within the next epoch (a run stopped mid-epoch resumes there)
    history: list = field(default_factory=list)  # one row per validated epoch
    best: dict | None = None  # scalar metrics of the best epoch
    stale: int = 0  # epochs since the best one
    temperature: float = 1.0  # fitted on the last validated epoch (common/temperature.py); inference divides logits by it
    thresholds: list | None = None  # a multi-label model's, tuned on the last validated epoch (at `temperature`)

    def start_batch(self, epoch: int) -> int:
        return self.batch if epoch == self.epoch else 0

    @property
    def epochs_done(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0


def stored_setting(train_params: dict, name: str):
    """A checkpoint's setting as its typed value, compared like with like: what a run stored (the schema's stored
    string, or str(value) in runs before it), its default where the run is older than the setting."""
    option = TRAIN_SCHEMA[name]
    text = train_params.get(name, option.format(option.default))
    return option.parse("auto" if text == "None" else text)  # str(None) of older runs is the stored "auto"


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def history_row(metrics: dict) -> dict:
    """Every scalar plus per-class precision/recall/F1: the JSON history keeps them, the CSV keeps scalars."""
    return {**scalars(metrics), "val_per_class": metrics["val_per_class"]}


def is_better(metrics: dict, best: dict | None) -> bool:
    """Higher validation top-1 (a multi-label model's: mAP) wins; on a tie, lower validation loss."""
    if best is None:
        return True
    key = "val_mAP" if "val_mAP" in metrics else "val_top1"
    return (metrics[key], -metrics["val_loss"]) > (best[key], -best["val_loss"])


class CheckpointKeeper:
    """Owns a run's TrainingState and writes it, with the model and optimizer, as best.pth and last.pth.

    keep_best False writes no best.pth (last.pth is always written, so a run is never lost).
    writes False keeps the state and writes nothing: the ranks other than 0 of a distributed run.
    ema: the moving average of the weights, if the run keeps one: a checkpoint's state_dict (what inference
    loads) is then the average, and trained_state_dict the weights the optimizer steps.
    """

    def __init__(self, run_folder: str, model, optimizer, scheduler, scaler, metadata: CheckpointMetadata, keep_best=True,
                 writes=True, ema=None):
        self.run_folder = run_folder
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.ema = ema
        self.metadata = metadata
        self.keep_best = keep_best
        self.writes = writes
        self.state = TrainingState()

    def path(self, filename: str) -> str:
        return os.path.join(self.run_folder, filename)

    def end_epoch(self, metrics: dict) -> bool:
        """Record a validated epoch (metrics["epoch"] counts from 1); True when it is the best so far."""
        state = self.state
        improved = is_better(metrics, state.best)
        state.epoch, state.batch = metrics["epoch"], 0
        state.temperature = metrics["val_temperature"]
        state.thresholds = metrics.get("val_thresholds")
        state.history.append(history_row(metrics))
        if improved:
            state.best, state.stale = scalars(metrics), 0
        else:
            state.stale += 1
        if improved and self.keep_best:  # best.pth first: a crash in between leaves last.pth at the epoch before
            self._save("best.pth")
            self._copy("best.pth", "last.pth")  # the same bytes: serialized once
        else:
            self._save("last.pth")
        return improved

    def save_interrupted(self, epoch: int, batch: int) -> str:
        """last.pth resumable at `batch` of `epoch` (counted from 0); returns its path."""
        self.state.epoch, self.state.batch = epoch, batch
        self._save("last.pth")
        return self.path("last.pth")

    def _save(self, filename: str) -> None:
        if not self.writes:
            return
        state, metadata = self.state, self.metadata
        averaged = {} if self.ema is None else {"trained_state_dict": _cpu(self.model.state_dict()),
                                                "ema_updates": int(self.ema.n_averaged)}
        save_checkpoint(
            self.path(filename),
            metadata.model_name,
            _cpu((self.model if self.ema is None else self.ema.module).state_dict()),
            metadata.class_names,
            metadata.preprocessing,
            epoch=state.epoch,
            batch=state.batch,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            history=state.history,
            best=state.best,
            stale=state.stale,
            temperature=state.temperature,
            train_params=metadata.train_params,
            **({"multi_label": True, "thresholds": state.thresholds} if metadata.multi_label else {}),
            **averaged,
        )

    def _copy(self, source: str, target: str) -> None:
        if self.writes:
            atomic_copy(self.path(source), self.path(target))

    def resume(self, path: str) -> None:
        """Load weights, optimizer, scheduler, scaler and state from a run's last.pth or best.pth."""
        data = safe_load(path)
        self._check_resumable(path, data)
        self.model.load_state_dict(data.get("trained_state_dict", data["state_dict"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(data["state_dict"])
            self.ema.n_averaged.fill_(int(data["ema_updates"]))
        # The saved groups bring their hyperparameters and also how the step runs (fused or not, as the
        # run that wrote them chose): the step keeps this run's choice.
        how_steps_run = [{key: group[key] for key in ("fused", "foreach") if key in group}
                         for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(data["optimizer"])
        for group, how in zip(self.optimizer.param_groups, how_steps_run):
            group.update(how)
        self.scheduler.load_state_dict(data["scheduler"])
        if data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        self.state = TrainingState(
            epoch=int(data["epoch"]),
            batch=int(data.get("batch", 0)),
            history=list(data.get("history", [])),
            best=self._carry_over_best(path, data.get("best")),
            stale=int(data.get("stale", 0)),
            temperature=float(data.get("temperature", 1.0)),
            thresholds=data.get("thresholds"),
        )

    def _check_resumable(self, path: str, data) -> None:
        needed = ("state_dict", "optimizer", "scheduler", "epoch", "class_names", "model_name")
        if not isinstance(data, dict) or any(k not in data for k in needed):
            raise CheckpointError(f"resume file {path} is not a training checkpoint (last.pth or best.pth of a run)")
        if data["model_name"] != self.metadata.model_name:
            raise CheckpointError(f"resume file {path} is a {data['model_name']}, model_name is {self.metadata.model_name}")
        saved = data.get("train_params", {})
        for name in MUST_MATCH_ON_RESUME:
            wanted, had = (stored_setting(params, name) for params in (self.metadata.train_params, saved))
            if had != wanted:
                raise CheckpointError(
                    f"resume file {path} was trained with {name} '{had}', "
                    f"this run asks for '{wanted}': they must match to continue"
                )
        if bool(data.get("multi_label", False)) != self.metadata.multi_label:
            raise CheckpointError(f"resume file {path} is a {'multi' if data.get('multi_label') else 'single'}-label model: "
                                  "multi_label must be what it was")
        if list(data["class_names"]) != list(self.metadata.class_names):
            raise CheckpointError(f"resume file {path} was trained on other classes: {', '.join(data['class_names'])}")

    def _carry_over_best(self, path: str, best: dict | None) -> dict | None:
        """The new run folder starts with the best model so far, so best.pth always exists there."""
        previous_best = os.path.join(os.path.dirname(os.path.abspath(path)), "best.pth")
        if best is None or not os.path.isfile(previous_best):
            return None  # its weights are gone: this run's own best becomes best.pth
        if not self.writes:
            return best
        atomic_copy(previous_best, self.path("best.pth"))
        return best
