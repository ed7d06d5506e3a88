"""Calibrated confidences: temperature scaling fitted on validation, ECE and NLL, held-out digits."""

import numpy as np
import pytest
import torch

from resnext_core import load_classifier
from resnext_core.common.checkpoint import safe_load
from resnext_core.common.scoring import expected_calibration_error, reliability_bins, score
from resnext_core.common.temperature import fit_temperature, log_softmax, negative_log_likelihood

from helpers import INFER, new_task, results


def overconfident_logits(samples=3000, classes=10, scale=4.0, seed=0):
    """Logits whose softmax is calibrated at scale 1 (labels drawn from it), multiplied by `scale`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(samples, classes))
    probabilities = np.exp(log_softmax(logits))
    labels = np.array([rng.choice(classes, p=row) for row in probabilities])
    return logits * scale, labels


def test_fit_recovers_the_temperature_that_calibrates():
    logits, labels = overconfident_logits(scale=4.0)
    assert fit_temperature(logits, labels) == pytest.approx(4.0, rel=0.1)
    underconfident, labels = overconfident_logits(scale=0.5, seed=1)
    assert fit_temperature(underconfident, labels) == pytest.approx(0.5, rel=0.1)


def test_calibration_lowers_ece_and_nll_and_keeps_top1():
    logits, labels = overconfident_logits()
    report = score(logits, labels, [str(c) for c in range(10)])  # at the temperature fitted on these predictions
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
    from resnext_core.common.checkpoint import load_checkpoint, save_checkpoint
    from resnext_core.common.errors import CheckpointError
    from resnext_core.common.models import build_model
    from resnext_core.common.preprocess import Preprocessing

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


def _nll(probabilities, labels) -> float:
    return negative_log_likelihood(np.log(np.maximum(probabilities, 1e-12)), labels)


@pytest.mark.slow
def test_calibrated_confidences_on_heldout_digits(digits_model, heldout):
    """The temperature fitted on the run's validation split lowers ECE on images it never saw; top-1 unchanged."""
    images, labels = [image for image, _ in heldout], [int(truth) for _, truth in heldout]
    fitted = safe_load(digits_model)["temperature"]
    raw = load_classifier(model_weight_file=digits_model, device="cpu", calibrated_confidence=False).predict(images).numpy()
    calibrated = load_classifier(model_weight_file=digits_model, device="cpu").predict(images).numpy()
    before, after = expected_calibration_error(raw, labels), expected_calibration_error(calibrated, labels)
    print(f"held-out digits: T {fitted:.3f}, ECE {before:.4f} -> {after:.4f}, "
          f"NLL {_nll(raw, labels):.4f} -> {_nll(calibrated, labels):.4f}")
    assert fitted != pytest.approx(1.0, abs=0.02)  # label smoothing leaves a model underconfident: T < 1
    assert after <= before
    assert (raw.argmax(1) == calibrated.argmax(1)).all()
    # The plugin applies it by default and reports the raw softmax with calibrated_confidence off.
    _, infer = new_task(INFER, {"model_weight_file": digits_model})
    infer.get_input(0).set_image(images[0])
    infer.run()
    assert results(infer)[0][1] == pytest.approx(calibrated[0].max(), abs=1e-4)
    infer.set_parameters({"calibrated_confidence": "False"})
    infer.run()
    assert results(infer)[0][1] == pytest.approx(raw[0].max(), abs=1e-4)
