"""The one scorer: a model's logits on labelled images in, every metric out. Validation (each epoch), a training
run's test_folder and the evaluate command all score with score(), so a figure means one thing wherever it is
read. Metrics from scikit-learn: correct for any class count, never NaN.

Logits: N x C, softmax(logits) being the model's raw confidences; log-probabilities are logits too (they differ
by a constant per row, which neither the softmax nor a temperature sees).

The names, and the temperature each confidence figure uses:
  top1, top5 (over 5 classes only), precision, recall, f1 (macro over the evaluated classes), per_class,
  confusion_matrix (+ confusion_labels where some classes are not evaluated), images
  nll, ece                   the raw softmax (temperature 1)
  temperature                the temperature the calibrated figures use: the model's, or where none is given
                             the fitted one (validation: what the checkpoint then stores)
  nll_calibrated, ece_calibrated   at `temperature`
  fitted_temperature         the temperature these predictions alone would fit (common/temperature.py)
  reliability                {"raw", "calibrated"}: per confidence bin, count, mean confidence and accuracy
  worst                      the highest-loss images, worst first (indices into the scored rows)

A multi-label model (score_multi_label: a sigmoid a class, the labels an N x C 0/1 matrix) has its own figures:
  mAP, mAP_micro             average precision (scikit-learn's) over the classes with an image (macro), and over
                             every image-class pair (micro); per class in per_class[name]["ap"]
  thresholds                 each class's: where its confidence counts as a label (the model's, or where none are
                             given the best F1 of each class on these predictions, at `temperature`)
  f1, precision, recall      macro over the classes, at the thresholds (per class in per_class); f1_micro
  exact_match                the share of images whose labels at the thresholds are exactly their true ones
  nll, ece (and _calibrated) each class's sigmoid as a probability: binary NLL, and reliability over every
                             image-class pair (bins of confidence against the share that are true labels)
  pr_curves                  each class's precision-recall curve (at the calibrated confidences)
  worst                      the highest-loss images, with their true and predicted labels (class indices)
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (average_precision_score, confusion_matrix, precision_recall_curve,
                             precision_recall_fscore_support, top_k_accuracy_score)

from .temperature import binary_negative_log_likelihood, fit_temperature, log_softmax, negative_log_likelihood, sigmoid

ECE_BINS = 15  # the usual choice since Guo et al.; bins with no sample do not count
WORST_SHOWN = 12  # images in the worst-predictions gallery
OTHER = "(other)"  # the confusion matrix's column of predictions outside the evaluated classes


def score(logits, labels, class_names: list, temperature: float | None = None, evaluated=None) -> dict:
    """Every metric of `logits` (N x C) against true `labels` (N class indices): see the module's names.

    temperature: the model's (None: the one fitted on these predictions). evaluated: the class indices to report
    (default: every class; a test set with some of the model's classes is reported on those).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    fitted = fit_temperature(logits, labels)
    temperature = fitted if temperature is None else float(temperature)
    raw, calibrated = np.exp(log_softmax(logits)), np.exp(log_softmax(logits, temperature))
    return {
        **classification_metrics(labels, logits, class_names, evaluated),
        "images": int(len(labels)),
        "nll": negative_log_likelihood(logits, labels),
        "ece": expected_calibration_error(raw, labels),
        "temperature": temperature,
        "nll_calibrated": negative_log_likelihood(logits, labels, temperature),
        "ece_calibrated": expected_calibration_error(calibrated, labels),
        "fitted_temperature": fitted,
        "reliability": {"raw": reliability_bins(raw, labels), "calibrated": reliability_bins(calibrated, labels)},
        "worst": worst_predictions(labels, logits, WORST_SHOWN),
    }


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
    [{"index", "label", "predicted", "confidence" (of the prediction, raw softmax), "loss"}, ...]."""
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


def reliability_bins(probabilities, labels, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin: samples, mean confidence and accuracy of the top-1 label."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    # Bin i holds (i/bins, (i+1)/bins]; a confidence is never below 1/classes, so never 0.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return {"count": counts.tolist(),
            "confidence": np.nan_to_num(mean_confidence).tolist(),
            "accuracy": np.nan_to_num(accuracy).tolist()}


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """The top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their
    share of the samples."""
    return expected_calibration_error_of_bins(reliability_bins(probabilities, labels, bins))


def expected_calibration_error_of_bins(table: dict) -> float:
    """ECE from reliability_bins()' table."""
    counts = np.asarray(table["count"], dtype=np.float64)
    if not counts.sum():
        return 0.0
    gaps = np.abs(np.asarray(table["accuracy"]) - np.asarray(table["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


def score_multi_label(logits, targets, class_names: list, temperature: float | None = None, thresholds=None) -> dict:
    """Every metric of a multi-label model's `logits` (N x C) against 0/1 `targets` (N x C): see the module's names.

    temperature: the model's (None: fitted on these predictions); thresholds: the model's, for confidences at that
    temperature (None: each class's best F1 on these predictions)."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    fitted = fit_temperature(logits, targets, multi_label=True)
    temperature = fitted if temperature is None else float(temperature)
    raw, calibrated = sigmoid(logits), sigmoid(logits, temperature)
    thresholds = best_f1_thresholds(calibrated, targets) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    predicted = calibrated >= thresholds
    truth = targets > 0.5
    present = [c for c in range(len(class_names)) if truth[:, c].any()]
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    ap = {c: float(average_precision_score(truth[:, c], calibrated[:, c])) for c in present}
    losses = -(targets * np.log(np.clip(calibrated, 1e-12, 1)) + (1 - targets) * np.log(np.clip(1 - calibrated, 1e-12, 1)))
    return {
        "mAP": float(np.mean(list(ap.values()))) if ap else 0.0,
        "mAP_micro": float(average_precision_score(truth.ravel(), calibrated.ravel())) if truth.any() else 0.0,
        "f1": float(f1[present].mean()) if present else 0.0,
        "precision": float(precision[present].mean()) if present else 0.0,
        "recall": float(recall[present].mean()) if present else 0.0,
        "f1_micro": float(precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)[2]),
        "exact_match": float((predicted == truth).all(axis=1).mean()) if len(truth) else 0.0,
        "thresholds": thresholds.tolist(),
        "per_class": {
            name: {"ap": ap.get(c), "f1": float(f1[c]), "precision": float(precision[c]), "recall": float(recall[c]),
                   "threshold": float(thresholds[c]), "support": int(support[c])}
            for c, name in enumerate(class_names)
        },
        "images": int(len(targets)),
        "nll": binary_negative_log_likelihood(logits, targets),
        "ece": expected_calibration_error_of_bins(probability_bins(raw, truth)),
        "temperature": temperature,
        "nll_calibrated": binary_negative_log_likelihood(logits, targets, temperature),
        "ece_calibrated": expected_calibration_error_of_bins(probability_bins(calibrated, truth)),
        "fitted_temperature": fitted,
        "reliability": {"raw": probability_bins(raw, truth), "calibrated": probability_bins(calibrated, truth)},
        "pr_curves": {class_names[c]: {**precision_recall_points(truth[:, c], calibrated[:, c]), "ap": ap[c]} for c in present},
        "worst": [{"index": int(i), "loss": float(losses[i].sum()), "label": np.flatnonzero(truth[i]).tolist(),
                   "predicted": np.flatnonzero(predicted[i]).tolist()}
                  for i in np.argsort(-losses.sum(axis=1), kind="stable")[:WORST_SHOWN]],
    }


PR_POINTS = 101  # recall levels a class's precision-recall curve is kept at


def precision_recall_points(truth, probabilities) -> dict:
    """A class's precision-recall curve at PR_POINTS recall levels (the best precision at that recall or more)."""
    precision, recall, _ = precision_recall_curve(truth, probabilities)
    levels = np.linspace(0, 1, PR_POINTS)
    best = [float(precision[recall >= level].max()) if (recall >= level).any() else 0.0 for level in levels]
    return {"recall": levels.tolist(), "precision": best}


def best_f1_thresholds(probabilities, targets) -> np.ndarray:
    """Each class's confidence threshold of best F1 on these predictions (0.5 for a class with no true label)."""
    thresholds = np.full(probabilities.shape[1], 0.5)
    for c in range(probabilities.shape[1]):
        truth = targets[:, c] > 0.5
        if not truth.any():
            continue
        precision, recall, candidates = precision_recall_curve(truth, probabilities[:, c])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
        thresholds[c] = float(candidates[int(np.argmax(f1))])
    return thresholds


def probability_bins(probabilities, truth, bins: int = ECE_BINS) -> dict:
    """Per equal-width bin of every image-class confidence: count, mean confidence, and the share of them that
    are true labels (a multi-label model's reliability)."""
    confidence = np.asarray(probabilities, dtype=np.float64).ravel()
    true = np.asarray(truth, dtype=np.float64).ravel()
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=true, minlength=bins) / counts
    return {"count": counts.tolist(), "confidence": np.nan_to_num(mean_confidence).tolist(),
            "accuracy": np.nan_to_num(accuracy).tolist()}
