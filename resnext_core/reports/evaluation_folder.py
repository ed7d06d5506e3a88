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
from ..common.temperature import log_softmax
from .plots import plot_confusion_matrix, plot_reliability_diagram, plot_worst_predictions

REPORT = "evaluation.json"
PREDICTIONS = "predictions.csv"


def scored_items(test, model_classes: list) -> tuple:
    """(ItemList of a LabelledSet's images whose class the model knows (matched by name), relabelled with the
    model's class indices; {class the model does not know: its image count})."""
    index = {name: i for i, name in enumerate(model_classes)}
    to_model = np.array([index.get(name, -1) for name in test.class_names], dtype=np.int64)
    labels = to_model[test.items.labels]
    counts = np.bincount(test.items.labels[labels < 0], minlength=len(test.class_names))
    unknown = {test.class_names[i]: int(count) for i, count in enumerate(counts) if count}
    known = np.flatnonzero(labels >= 0)
    items = test.items.take(known)
    items.labels = labels[known].astype(np.int32)
    return items, unknown


def write_evaluation(folder: str, report: dict, items, logits, class_names: list, unknown: dict, unreadable: list) -> str:
    """evaluation.json (score()'s report, the unknown classes' image counts, the unreadable files), predictions.csv
    (one row an image, its confidence at the report's temperature), confusion_matrix.png, worst_predictions.png
    and reliability_diagram.png into `folder`. items: (path, label index) in the order of the rows of `logits`.
    Returns the report's path."""
    os.makedirs(folder, exist_ok=True)
    logits = np.asarray(logits, dtype=np.float64)
    worst = report["worst"]
    document = {**report, "unknown_classes": unknown, "unreadable": [{"path": p, "error": e} for p, e in unreadable],
                "worst": [{**w, "path": items[w["index"]][0]} for w in worst]}
    _write_predictions(os.path.join(folder, PREDICTIONS), items, logits, class_names, report["temperature"])
    matrix_names = report.get("confusion_labels") or class_names
    plot_confusion_matrix(report["confusion_matrix"], matrix_names,
                          os.path.join(folder, "confusion_matrix.png"), title="Test confusion matrix")
    plot_reliability_diagram(report["reliability"], report["temperature"], os.path.join(folder, "reliability_diagram.png"),
                             title="Reliability diagram (test)")
    plot_worst_predictions(worst, items, class_names, os.path.join(folder, "worst_predictions.png"),
                           "Worst-classified test images (highest loss)")
    path = os.path.join(folder, REPORT)
    atomic_write_text(json.dumps(document, indent=2), path)
    return path


def _write_predictions(path: str, items: list, logits: np.ndarray, class_names: list, temperature: float) -> None:
    probabilities = np.exp(log_softmax(logits, temperature))
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "truth", "predicted", "confidence", "correct"])
        for (image, label), row in zip(items, probabilities):
            predicted = int(row.argmax())
            writer.writerow([image, class_names[label], class_names[predicted], f"{row[predicted]:.8g}", predicted == label])

