"""Classification metrics from scikit-learn: correct for any class count, never NaN."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from .temperature import log_softmax


def classification_metrics(labels, logits, class_names) -> dict:
    """Top-1, top-5 (5+ classes), macro and per-class precision/recall/F1, confusion matrix."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits.argmax(axis=1)
    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    macro = precision_recall_fscore_support(labels, predictions, labels=indices, average="macro", zero_division=0)
    result = {
        "top1": float((predictions == labels).mean()) if labels.size else 0.0,
        "precision": float(macro[0]),
        "recall": float(macro[1]),
        "f1": float(macro[2]),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
    }
    if len(class_names) >= 5:
        result["top5"] = float(top_k_accuracy_score(labels, logits, k=5, labels=indices))
    return result


def worst_predictions(labels, logits, count: int) -> list:
    """The `count` samples with the highest cross-entropy (fastai's "top losses"), worst first:
    [{"index", "label", "predicted", "confidence" (of the prediction), "loss"}, ...]."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    log_probabilities = log_softmax(logits)
    losses = -log_probabilities[np.arange(len(labels)), labels]
    predicted = logits.argmax(axis=1)
    order = np.argsort(-losses, kind="stable")[:count]
    return [
        {"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
         "confidence": float(np.exp(log_probabilities[i, predicted[i]])), "loss": float(losses[i])}
        for i in order
    ]
