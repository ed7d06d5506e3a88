"""Several labels an image: label files with a labels column, a sigmoid a class trained with each class's threshold
tuned, independent confidences through the plugin, labels drawn above their thresholds, mAP from the evaluate
command equal to scikit-learn's, bulk rows with every label. The model: 2 x 2 grids of scikit-learn's digits
(resnext_tools.digits.write_digit_grids), trained once for the module."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from resnext_core import load_classifier
from resnext_core.common.checkpoint import safe_load
from resnext_core.common.errors import DatasetError
from resnext_core.data.datasets import training_split
from resnext_core.data.label_files import read_label_file
from resnext_core.inference.drawing import draw_labels, format_label
from resnext_tools.digits import GRID_RECIPE, write_digit_grids

from conftest import ROOT
from helpers import INFER, new_task, tiny_dataset, train_through_plugin

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("grids"))
    write_digit_grids(folder, {"train": 700, "val": 200, "heldout": 200})
    return folder


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory, grids):
    """GRID_RECIPE through the training plugin on the grids' label file: the run folder."""
    return train_through_plugin({**GRID_RECIPE, "label_file": os.path.join(grids, "labels.csv")},
                                str(tmp_path_factory.mktemp("grid-run")))


def heldout(grids) -> list:
    """[(RGB array, set of digit names), ...] of the held-out grids."""
    with open(os.path.join(grids, "heldout.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(np.asarray(Image.open(os.path.join(grids, row["path"])).convert("RGB")), set(row["labels"].split(";")) - {""})
            for row in rows]


def test_a_labels_column_makes_a_label_file_multi_label(tmp_path, digits):
    """`labels` (names separated by ;, or a JSON list; none for an image of no class), or a row of other than one
    label, read as multi-label under auto; False refuses such rows by their line."""
    images = tiny_dataset(tmp_path / "images", digits_folder=digits, per_class=2)
    paths = sorted(os.path.relpath(os.path.join(root, f), tmp_path) for root, _, files in os.walk(images) for f in files)
    (tmp_path / "labels.csv").write_text("path,labels\n" + "".join(f"{p},{'0;7' if i % 2 else ''}\n" for i, p in enumerate(paths)))
    read = read_label_file(str(tmp_path / "labels.csv"))
    assert read.multi_label and read.labels[:2] == [[], ["0", "7"]] and read.class_names == ["0", "7"]
    lines = [json.dumps({"path": p, "label": ["1", "7"] if i == 0 else "0"}) for i, p in enumerate(paths)]
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    split = training_split("", str(tmp_path / "labels.jsonl"), val_split=0.5, seed=0)
    assert split.multi_label and sorted(len(label) for _, label in list(split.train) + list(split.val))[-1] == 2
    with pytest.raises(DatasetError, match=r"line 1: 2 labels, and multi_label is False"):
        read_label_file(str(tmp_path / "labels.jsonl"), multi_label=False)
    folders = training_split(images, multi_label=True)
    assert folders.multi_label and folders.train[0][1] == (0,), "class folders: a set of one label each"


def test_the_run_stores_its_thresholds_and_temperature_and_draws_its_curves(grid_model):
    checkpoint = safe_load(os.path.join(grid_model, "best.pth"))
    assert checkpoint["multi_label"] is True and checkpoint["format_version"] == 2
    assert len(checkpoint["thresholds"]) == 10 and all(0 < t < 1 for t in checkpoint["thresholds"])
    best = json.load(open(os.path.join(grid_model, "best_metrics.json")))
    assert best["val_mAP"] >= 0.9 and best["val_thresholds"] == checkpoint["thresholds"]
    assert best["val_temperature"] == pytest.approx(checkpoint["temperature"])
    history = json.load(open(os.path.join(grid_model, "metrics.json")))
    assert best["epoch"] == max(history, key=lambda row: (row["val_mAP"], -row["val_loss"]))["epoch"], "best by mAP"
    for picture in ("precision_recall.png", "reliability_diagram.png", "worst_predictions.png", "training_curves.png"):
        assert os.path.getsize(os.path.join(grid_model, picture)) > 10_000, picture


@pytest.mark.slow
def test_the_plugin_gives_independent_confidences_and_draws_the_images_labels(grid_model, grids, tmp_path):
    """Held-out grids through the inference plugin: every class's own sigmoid confidence (they do not sum to 1),
    macro mAP of 0.9 or more, the labels drawn those above their thresholds, as many as the image shows; the
    evaluate command's mAP is the plugin's."""
    weight_file = os.path.join(grid_model, "best.pth")
    _, task = new_task(INFER, {"model_weight_file": weight_file, "top_k": "4"})
    classifier = load_classifier(model_weight_file=weight_file)
    scores, truth, drawn_counts, true_counts = [], [], [], []
    for index, (image, labels) in enumerate(heldout(grids)):
        task.get_input(0).set_image(image)
        task.run()
        results = dict((name, float(confidence)) for name, confidence in task.get_whole_image_results())
        scores.append([results[name] for name in DIGITS])
        truth.append([name in labels for name in DIGITS])
        drawn = classifier.labels(torch.tensor(scores[-1]), 4)
        drawn_counts.append(len(drawn))
        true_counts.append(len(labels))
        if index < 5:  # what the plugin drew is those labels
            expected = draw_labels(image, [format_label(name, confidence) for name, confidence in drawn])
            assert np.array_equal(task.get_output(0).get_image(), expected)
    scores, truth = np.array(scores), np.array(truth)
    assert not np.allclose(scores.sum(axis=1), 1.0), "independent confidences, not a softmax"
    plugin_map = np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in range(10)])
    assert plugin_map >= 0.9
    # The number drawn follows the image's: for grids of 1, 2 and 3 digits, most often that many (this short
    # recipe's held-out exact-count share was 0.70, its correlation 0.79).
    drawn_counts, true_counts = np.array(drawn_counts), np.array(true_counts)
    for shown in (1, 2, 3):
        assert np.bincount(drawn_counts[true_counts == shown]).argmax() == shown, shown
    assert np.mean(drawn_counts == true_counts) >= 0.6 and np.corrcoef(drawn_counts, true_counts)[0, 1] > 0.7
    completed = subprocess.run([sys.executable, "-m", "resnext_core.evaluate", os.path.join(grids, "heldout.csv"),
                                "--output", str(tmp_path / "eval"), "--model_weight_file", weight_file],
                               cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.load(open(tmp_path / "eval" / "evaluation.json"))
    assert report["mAP"] == pytest.approx(plugin_map, abs=1e-3)


@pytest.mark.slow
def test_the_evaluate_commands_map_is_scikit_learns_on_its_predictions(grid_model, grids, tmp_path):
    from resnext_core import InferConfig
    from resnext_core.inference.evaluation import evaluate_folder

    report = evaluate_folder(InferConfig(model_weight_file=os.path.join(grid_model, "best.pth")),
                             os.path.join(grids, "heldout.csv"), str(tmp_path / "eval"))
    with open(tmp_path / "eval" / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["images"] == 200
    confidences = np.array([[float(row[name]) for name in DIGITS] for row in rows])
    truth = np.array([[name in row["truth"].split(";") for name in DIGITS] for row in rows])
    assert report["mAP"] == pytest.approx(np.mean([average_precision_score(truth[:, c], confidences[:, c])
                                                   for c in range(10)]), abs=1e-6)
    assert report["mAP_micro"] == pytest.approx(average_precision_score(truth.ravel(), confidences.ravel()), abs=1e-6)
    predicted = confidences >= np.array(report["thresholds"])
    assert report["exact_match"] == pytest.approx((predicted == truth).all(axis=1).mean())
    assert [row["predicted"] for row in rows] == [";".join(sorted((d for d in DIGITS if p[int(d)]), key=lambda d: -c[int(d)]))
                                                for p, c in zip(predicted, confidences)]
    for picture in ("precision_recall.png", "reliability_diagram.png", "worst_predictions.png"):
        assert os.path.isfile(tmp_path / "eval" / picture)


@pytest.mark.slow
def test_a_threshold_overrides_the_tuned_ones_in_the_plugin_and_the_bulk_rows(grid_model, grids, tmp_path):
    from resnext_core import InferConfig
    from resnext_core.inference.bulk import predict_files

    weight_file = os.path.join(grid_model, "best.pth")
    image, _ = heldout(grids)[0]
    for threshold, count in (("0.0", 10), ("1.0", 0)):
        _, task = new_task(INFER, {"model_weight_file": weight_file, "threshold": threshold, "top_k": "10"})
        task.get_input(0).set_image(image)
        task.run()
        classifier = load_classifier(model_weight_file=weight_file, threshold=float(threshold))
        assert len(classifier.labels(classifier.predict([image])[0], 10)) == count
    output = tmp_path / "rows.jsonl"
    predict_files(InferConfig(model_weight_file=weight_file, top_k=1), [os.path.join(grids, "heldout")], str(output),
                  progress=False)
    rows = [json.loads(line) for line in open(output)]
    classifier = load_classifier(model_weight_file=weight_file)
    thresholds = dict(zip(classifier.class_names, classifier.thresholds.tolist()))
    for row in rows:
        assert row["confidences"] == sorted(row["confidences"], reverse=True)
        assert all(confidence >= thresholds[name] for name, confidence in zip(row["classes"], row["confidences"]))
    assert max(len(row["classes"]) for row in rows) > 1, "every label above its threshold, not top_k's one"
    same = [set(row["classes"]) == {name for name, _ in classifier.labels(
        classifier.predict([np.asarray(Image.open(row["path"]).convert("RGB"))])[0], 10)} for row in rows[:40]]
    assert np.mean(same) >= 0.95, "the plugin's labels (batching moves confidences by rounding only)"


def test_mixing_mixes_label_vectors_and_rare_classes_weigh_more():
    from resnext_core.training.multi_label import LabelVectorMix, SmoothedBinaryCrossEntropy, positive_weights

    torch.manual_seed(0)
    images, targets = torch.rand(4, 3, 16, 16), torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    for mix in (LabelVectorMix(0.4, 0), LabelVectorMix(0, 1.0)):
        mixed_images, mixed = mix(images, targets)
        assert mixed_images.shape == images.shape and mixed.shape == targets.shape
        # Image 0 is mixed with image 3 (its neighbour): its label vector [1, 0, 0] with [1, 1, 0], by one share.
        share = 1 - mixed[0, 1].item()
        assert torch.allclose(mixed, targets * share + targets.roll(1, 0) * (1 - share), atol=1e-6)
    assert positive_weights([10, 1, 0], 101).tolist() == [9.1, 100.0, 1.0], "negatives over positives, capped"
    loss = SmoothedBinaryCrossEntropy(0.1)(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(np.log(2)), "at logit 0 every smoothed target costs log 2"


@pytest.mark.slow
def test_explanations_of_a_multi_label_model_show_its_top_class(grid_model, grids):
    image, labels = heldout(grids)[1]
    big = np.asarray(Image.fromarray(image).resize((160, 160), Image.NEAREST))
    _, task = new_task(INFER, {"model_weight_file": os.path.join(grid_model, "best.pth"), "explain": "gradcam"})
    task.get_input(0).set_image(big)
    task.run()
    assert task.get_output(4).get_image().shape[:2] == (160, 160)
