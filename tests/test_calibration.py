"""Temperature scaling (resnext_core/calibration.py): the fit, ECE and NLL, and what inference does with it."""
import numpy as np
import pytest
import torch

from resnext_core import calibration
from resnext_core.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)


def overconfident_logits(samples=3000, classes=10, scale=4.0, seed=0):
    """Logits whose softmax is calibrated at scale 1 (labels drawn from it), multiplied by `scale`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(samples, classes))
    probabilities = np.exp(calibration.log_softmax(logits))
    labels = np.array([rng.choice(classes, p=row) for row in probabilities])
    return logits * scale, labels


def test_fit_recovers_the_temperature_that_calibrates():
    logits, labels = overconfident_logits(scale=4.0)
    assert fit_temperature(logits, labels) == pytest.approx(4.0, rel=0.1)
    underconfident, labels = overconfident_logits(scale=0.5, seed=1)
    assert fit_temperature(underconfident, labels) == pytest.approx(0.5, rel=0.1)


def test_calibration_lowers_ece_and_nll_and_keeps_top1():
    logits, labels = overconfident_logits()
    report = calibration_metrics(logits, labels)
    assert report["ece_calibrated"] < report["ece"] / 3
    assert report["nll_calibrated"] < report["nll"]
    calibrated = logits / report["temperature"]
    assert (calibrated.argmax(1) == logits.argmax(1)).all()


def test_ece_of_known_bins():
    # Two samples at confidence 0.9, one right one wrong: |0.5 - 0.9| = 0.4 over all samples.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert expected_calibration_error(probabilities, [0, 1]) == pytest.approx(0.4)
    assert expected_calibration_error(probabilities, [0, 0]) == pytest.approx(0.1)
    table = reliability_bins(probabilities, [0, 1])
    assert sum(table["count"]) == 2 and max(table["count"]) == 2
    assert negative_log_likelihood(np.log(probabilities), [0, 1]) == pytest.approx(-(np.log(0.9) + np.log(0.1)) / 2)


def test_no_samples_fit_nothing():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 0.0


def test_a_checkpoint_temperature_is_validated(tmp_path):
    from resnext_core.checkpoint import load_checkpoint, save_checkpoint
    from resnext_core.errors import CheckpointError
    from resnext_core.models import build_model
    from resnext_core.preprocess import Preprocessing

    with torch.device("meta"):
        shapes = build_model("resnext50_32x4d", num_classes=2).state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    path = str(tmp_path / "model.pth")
    for temperature, expected in ((1.7, 1.7), (None, None)):
        extra = {} if temperature is None else {"temperature": temperature}
        save_checkpoint(path, "resnext50_32x4d", state, ["a", "b"], Preprocessing(), **extra)
        assert load_checkpoint(path).temperature == expected
    for bad in (0.0, -1.0, float("nan"), "hot"):
        save_checkpoint(path, "resnext50_32x4d", state, ["a", "b"], Preprocessing(), temperature=bad)
        with pytest.raises(CheckpointError, match="temperature"):
            load_checkpoint(path)


def test_fit_works_under_inference_mode():
    """A caller may validate under torch.inference_mode(): the fit must still get its gradients."""
    logits, labels = overconfident_logits(samples=500)
    expected = fit_temperature(logits, labels)
    with torch.inference_mode():
        assert fit_temperature(logits, labels) == pytest.approx(expected, rel=1e-6)
    assert expected > 2.0
