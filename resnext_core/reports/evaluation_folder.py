"""What a model scored on a labelled test set leaves in a folder: common/scoring.py's report (the metrics the
trainer reports on its validation images) as evaluation.json, one row an image, and the trainer's pictures. The
evaluate command and a training run's test_folder (its best checkpoint, scored as the evaluate command scores
it) both write it."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from ..common.files import atomic_path, atomic_write_text
from ..common.temperature import log_softmax, sigmoid
from .plots import plot_confusion_matrix, plot_precision_recall, plot_reliability_diagram, plot_worst_predictions

REPORT = "evaluation.json"
PREDICTIONS = "predictions.csv"


def scored_items(test, model_classes: list) -> tuple:
    """(a LabelledSet's items relabelled with the model's class indices (matched by name): an image of a class the
    model does not know is left out, or for a multi-label set loses that label; {class the model does not know:
    its image count})."""
    index = {name: i for i, name in enumerate(model_classes)}
    to_model = np.array([index.get(name, -1) for name in test.class_names], dtype=np.int64)
    counts = test.items.class_counts(len(test.class_names))
    unknown = {name: int(count) for name, count, mapped in zip(test.class_names, counts, to_model) if count and mapped < 0}
    return test.items.relabelled(to_model), unknown


def write_evaluation(folder: str, report: dict, items, logits, class_names: list, unknown: dict, unreadable: list) -> str:
    """evaluation.json (the scorer's report, the unknown classes' image counts, the unreadable files),
    predictions.csv (one row an image, its confidences at the report's temperature), confusion_matrix.png (a
    multi-label model's: precision_recall.png), worst_predictions.png and reliability_diagram.png into `folder`.
    items: (path, label) in the order of the rows of `logits`. Returns the report's path."""
    multi_label = "mAP" in report
    os.makedirs(folder, exist_ok=True)
    logits = np.asarray(logits, dtype=np.float64)
    worst = report["worst"]
    document = {**report, "unknown_classes": unknown, "unreadable": [{"path": p, "error": e} for p, e in unreadable],
                "worst": [{**w, "path": items[w["index"]][0]} for w in worst]}
    if multi_label:
        _write_label_predictions(os.path.join(folder, PREDICTIONS), items, logits, class_names, report)
        plot_precision_recall(report["pr_curves"], os.path.join(folder, "precision_recall.png"),
                              title="Precision-recall curves (test)")
    else:
        _write_predictions(os.path.join(folder, PREDICTIONS), items, logits, class_names, report["temperature"])
        matrix_names = report.get("confusion_labels") or class_names
        plot_confusion_matrix(report["confusion_matrix"], matrix_names,
                              os.path.join(folder, "confusion_matrix.png"), title="Test confusion matrix")
    plot_reliability_diagram(report["reliability"], report["temperature"], os.path.join(folder, "reliability_diagram.png"),
                             title="Reliability diagram (test)",
                             confidence_label="confidence of each class" if multi_label else "confidence of the top-1 class")
    plot_worst_predictions(worst, items, class_names, os.path.join(folder, "worst_predictions.png"),
                           "Worst-classified test images (highest loss)")
    path = os.path.join(folder, REPORT)
    atomic_write_text(json.dumps(document, indent=2), path)
    return path


def _write_label_predictions(path: str, items, logits: np.ndarray, class_names: list, report: dict) -> None:
    """A multi-label model's rows: the true labels, the labels at the thresholds (best first), whether they are
    exactly the true ones, and every class's confidence (a column a class)."""
    probabilities = sigmoid(logits, report["temperature"])
    thresholds = np.asarray(report["thresholds"])
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "truth", "predicted", "exact", *class_names])
        for (image, labels), row in zip(items, probabilities):
            predicted = [int(c) for c in np.argsort(-row, kind="stable") if row[c] >= thresholds[c]]
            writer.writerow([image, ";".join(class_names[c] for c in labels), ";".join(class_names[c] for c in predicted),
                             sorted(predicted) == sorted(labels), *(f"{p:.8g}" for p in row)])


def _write_predictions(path: str, items: list, logits: np.ndarray, class_names: list, temperature: float) -> None:
    probabilities = np.exp(log_softmax(logits, temperature))
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "truth", "predicted", "confidence", "correct"])
        for (image, label), row in zip(items, probabilities):
            predicted = int(row.argmax())
            writer.writerow([image, class_names[label], class_names[predicted], f"{row[predicted]:.8g}", predicted == label])

