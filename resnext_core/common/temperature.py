"""Calibrated confidences by temperature scaling (Guo et al., "On Calibration of Modern Neural
Networks", 2017): one scalar T divides the logits. It is fitted on held-out validation predictions
by minimising their negative log-likelihood; dividing by T > 0 keeps every argmax, so top-1
predictions are unchanged by construction. How well it calibrates is measured by scoring.py.
"""
from __future__ import annotations

import math

import numpy as np
import torch

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


def sigmoid(logits, temperature: float = 1.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64) / temperature))


def binary_negative_log_likelihood(logits, targets, temperature: float = 1.0) -> float:
    """The mean binary cross-entropy of sigmoid(logits / T) over every image and class (multi-label)."""
    scaled = torch.as_tensor(np.asarray(logits, dtype=np.float64) / temperature)
    targets = torch.as_tensor(np.asarray(targets, dtype=np.float64))
    return float(torch.nn.functional.binary_cross_entropy_with_logits(scaled, targets))


def fit_temperature(logits, labels, multi_label: bool = False) -> float:
    """The T in TEMPERATURE_RANGE that minimises the NLL of softmax(logits / T), or for a multi-label model (labels:
    0/1 targets, N x C) the binary NLL of each class's sigmoid(logits / T); 1.0 without samples.

    L-BFGS on log T, as in the paper's reference code: the NLL is smooth and convex in 1/T.
    """
    if len(labels) == 0:
        return 1.0
    with torch.inference_mode(False), torch.enable_grad():  # evaluate() calls it under inference_mode
        logits = torch.tensor(np.asarray(logits), dtype=torch.float64)
        labels = torch.tensor(np.asarray(labels), dtype=torch.float64 if multi_label else torch.long)
        loss_of = (torch.nn.functional.binary_cross_entropy_with_logits if multi_label
                   else torch.nn.functional.cross_entropy)
        log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def nll():
            optimizer.zero_grad()
            loss = loss_of(logits / log_temperature.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(nll)
    low, high = TEMPERATURE_RANGE
    return float(min(max(math.exp(log_temperature.item()), low), high))
