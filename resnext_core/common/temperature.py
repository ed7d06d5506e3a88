"""Calibrated confidences by temperature scaling (Guo et al., "On Calibration of Modern Neural
Networks", 2017): one scalar T divides the logits. It is fitted on held-out validation predictions
by minimising their negative log-likelihood; dividing by T > 0 keeps every argmax, so top-1
predictions are unchanged by construction.

Reported: the expected calibration error (ECE, top-label, equal-width confidence bins: the mean
|accuracy - confidence| over bins weighted by their share of samples) and the NLL, before and after.
"""
from __future__ import annotations

import math

import numpy as np
import torch

ECE_BINS = 15  # the usual choice since Guo et al.; bins with no sample do not count
TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale; beyond it a model is broken, not miscalibrated


def is_valid_temperature(value) -> bool:
    """A temperature divides logits: it must be a finite positive number."""
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    labels = np.asarray(labels)
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels) -> float:
    """The T in TEMPERATURE_RANGE that minimises the NLL of softmax(logits / T); 1.0 without samples.

    L-BFGS on log T, as in the paper's reference code: the NLL is smooth and convex in 1/T.
    """
    if len(labels) == 0:
        return 1.0
    with torch.inference_mode(False), torch.enable_grad():  # evaluate() calls it under inference_mode
        logits = torch.tensor(np.asarray(logits), dtype=torch.float64)
        labels = torch.tensor(np.asarray(labels), dtype=torch.long)
        log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def nll():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(nll)
    low, high = TEMPERATURE_RANGE
    return float(min(max(math.exp(log_temperature.item()), low), high))


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
    return expected_calibration_error_of_bins(reliability_bins(probabilities, labels, bins))


def expected_calibration_error_of_bins(table: dict) -> float:
    """ECE from reliability_bins()' table."""
    counts = np.asarray(table["count"], dtype=np.float64)
    if not counts.sum():
        return 0.0
    gaps = np.abs(np.asarray(table["accuracy"]) - np.asarray(table["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


def temperature_metrics(logits, labels) -> dict:
    """The fitted temperature with ECE and NLL before and after it, plus the reliability bins of both."""
    temperature = fit_temperature(logits, labels)
    raw, calibrated = np.exp(log_softmax(logits)), np.exp(log_softmax(logits, temperature))
    return {
        "temperature": temperature,
        "ece": expected_calibration_error(raw, labels),
        "ece_calibrated": expected_calibration_error(calibrated, labels),
        "nll": negative_log_likelihood(logits, labels),
        "nll_calibrated": negative_log_likelihood(logits, labels, temperature),
        "reliability": {"raw": reliability_bins(raw, labels), "calibrated": reliability_bins(calibrated, labels)},
    }
