"""Imbalanced datasets: class_balance (weighted loss, balanced sampling), the class-size report and warnings.

The slow test trains on digits where one class keeps a handful of training images and shows its held-out
recall rising with balancing; print the figures with
  .venv/bin/python -m pytest -q -s tests/test_class_balance.py -k rare_class
"""
import csv
import glob
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight

from resnext_core import load_classifier
from resnext_core.common.errors import ConfigError
from resnext_core.common.schema import Schema
from resnext_core.training.class_balance import (
    IMBALANCE_RATIO, MIN_TRAIN_IMAGES, balanced_class_weights, image_sampling_weights, imbalance_warnings,
    smallest_classes_line
)
from resnext_core.training.config import TrainConfig
from resnext_core.training.data import EpochBatches
from resnext_core.training.loop import build_setup
from resnext_core.training.records import CLASS_COUNTS_CSV, RunRecorder
from resnext_core.training.trainer import Callbacks, Trainer
from resnext_tools.digits import heldout_items

from helpers import TRAIN, new_task, tiny_dataset

# --- balanced sampling ------------------------------------------------------------------------
LABELS = [0] * 400 + [1] * 200 + [2] * 10


def _balanced_batches(epoch=0, start_batch=0, seed=0, batch_size=16):
    weights = image_sampling_weights(LABELS, 3)
    return EpochBatches(len(LABELS), batch_size, seed, epoch, start_batch, image_weights=weights).batches


def test_balanced_sampling_draws_every_class_about_equally_often():
    drawn = [index for batch in _balanced_batches() for index in batch]
    assert len(drawn) == len(LABELS), "an epoch draws as many images as the training set holds"
    shares = np.bincount(np.array(LABELS)[drawn], minlength=3) / len(drawn)
    assert np.allclose(shares, 1 / 3, atol=0.06), shares
    assert len(set(drawn)) < len(drawn), "with replacement: the rare class's images come back"


def test_balanced_sampling_is_seeded_per_epoch_and_resumable_at_a_batch():
    assert _balanced_batches() == _balanced_batches(), "the same (seed, epoch), the same order"
    assert _balanced_batches(epoch=1) != _balanced_batches(epoch=0)
    assert _balanced_batches(seed=1) != _balanced_batches(seed=0)
    assert _balanced_batches(epoch=3, start_batch=7) == _balanced_batches(epoch=3)[7:], "resumes at the batch it stopped"


def test_without_weights_an_epoch_is_still_each_image_once():
    batches = EpochBatches(len(LABELS), 16, 0, 0).batches
    assert sorted(index for batch in batches for index in batch) == list(range(len(LABELS)))
    assert len(batches) == len(_balanced_batches()), "balancing keeps the steps per epoch (and the schedule)"


# --- weighted loss ----------------------------------------------------------------------------
def test_class_weights_are_sklearns_balanced_weights():
    expected = compute_class_weight("balanced", classes=np.arange(3), y=LABELS)
    assert np.allclose(balanced_class_weights(LABELS, 3), expected)
    assert np.allclose(image_sampling_weights(LABELS, 3), expected[LABELS])


def test_a_class_without_training_images_gets_a_neutral_weight():
    labels = [0] * 30 + [2] * 10  # class 1 has validation images only
    weights = balanced_class_weights(labels, 3)
    assert np.allclose(weights[[0, 2]], compute_class_weight("balanced", classes=np.array([0, 2]), y=labels))
    assert weights[1] == 1.0


@pytest.mark.parametrize("class_balance, weighted", [("none", False), ("weighted_loss", True), ("balanced_sampling", False)])
def test_build_setup_weighs_the_training_loss_only(tmp_path, class_balance, weighted):
    config = TrainConfig(output_folder=str(tmp_path), weights="none", train_mode="scratch", label_smoothing=0.2,
                         class_balance=class_balance)
    setup = build_setup(config, 3, torch.device("cpu"), torch.float32, steps_per_epoch=10, train_labels=LABELS)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=LABELS) if weighted else None
    if weighted:
        assert torch.allclose(setup.criterion.weight, torch.tensor(expected, dtype=torch.float32))
    else:
        assert setup.criterion.weight is None
    assert setup.val_criterion.weight is None, "validation loss comparable across class_balance settings"
    assert setup.criterion.label_smoothing == setup.val_criterion.label_smoothing == 0.2


def test_an_unknown_class_balance_is_refused_naming_the_parameter(tmp_path):
    expected = "class_balance must be one of none, weighted_loss, balanced_sampling, got 'oversample'"
    with pytest.raises(ConfigError, match=expected):
        Schema(TrainConfig).parse({"class_balance": "oversample"})
    with pytest.raises(ConfigError, match="class_balance must be one of"):
        TrainConfig(output_folder=str(tmp_path), class_balance="oversample").validate()


# --- the class-size report --------------------------------------------------------------------
NAMES = ["cat", "dog", "owl", "yak"]


def test_the_log_names_the_three_smallest_classes_with_their_counts():
    assert smallest_classes_line(NAMES, [120, 7, 300, 40]) == "fewest training images: dog (7), yak (40), cat (120)"


def test_small_and_imbalanced_classes_are_named_in_warnings():
    small, imbalanced = imbalance_warnings(NAMES, [120, 7, 300, 40], balancing=False)
    assert f"fewer than {MIN_TRAIN_IMAGES} training images: dog (7)" in small
    assert "class owl has 43x the images of class dog (300 vs 7)" in imbalanced and "class_balance" in imbalanced
    assert imbalance_warnings(NAMES, [120, 7, 300, 40], balancing=True) == [small], "balancing already compensates"


def test_equal_or_mildly_unequal_classes_raise_no_balancing_warning():
    assert imbalance_warnings(NAMES, [25, 25, 25, 25], balancing=False) == []
    assert imbalance_warnings(NAMES, [30, 30, 30, 30 * IMBALANCE_RATIO - 1], balancing=False) == []
    only_small = imbalance_warnings(NAMES, [6, 6, 6, 6], balancing=False)
    assert len(only_small) == 1 and "class_balance" not in only_small[0], "balancing cannot help equally small classes"
    assert imbalance_warnings(NAMES, [0, 30, 30, 30], balancing=False) == [], "an empty class is discover()'s warning"


def test_counts_file_lists_train_and_val_images_per_class(tmp_path):
    RunRecorder(str(tmp_path), NAMES).write_dataset_files([120, 7, 300, 40], [30, 2, 75, 10])
    with open(tmp_path / CLASS_COUNTS_CSV, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["class", "train", "val"],
                    ["cat", "120", "30"], ["dog", "7", "2"], ["owl", "300", "75"], ["yak", "40", "10"]]
    assert sorted(os.listdir(tmp_path)) == ["class_counts.csv", "classes.txt"], "written atomically: no temporary left"


@pytest.mark.slow
def test_the_plugin_writes_the_counts_and_its_warning_reaches_ikomias_log(tmp_path, digits):
    from ikomia.core import config as ikomia_config

    data = tiny_dataset(tmp_path / "data", classes=("0", "1"), per_class=40, digits_folder=digits)
    tiny_dataset(tmp_path / "data", classes=("7",), per_class=4, digits_folder=digits)
    log_file = os.path.join(ikomia_config.main_cfg["root_folder"], "log.txt")
    logged_before = os.path.getsize(log_file)
    _, task = new_task(TRAIN, {"dataset_folder": data, "output_folder": str(tmp_path / "out"), "model_name": "resnext50",
                               "train_mode": "scratch", "input_size": "32", "epochs": "1", "batch_size": "8",
                               "val_split": "0.25", "hflip": "False"})
    task.run()
    with open(log_file, encoding="utf-8") as handle:
        handle.seek(logged_before)
        logged = handle.read()
    assert "train_torchvision_resnext: fewest training images: 7 (3), 0 (30), 1 (30)" in logged
    assert "warning: imbalanced training set: class 0 has 10x the images of class 7 (30 vs 3)" in logged
    with open(os.path.join(task.get_output(0).get_path(), CLASS_COUNTS_CSV), newline="") as handle:
        assert list(csv.reader(handle))[1:] == [["0", "30", "10"], ["1", "30", "10"], ["7", "3", "1"]]


# --- the rare class's held-out recall, with and without balancing ----------------------------
CHOSEN = ["3", "8", "9"]  # they share strokes: an 8 the model has not learned is read as a 3 or a 9
RARE, RARE_KEPT = "8", 8  # 7 training images once the validation split takes one; the others keep all (~130)
SETTINGS = ("none", "weighted_loss", "balanced_sampling")
EPOCHS = 4


def _imbalanced_digits(folder, digits) -> str:
    for name in CHOSEN:
        paths = sorted(glob.glob(os.path.join(digits, "train", name, "*.png")))
        os.makedirs(os.path.join(folder, name))
        for path in paths[:RARE_KEPT] if name == RARE else paths:
            shutil.copy(path, os.path.join(folder, name))
    return str(folder)


def _heldout_of_chosen(digits):
    items = [(path, name) for path, name in heldout_items(digits) if name in CHOSEN]
    return [np.asarray(Image.open(path).convert("RGB")) for path, _ in items], np.array([CHOSEN.index(n) for _, n in items])


def _predicted_labels(weight_file, images) -> np.ndarray:
    classifier = load_classifier(model_weight_file=weight_file, device="cpu", precision="fp32", engine="torch")
    assert classifier.class_names == CHOSEN
    return classifier.predict(images).argmax(1).numpy()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # three trainings: once 21 minutes on 2 cores shared with five other jobs (6 epochs then)
def test_balancing_raises_the_rare_class_recall_on_heldout_digits(tmp_path, digits):
    data = _imbalanced_digits(tmp_path / "data", digits)
    images, truth = _heldout_of_chosen(digits)
    recalls, accuracy = {}, {}
    rare = CHOSEN.index(RARE)
    for setting in SETTINGS:
        # Measured on the last epoch's model: best.pth is chosen on a validation split holding one rare image.
        config = TrainConfig(dataset_folder=data, output_folder=str(tmp_path / setting), model_name="resnext50",
                             weights="none", train_mode="scratch", input_size=32, epochs=EPOCHS, batch_size=32,
                             optimizer="adamw", learning_rate=0.002, weight_decay=0.05, min_crop_scale=0.6,
                             hflip=False, val_split=0.1, seed=0, export_pth=False, class_balance=setting)
        trainer = Trainer(config, Callbacks(log=lambda line: None))
        rare_images = trainer.data.train_counts[rare]
        predicted = _predicted_labels(os.path.join(trainer.run().run_folder, "last.pth"), images)
        recalls[setting] = np.array([(predicted[truth == label] == label).mean() for label in range(len(CHOSEN))])
        accuracy[setting] = (predicted == truth).mean()
    print(f"\nheld-out digits {', '.join(CHOSEN)} ({len(truth)} images), {RARE} with {rare_images} training images, "
          f"{EPOCHS} epochs from scratch:")
    for setting, recall in recalls.items():
        print(f"  class_balance {setting:17s} rare-class recall {recall[rare]:.3f}  accuracy {accuracy[setting]:.3f}  "
              f"recall per class {dict(zip(CHOSEN, recall.round(3).tolist()))}")
    for setting in ("weighted_loss", "balanced_sampling"):
        assert recalls[setting][rare] >= recalls["none"][rare] + 0.3, setting
        assert accuracy[setting] >= accuracy["none"] - 0.05, f"{setting}: the other classes pay too much"
