"""Evaluation on a labelled test set: python -m resnext_core.evaluate and the training plugin's test_folder report
the trainer's own metrics, equal to scikit-learn's on the same predictions; classes the model does not know and
unreadable files are reported, not scored."""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from resnext_core import InferConfig
from resnext_core.common.scoring import OTHER
from resnext_core.inference.evaluation import evaluate_folder

from conftest import ROOT
from helpers import TRAIN, new_task, small_checkpoint, textured_image, tiny_dataset


def _predictions(folder) -> list:
    with open(os.path.join(folder, "predictions.csv"), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _ece(confidences, correct, bins=15) -> float:
    """Equal-width bins of the top-1 confidence, written out here: the mean |accuracy - confidence|, weighted."""
    confidences, correct = np.asarray(confidences), np.asarray(correct, dtype=float)
    total = 0.0
    for low in np.arange(bins) / bins:
        chosen = (confidences > low) & (confidences <= low + 1 / bins)
        if chosen.any():
            total += chosen.sum() * abs(correct[chosen].mean() - confidences[chosen].mean())
    return total / len(confidences)


@pytest.mark.slow
def test_the_evaluations_metrics_are_scikit_learns(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", classes=("0", "1", "7"), per_class=12, digits_folder=digits, split=True)
    unknown = tmp_path / "data" / "val" / "elephant"
    unknown.mkdir()
    for index in range(2):
        Image.fromarray(textured_image(30, 30, seed=index)).save(unknown / f"{index}.png")
    (tmp_path / "data" / "val" / "7" / "broken.png").write_text("no pixels")
    small_checkpoint(tmp_path / "m.pth", classes=("0", "1", "7"), temperature=0.7)
    completed = subprocess.run([sys.executable, "-m", "resnext_core.evaluate", data, "--output", str(tmp_path / "eval"),
                                "--model_weight_file", str(tmp_path / "m.pth")], cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "not scored: 2 image(s) of class elephant" in completed.stdout and "unreadable: 1 file(s)" in completed.stdout
    report = json.load(open(tmp_path / "eval" / "evaluation.json"))
    rows = _predictions(tmp_path / "eval")
    truth, predicted = [r["truth"] for r in rows], [r["predicted"] for r in rows]
    assert len(rows) == report["images"] == 9, "the val/ folder's 3 x 3 readable images of known classes"
    assert report["unknown_classes"] == {"elephant": 2} and report["unreadable"][0]["path"].endswith("broken.png")
    names = ["0", "1", "7"]
    assert report["top1"] == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=names, zero_division=0)
    for index, name in enumerate(names):
        assert report["per_class"][name] == pytest.approx({"precision": precision[index], "recall": recall[index],
                                                           "f1": f1[index], "support": support[index]})
    macro = precision_recall_fscore_support(truth, predicted, labels=names, average="macro", zero_division=0)
    assert (report["precision"], report["recall"], report["f1"]) == pytest.approx(macro[:3])
    assert report["confusion_matrix"] == confusion_matrix(truth, predicted, labels=names).tolist()
    assert report["temperature"] == pytest.approx(0.7)
    confidences = [float(r["confidence"]) for r in rows]
    assert report["ece_calibrated"] == pytest.approx(_ece(confidences, [t == p for t, p in zip(truth, predicted)]), abs=1e-6)
    for picture in ("confusion_matrix.png", "worst_predictions.png", "reliability_diagram.png"):
        with Image.open(tmp_path / "eval" / picture) as image:
            assert min(image.size) > 200 and np.asarray(image.convert("L")).std() > 10, picture


def test_imagenet_weights_are_scored_on_the_classes_of_the_test_set(tmp_path, imagenet_weights):
    """A test set of 2 of the 1000 classes: metrics over those 2; a prediction of any other class is OTHER."""
    for name in ("tench", "goldfish"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(textured_image(80, 100, seed=index + 10 * len(name))).save(tmp_path / "data" / name / f"{index}.png")
    report = evaluate_folder(InferConfig(model_name="resnext50", input_size=64), str(tmp_path / "data"),
                             str(tmp_path / "eval"))
    assert set(report["per_class"]) == {"tench", "goldfish"} and report["images"] == 6 and "top5" in report
    assert report["confusion_labels"] == ["tench", "goldfish", OTHER]
    rows = _predictions(tmp_path / "eval")
    outside = sum(r["predicted"] not in ("tench", "goldfish") for r in rows)
    assert sum(row[2] for row in report["confusion_matrix"]) == outside
    truth = [r["truth"] for r in rows]
    mapped = [r["predicted"] if r["predicted"] in ("tench", "goldfish") else OTHER for r in rows]
    assert report["confusion_matrix"] == confusion_matrix(truth, mapped, labels=["tench", "goldfish", OTHER]).tolist()
    assert report["confusion_matrix"][2] == [0, 0, 0], "no image is truly OTHER: its row stays empty"


@pytest.mark.slow
def test_the_training_plugin_scores_its_test_folder(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", classes=("0", "1", "7"), per_class=8, digits_folder=digits)
    test = tiny_dataset(tmp_path / "test", classes=("0", "1", "7"), per_class=4, digits_folder=digits, source="heldout")
    _, task = new_task(TRAIN, {"dataset_folder": data, "output_folder": str(tmp_path / "runs"), "test_folder": test,
                               "model_name": "resnext50", "train_mode": "scratch", "input_size": "32", "epochs": "1",
                               "batch_size": "8", "hflip": "False"})
    task.run()
    run_folder = task.get_output(0).get_path()
    report = json.load(open(os.path.join(run_folder, "test", "evaluation.json")))
    assert report["images"] == 12 and set(report["per_class"]) == {"0", "1", "7"}
    rows = _predictions(os.path.join(run_folder, "test"))
    assert report["top1"] == pytest.approx(accuracy_score([r["truth"] for r in rows], [r["predicted"] for r in rows]))
    logged = glob.glob(os.path.join(run_folder, "mlruns", "*", "*", "metrics", "test_top1"))
    assert len(logged) == 1 and float(open(logged[0]).read().split()[1]) == pytest.approx(report["top1"])
    # The same scores as the evaluate command's on the same checkpoint, folder and (default) parameters.
    completed = subprocess.run([sys.executable, "-m", "resnext_core.evaluate", test, "--output", str(tmp_path / "eval"),
                                "--model_weight_file", os.path.join(run_folder, "best.pth")], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    evaluated = json.load(open(tmp_path / "eval" / "evaluation.json"))
    assert evaluated["top1"] == report["top1"] and evaluated["images"] == report["images"]
    for key in ("precision", "recall", "f1", "ece", "ece_calibrated", "nll", "nll_calibrated", "temperature",
                "fitted_temperature"):
        assert evaluated[key] == pytest.approx(report[key], abs=1e-6), key
    assert evaluated["confusion_matrix"] == report["confusion_matrix"]
    _, bad = new_task(TRAIN, {"dataset_folder": data, "output_folder": str(tmp_path / "runs"),
                              "test_folder": str(tmp_path / "nowhere")})
    with pytest.raises(Exception, match="Test folder not found: .*nowhere"):
        bad.run()
