"""A training run's human-facing files: class lists and sizes, skipped files, metrics tables, reports, plots,
TensorBoard event files and the ONNX export. Every file is written atomically."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import torch

from ..common.checkpoint import load_checkpoint
from ..common.files import atomic_path, atomic_write_text
from ..common.models import model_with_weights
from ..common.onnx_export import INPUT_NAME, export_onnx_model, new_session
from ..reports.plots import (plot_confusion_matrix, plot_precision_recall, plot_reliability_diagram, plot_training_curves,
                             plot_worst_predictions)
from ..common.run_folder import QUANTIZATION_SAMPLE
from .checkpoint_keeper import scalars

# The run folder's pictures, in the order the training plugin shows them as image outputs.
CONFUSION_MATRIX_PNG, TRAINING_CURVES_PNG, WORST_PREDICTIONS_PNG, RELIABILITY_DIAGRAM_PNG = (
    "confusion_matrix.png", "training_curves.png", "worst_predictions.png", "reliability_diagram.png")
PICTURES = (CONFUSION_MATRIX_PNG, TRAINING_CURVES_PNG, WORST_PREDICTIONS_PNG, RELIABILITY_DIAGRAM_PNG)
PRECISION_RECALL_PNG = "precision_recall.png"  # a multi-label run's, in the confusion matrix's place
CLASS_COUNTS_CSV = "class_counts.csv"
CLASSES_TXT = "classes.txt"
SKIPPED_FILES = "skipped_files.txt"
BEST_REPORT_KEYS = ("epoch", "val_top1", "val_mAP", "val_mAP_micro", "val_exact_match", "val_precision", "val_recall",
                    "val_f1", "val_f1_micro", "val_per_class", "val_confusion_matrix", "val_thresholds", "val_temperature",
                    "val_fitted_temperature", "val_ece", "val_ece_calibrated", "val_nll", "val_nll_calibrated")


def picture_path(run_folder: str, picture: str) -> str:
    """Where one of PICTURES lies in a run folder: a multi-label run has precision-recall curves for a confusion
    matrix."""
    if picture == CONFUSION_MATRIX_PNG and os.path.isfile(os.path.join(run_folder, PRECISION_RECALL_PNG)):
        return os.path.join(run_folder, PRECISION_RECALL_PNG)
    return os.path.join(run_folder, picture)


class RunRecorder:
    """Writes into an existing run folder. Used as a context manager, it keeps a TensorBoard writer open."""

    def __init__(self, run_folder: str, class_names: list, log=print):
        self.run_folder = run_folder
        self.class_names = class_names
        self.log = log
        self.tensorboard = None
        self._curves_drawn_for = 0  # epochs in the history training_curves.png shows

    def path(self, filename: str) -> str:
        return os.path.join(self.run_folder, filename)

    def __enter__(self) -> RunRecorder:
        self.tensorboard = self._open_tensorboard()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("warning: tensorboard is not installed: no event files")
            return None
        return SummaryWriter(self.path("tensorboard"))

    def write_dataset_files(self, train_counts: list, val_counts: list) -> None:
        """classes.txt (one name a line, in label order) and class_counts.csv (class, train, val: images of each
        class as listed, in label order)."""
        atomic_write_text("\n".join(self.class_names) + "\n", self.path(CLASSES_TXT))
        self._write_csv(CLASS_COUNTS_CSV, ["class", "train", "val"], [
            {"class": name, "train": train, "val": val}
            for name, train, val in zip(self.class_names, train_counts, val_counts)
        ])

    def write_skipped_files(self, not_images: list, unreadable: list) -> None:
        """skipped_files.txt, if any file was skipped: a line a file, path<TAB>reason, the files listed that are no
        images ([(path, reason)]) and the images found unreadable so far (data.loading.Unreadable: its label
        file's line in the reason)."""
        lines = [f"{path}\t{reason}" for path, reason in not_images]
        lines += [f"{entry.path}\t{entry.reason}" + (f" ({entry.line_note})" if entry.line_note else "")
                  for entry in unreadable]
        if lines:
            atomic_write_text("\n".join(lines) + "\n", self.path(SKIPPED_FILES))

    def write_quantization_sample(self, batch: torch.Tensor) -> None:
        """quantization_sample.npy: a batch of preprocessed images (N x 3 x S x S float32), what precision
        int8 quantizes with for this run's checkpoints."""
        with atomic_path(self.path(QUANTIZATION_SAMPLE), ".npy") as tmp:
            np.save(tmp, batch.float().numpy())

    def _write_csv(self, filename: str, columns: list, rows: list) -> None:
        with atomic_path(self.path(filename), ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def write_epoch(self, metrics: dict, history: list) -> None:
        """metrics.json and metrics.csv from the whole history; the epoch's scalars to TensorBoard."""
        atomic_write_text(json.dumps(history, indent=2), self.path("metrics.json"))
        rows = [scalars(row) for row in history]
        self._write_csv("metrics.csv", list(dict.fromkeys(k for row in rows for k in row)), rows)
        if self.tensorboard is not None:
            for key, value in scalars(metrics).items():
                self.tensorboard.add_scalar(key, value, metrics["epoch"])
            self.tensorboard.flush()

    def write_best_report(self, metrics: dict) -> None:
        """best_metrics.json (per-class metrics, confusion matrix or thresholds, calibration), confusion_matrix.png
        (a multi-label run: precision_recall.png) and reliability_diagram.png of the best epoch."""
        report = {k: metrics[k] for k in BEST_REPORT_KEYS if k in metrics}
        report["class_names"] = self.class_names
        atomic_write_text(json.dumps(report, indent=2), self.path("best_metrics.json"))
        if "val_pr_curves" in metrics:
            plot_precision_recall(metrics["val_pr_curves"], self.path(PRECISION_RECALL_PNG))
            confidence = "confidence of each class"
        else:
            plot_confusion_matrix(metrics["val_confusion_matrix"], self.class_names, self.path(CONFUSION_MATRIX_PNG))
            confidence = "confidence of the top-1 class"
        plot_reliability_diagram(metrics["val_reliability"], metrics["val_temperature"], self.path(RELIABILITY_DIAGRAM_PNG),
                                 confidence_label=confidence)

    def draw_epoch_pictures(self, metrics: dict, history: list, val_items: list) -> None:
        """training_curves.png and worst_predictions.png, redrawn after every epoch: a run can be watched."""
        self.plot_curves(history)
        plot_worst_predictions(metrics["val_worst"], val_items, self.class_names, self.path(WORST_PREDICTIONS_PNG),
                               f"Worst-classified validation images (highest loss), epoch {metrics['epoch']}")

    def plot_curves(self, history: list) -> None:
        """training_curves.png, unless it already shows this history (a run's history only grows)."""
        if history and len(history) != self._curves_drawn_for:
            plot_training_curves(history, self.path(TRAINING_CURVES_PNG))
            self._curves_drawn_for = len(history)

    def export_onnx(self, sample: torch.Tensor) -> None:
        """model.onnx from best.pth, checked against torch on `sample` (a batch of preprocessed images)."""
        path, difference = export_onnx(self.path("best.pth"), self.path("model.onnx"), sample)
        self.log(f"exported {path} (max difference to torch: {difference:.2e})")


def export_onnx(checkpoint_path: str, onnx_path: str, sample: torch.Tensor) -> tuple:
    """ONNX file with a dynamic batch axis; returns (path, max |onnx - torch|) on `sample`."""
    spec = load_checkpoint(checkpoint_path)
    model = model_with_weights(spec.model_name, spec.state_dict, num_classes=len(spec.class_names))
    model.eval()
    export_onnx_model(model, sample, onnx_path)
    session = new_session(onnx_path)
    with torch.inference_mode():
        expected = model(sample).numpy()
    actual = session.run(None, {INPUT_NAME: sample.numpy()})[0]
    return onnx_path, float(np.abs(actual - expected).max())
