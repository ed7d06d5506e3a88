"""Classification metrics from scikit-learn: correct for any class count, never NaN."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from .temperature import log_softmax


OTHER = "(other)"  # the confusion matrix's column of predictions outside the evaluated classes


def classification_metrics(labels, logits, class_names, evaluated=None) -> dict:
    """Top-1, top-5 (over 5 classes), macro and per-class precision/recall/F1, confusion matrix.

    evaluated: the class indices to report (default: every class). A test set with some of the model's classes
    (ImageNet weights on a few of theirs) is reported on those: the macro averages are theirs, and the confusion
    matrix gets an OTHER column (and an empty row, to stay square) for predictions of any other class.
    """
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits.argmax(axis=1)
    indices = list(range(len(class_names))) if evaluated is None else sorted(evaluated)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    macro = precision_recall_fscore_support(labels, predictions, labels=indices, average="macro", zero_division=0)
    matrix_labels, matrix_names = indices, [class_names[i] for i in indices]
    if len(indices) < len(class_names):
        other = len(class_names)
        predictions = np.where(np.isin(predictions, indices), predictions, other)
        matrix_labels, matrix_names = indices + [other], matrix_names + [OTHER]
    result = {
        "top1": float((logits.argmax(axis=1) == labels).mean()) if labels.size else 0.0,
        "precision": float(macro[0]),
        "recall": float(macro[1]),
        "f1": float(macro[2]),
        "per_class": {
            class_names[i]: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for i, p, r, f, n in zip(indices, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=matrix_labels).tolist(),
    }
    if evaluated is not None:
        result["confusion_labels"] = matrix_names
    if len(class_names) > 5:  # with 5 classes or fewer, every image is in its top 5
        result["top5"] = float(top_k_accuracy_score(labels, logits, k=5, labels=list(range(len(class_names)))))
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
