"""Training as users run it: the plugin and the Trainer, every output of a run, stop and resume, data workers,
accuracy on held-out digits, checkpoints kept."""
import filecmp
import glob
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from resnext_core.common.checkpoint import safe_load
from resnext_core.common.errors import CheckpointError, ConfigError
from resnext_core.common.scoring import classification_metrics
from resnext_core.common.preprocess import Preprocessing
from resnext_core.training.checkpoint_keeper import CheckpointKeeper, CheckpointMetadata, is_better, stored_setting
from resnext_core.training.config import TRAIN_SCHEMA, TrainConfig
from resnext_core.training.loop import build_optimizer
from resnext_core.training.trainer import BatchProgress, Callbacks, Trainer

from conftest import run_python
from helpers import (
    DIGITS_RECIPE, INFER, PEAK_RSS, TRAIN, TRAIN_SCRIPT, json_tail, new_task, results, textured_image,
    tiny_dataset
)

TINY = {"model_name": "resnext50", "train_mode": "scratch", "input_size": "32", "epochs": "1", "batch_size": "8",
        "optimizer": "adamw", "learning_rate": "0.002", "weight_decay": "0.05", "hflip": "False", "val_split": "0.25"}


def run_training(params):
    _, task = new_task(TRAIN, params)
    task.run()
    return task, task.get_output(0).get_path()


@pytest.mark.slow
def test_tiny_run_writes_every_output(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, classes=("0", "1", "2", "3", "4", "5"))
    task, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "export_onnx": "True"})
    assert os.path.dirname(run) == str(tmp_path / "out")
    for name in ("best.pth", "last.pth", "classes.txt", "metrics.csv", "metrics.json", "best_metrics.json",
                 "confusion_matrix.png", "training_curves.png", "model.onnx", "quantization_sample.npy"):
        assert os.path.isfile(os.path.join(run, name)), name
    sample = np.load(os.path.join(run, "quantization_sample.npy"))  # int8's calibration for this run's checkpoints
    assert sample.shape[1:] == (3, 32, 32) and 6 <= len(sample) <= 32 and sample.dtype == np.float32 and sample.std() > 0.1
    assert open(os.path.join(run, "classes.txt")).read().split() == ["0", "1", "2", "3", "4", "5"]
    history = json.load(open(os.path.join(run, "metrics.json")))
    assert len(history) == 1
    for key in ("train_loss", "val_loss", "val_top1", "val_top5", "val_precision", "val_recall", "val_f1", "images_per_second"):
        assert np.isfinite(history[0][key]), key
    assert set(history[0]["val_per_class"]) == {"0", "1", "2", "3", "4", "5"}
    assert all(np.isfinite(v) for c in history[0]["val_per_class"].values() for v in c.values())
    import csv
    rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv"))))
    assert len(rows) == 1 and float(rows[0]["val_top1"]) == pytest.approx(history[0]["val_top1"])
    assert glob.glob(os.path.join(run, "tensorboard", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(run, "mlruns", "*", "*", "metrics", "val_top1")), "metrics logged to MLflow's file store"
    best = safe_load(os.path.join(run, "best.pth"))
    assert best["format"] == "resnext-ikomia-checkpoint" and best["preprocessing"]["crop_size"] == 32


@pytest.mark.slow
def test_onnx_export_matches_torch_with_dynamic_batch(tmp_path, digits):
    import onnxruntime

    from resnext_core import load_classifier

    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "export_onnx": "True"})
    classifier = load_classifier(model_weight_file=os.path.join(run, "best.pth"), device="cpu", engine="torch")
    session = onnxruntime.InferenceSession(os.path.join(run, "model.onnx"), providers=["CPUExecutionProvider"])
    for count in (1, 5):
        images = torch.randn(count, 3, 32, 32)
        with torch.inference_mode():
            expected = classifier.runner.model(images).numpy()
        actual = session.run(None, {"images": images.numpy()})[0]
        assert actual.shape == (count, 3) and np.abs(actual - expected).max() < 1e-4


@pytest.mark.slow
def test_checkpoint_feeds_inference_with_only_its_path(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out")})
    _, infer = new_task(INFER, {"model_weight_file": os.path.join(run, "best.pth")})
    infer.get_input(0).set_image(np.asarray(Image.open(glob.glob(os.path.join(data, "7", "*.png"))[0]).convert("RGB")))
    infer.run()
    assert sorted(n for n, _ in results(infer)) == ["0", "1", "7"]


@pytest.mark.slow
def test_connected_folder_input_and_legacy_parameters(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, split=True)
    _, task = new_task(TRAIN, {**TINY, "output_folder": str(tmp_path / "out"), "use_pretrained": "False", "export_pth": "False"})
    assert task.get_parameters()["train_mode"] == "scratch"
    task.get_input(0).set_path(data)
    task.run()
    run = task.get_output(0).get_path()
    assert os.path.isfile(os.path.join(run, "last.pth")) and not os.path.exists(os.path.join(run, "best.pth"))
    task.set_parameters({"feature_extract": "True"})
    assert task.get_parameters()["train_mode"] == "feature_extract"


@pytest.mark.slow
def test_default_output_folder_is_in_ikomia_data_not_plugin(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, run = run_training({**TINY, "dataset_folder": data})
    plugin_dir = os.path.dirname(sys.modules["train_torchvision_resnext.train_torchvision_resnext_process"].__file__)
    assert run.startswith(os.path.join(os.environ["HOME"], "Ikomia")) and not run.startswith(plugin_dir)


def _config(tmp_path, data, **overrides):
    values = dict(dataset_folder=data, output_folder=str(tmp_path / "out"), model_name="resnext50", weights="none",
                  train_mode="scratch", input_size=32, epochs=2, batch_size=4, optimizer="adamw", learning_rate=0.002,
                  hflip=False, val_split=0.25, seed=0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow
def test_stop_within_a_batch_then_resume(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    calls = {"n": 0}

    def stop_in_epoch_2():
        calls["n"] += 1  # checked before each batch and once after an epoch's last batch
        return calls["n"] > 8  # 18 training images, batches of 4: 5 batches + 1 check an epoch

    first = Trainer(_config(tmp_path, data), Callbacks(should_stop=stop_in_epoch_2)).run()
    last = safe_load(os.path.join(first.run_folder, "last.pth"))
    assert first.stopped and first.epochs_done == 1
    assert (last["epoch"], last["batch"]) == (1, 2), "resumable at the batch where it stopped"
    assert "optimizer" in last and "scheduler" in last and "scaler" in last
    resumed = Trainer(_config(tmp_path, data, resume=os.path.join(first.run_folder, "last.pth"))).run()
    assert not resumed.stopped and resumed.epochs_done == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    assert os.path.isfile(os.path.join(resumed.run_folder, "best.pth")), "a resumed run folder holds the best model too"
    with pytest.raises(Exception, match="optimizer 'adamw'"):
        Trainer(_config(tmp_path, data, optimizer="sgd", resume=os.path.join(first.run_folder, "last.pth"))).run()
    whole = Trainer(_config(tmp_path, data)).run()
    assert whole.epochs_done == 2
    assert abs(whole.history[-1]["val_top1"] - resumed.history[-1]["val_top1"]) <= 0.5


@pytest.mark.slow
def test_plugin_stop_is_honoured_within_a_batch(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=40)
    _, task = new_task(TRAIN, {**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out"),
                               "epochs": "50", "batch_size": "2", "input_size": "64"})
    stopped_at = {}

    def stop_soon():
        time.sleep(4)
        stopped_at["t"] = time.perf_counter()
        task.stop()

    threading.Thread(target=stop_soon).start()
    task.run()
    latency = time.perf_counter() - stopped_at["t"]
    run = task.get_output(0).get_path()
    last = safe_load(os.path.join(run, "last.pth"))
    assert latency < 3.0, f"stop took {latency:.1f} s"
    assert last["epoch"] < 50


@pytest.mark.slow
def test_corrupt_files_skipped_and_counted_classes_unioned(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, split=True)
    (tmp_path / "data" / "train" / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "data" / "train" / "1" / "readme.txt").write_text("not an image")
    tiny_dataset(tmp_path / "data" / "train", classes=("9",), digits_folder=digits, per_class=3)
    logs = []
    result = Trainer(_config(tmp_path, data, epochs=1), Callbacks(log=logs.append)).run()
    text = "\n".join(logs)
    assert "only in train: 9" in text and "skipped 1 file(s) that are not images" in text
    assert "skipped unreadable image " + str(tmp_path / "data" / "train" / "0" / "broken.png") in text, "met when read"
    assert result.history[0]["skipped_files"] == 2
    assert open(os.path.join(result.run_folder, "classes.txt")).read().split() == ["0", "1", "7", "9"]
    assert len(open(os.path.join(result.run_folder, "skipped_files.txt")).read().splitlines()) == 2


@pytest.mark.slow
def test_batch_larger_than_the_set_and_bad_output_folder(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=4)
    logs = []
    result = Trainer(_config(tmp_path, data, epochs=1, batch_size=500), Callbacks(log=logs.append)).run()
    assert result.epochs_done == 1 and any("batch_size 500 >" in line for line in logs)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot be created"):
        Trainer(_config(tmp_path, data, output_folder=str(blocker / "runs"))).run()


def test_metrics_match_a_hand_checked_confusion_matrix():
    names = ["cat", "dog", "bird"]
    labels = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 1, 0, 0]  # bird is never predicted
    logits = np.eye(3)[predictions]
    metrics = classification_metrics(labels, logits, names)
    assert metrics["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert metrics["top1"] == pytest.approx(3 / 6)
    # cat: precision 2/4, recall 2/3; dog: 1/2, 1/2; bird: 0 (never predicted, not NaN), 0.
    assert metrics["per_class"]["cat"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["cat"]["recall"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["dog"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["precision"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert metrics["recall"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert "top5" not in metrics


@pytest.mark.slow
def test_real_accuracy_on_heldout_digits(digits_model_accuracy):
    """A broken trainer (labels shuffled, no learning) stays near 10%."""
    accuracy = digits_model_accuracy
    print(f"held-out accuracy after {DIGITS_RECIPE['epochs']} epochs: {accuracy:.3f}")
    assert accuracy >= 0.90


def _children() -> list:
    pid = os.getpid()
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += handle.read().split()
        except FileNotFoundError:  # the thread ended since the listing
            continue
    return found


def _children_once_settled(expected: list, seconds: float = 10) -> list:
    """This process's children, once they are `expected` or `seconds` have passed: workers take a moment to exit."""
    deadline = time.time() + seconds
    while _children() != expected and time.time() < deadline:
        time.sleep(0.2)
    return _children()


@pytest.mark.slow
def test_data_workers_train_and_shut_down_when_stopped(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    before = _children()
    result = Trainer(_config(tmp_path, data, epochs=1, num_workers=2)).run()
    assert result.epochs_done == 1 and not result.stopped
    calls = {"n": 0}

    def stop_at_third_batch():
        calls["n"] += 1
        return calls["n"] > 2

    stopped = Trainer(_config(tmp_path, data, epochs=3, num_workers=2), Callbacks(should_stop=stop_at_third_batch)).run()
    assert stopped.stopped
    assert _children_once_settled(before) == before, "data-loading workers are gone once training returns"


@pytest.mark.slow
def test_data_workers_start_once_and_serve_each_epoch_its_own_order(tmp_path, digits):
    """persistent workers: one loader for the run; each epoch (and a resumed one) still gets its seeded order."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    training = Trainer(_config(tmp_path, data, num_workers=2)).data
    before = _children()
    workers = []
    for epoch in (0, 1):
        labels = [batch_labels.tolist() for _, batch_labels in training.train_loader(epoch, 0)]
        expected = [[training.train_labels[i] for i in batch] for batch in training.epoch_batches(epoch)]
        assert labels == expected, f"epoch {epoch}"
        workers.append(set(_children()) - set(before))
    assert len(workers[0]) == 2 and workers[1] == workers[0], "the same two worker processes serve both epochs"
    resumed = [batch_labels.tolist() for _, batch_labels in training.train_loader(1, 2)]
    assert resumed == expected[2:], "a resumed epoch starts at its saved batch"
    training.close()
    assert _children_once_settled(before) == before, "close() ends the workers"


def test_auto_data_workers_are_none_on_the_cpu_and_the_cores_share_on_cuda():
    from resnext_core.training.config import MAX_AUTO_WORKERS
    from resnext_core.training.data import loader_workers

    assert TrainConfig().num_workers is None, "auto by default"
    assert loader_workers(None, torch.device("cpu")) == 0, "measured slower with workers on the CPU (README)"
    assert loader_workers(3, torch.device("cpu")) == 3 and loader_workers(0, torch.device("cuda")) == 0, "a number is kept"
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(None, torch.device("cuda")) == min(MAX_AUTO_WORKERS, max(1, cores - 1))


@pytest.mark.slow
def test_a_failed_training_does_not_break_the_next(tmp_path, digits):
    """A run failing after its MLflow run started (bad resume file) must not leave that run active."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    (tmp_path / "last.pth").write_bytes(b"\x80\x02garbage")
    with pytest.raises(Exception, match="last.pth is corrupt"):
        run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "failed"),
                      "resume": str(tmp_path / "last.pth")})
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "next")})
    assert os.path.isfile(os.path.join(run, "best.pth"))


@pytest.mark.slow
def test_progress_per_batch_and_pictures_as_outputs(tmp_path, digits):
    """STUDIO's bar moves every batch (not every epoch); the run's pictures are image outputs of the task."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, task = new_task(TRAIN, {**TINY, "epochs": "2", "batch_size": "4", "dataset_folder": data,
                               "output_folder": str(tmp_path / "out")})
    steps, added = [], []
    task.emit_step_progress = lambda: steps.append(1)
    task.emit_add_sub_progress_steps = added.append
    task.run()
    run = task.get_output(0).get_path()
    history = json.load(open(os.path.join(run, "metrics.json")))
    assert len(history) == 2
    assert added and len(steps) >= added[0] >= 2 * 2, "one step per batch, announced before training"
    for index in (1, 2, 3, 4):  # confusion matrix, curves, worst predictions, reliability diagram
        picture = task.get_output(index).get_image()
        assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 200, index
        assert len(np.unique(picture)) > 10, f"output {index} is a drawn picture, not a blank"
    for picture in ("worst_predictions.png", "reliability_diagram.png"):
        assert os.path.isfile(os.path.join(run, picture))


RUN_FILES = ("best.pth", "last.pth", "classes.txt", "metrics.csv", "metrics.json", "best_metrics.json",
             "confusion_matrix.png", "training_curves.png", "tensorboard", "model.onnx")


@pytest.fixture(scope="module")
def data(tmp_path_factory, digits):
    """3 classes of 8 digits: 18 training images (3 batches of 8 or fewer), 6 validation images."""
    return tiny_dataset(tmp_path_factory.mktemp("data"), digits_folder=digits)


def _parts_config(output_folder, data, **overrides):
    values = dict(dataset_folder=data, output_folder=str(output_folder), model_name="resnext50", weights="none",
                  train_mode="scratch", input_size=32, epochs=1, batch_size=8, optimizer="adamw", learning_rate=0.002,
                  weight_decay=0.05, hflip=False, val_split=0.25, seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def _files_under(folder):
    return sorted(os.path.join(root, name) for root, dirs, files in os.walk(folder) for name in dirs + files)


@pytest.mark.slow
def test_construction_writes_nothing_and_a_run_writes_every_file(tmp_path, data):
    events = []
    before = _files_under(tmp_path)
    trainer = Trainer(_parts_config(tmp_path / "out", data, export_onnx=True), Callbacks(
        log=events.append, on_start=lambda folder: events.append(("start", folder, os.listdir(folder))),
        on_batch=lambda progress: events.append("batch")))
    assert _files_under(tmp_path) == before and trainer.run_folder is None
    training_data = trainer.data
    assert training_data.class_names == ["0", "1", "7"] and training_data.batch_size == 8
    assert training_data.steps_per_epoch == 3 and len(training_data.split.train) == 18
    assert training_data.preprocessing.crop_size == 32
    result = trainer.run()
    assert result.run_folder == trainer.run_folder and os.path.dirname(result.run_folder) == str(tmp_path / "out")
    starts = [event for event in events if isinstance(event, tuple)]
    assert starts == [("start", result.run_folder, [])], "on_start once, with the new empty run folder"
    assert events.index(starts[0]) < events.index("batch"), "on_start comes before any training"
    for name in RUN_FILES:
        assert os.path.exists(os.path.join(result.run_folder, name)), name
    lines = [event for event in events if isinstance(event, str)]
    assert any(line.startswith("epoch 1/1: train loss") for line in lines)
    assert any(line.startswith(f"exported {result.run_folder}") for line in lines)
    assert not result.stopped and result.epochs_done == 1 and result.best["epoch"] == 1
    stored = safe_load(os.path.join(result.run_folder, "last.pth"))["train_params"]
    assert stored == TRAIN_SCHEMA.stored(trainer.config) and stored["num_workers"] == "auto", "the schema's stored form"
    assert TRAIN_SCHEMA.parse(stored) == trainer.config


def test_resume_compares_settings_as_values_whatever_form_a_run_stored(tmp_path):
    """num_workers auto is None typed, "auto" stored, and "None" in runs that stored str(value): the same setting."""
    assert stored_setting({"num_workers": "None"}, "num_workers") is None
    assert stored_setting({"num_workers": "auto"}, "num_workers") is None
    assert stored_setting({}, "num_workers") is None, "a run older than the setting ran with its default"
    assert stored_setting({"ema": "0.0"}, "ema") == stored_setting({"ema": "0"}, "ema") == 0.0


def test_an_unusable_output_folder_fails_at_run_not_at_construction(tmp_path, data):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    trainer = Trainer(_parts_config(blocker / "runs", data))
    with pytest.raises(ConfigError, match="cannot be created"):
        trainer.run()


@pytest.mark.slow
def test_on_batch_reports_every_batch_with_the_time_left(tmp_path, data, capsys):
    reports = []
    trainer = Trainer(_parts_config(tmp_path, data, epochs=2), Callbacks(on_batch=reports.append, log=lambda line: None),
                      progress_bar=True)
    trainer.run()
    batches = trainer.data.steps_per_epoch
    assert all(isinstance(report, BatchProgress) for report in reports)
    assert [(r.epoch, r.batch) for r in reports] == [(e, b) for e in (1, 2) for b in range(1, batches + 1)]
    assert {(r.epochs, r.batches) for r in reports} == {(2, batches)}
    assert all(r.seconds_left >= 0 and r.loss > 0 for r in reports)
    assert reports[0].seconds_left > 0 and reports[-1].seconds_left == 0
    assert "epoch 2/2" in capsys.readouterr().err, "progress_bar: a tqdm bar per epoch"


@pytest.mark.slow
def test_stop_within_a_batch_then_resume_at_that_batch(tmp_path, data):
    seen = []

    def stop_after_first_batch_of_epoch_2():
        return bool(seen) and (seen[-1].epoch, seen[-1].batch) == (2, 1)

    first = Trainer(_parts_config(tmp_path, data, epochs=2, export_onnx=True),
                    Callbacks(should_stop=stop_after_first_batch_of_epoch_2, on_batch=seen.append, log=lambda line: None)).run()
    last = safe_load(os.path.join(first.run_folder, "last.pth"))
    assert first.stopped and first.epochs_done == 1
    assert (last["epoch"], last["batch"]) == (1, 1), "resumable at the batch where it stopped"
    assert not os.path.exists(os.path.join(first.run_folder, "model.onnx")), "a stopped run exports no ONNX"

    logs, resumed_batches = [], []
    resumed = Trainer(_parts_config(tmp_path, data, epochs=2, resume=os.path.join(first.run_folder, "last.pth")),
                      Callbacks(on_batch=resumed_batches.append, log=logs.append)).run()
    steps = len(seen) - 1  # the first run's epoch 1, plus one batch of epoch 2
    assert [line for line in logs if line.startswith("resuming")] == [
        f"resuming {os.path.join(first.run_folder, 'last.pth')} at epoch 2, batch 1"]
    assert [(r.epoch, r.batch) for r in resumed_batches] == [(2, b) for b in range(2, steps + 1)]
    assert not resumed.stopped and resumed.epochs_done == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    assert os.path.isfile(os.path.join(resumed.run_folder, "best.pth")), "a resumed run folder holds the best model too"
    scheduler = safe_load(os.path.join(resumed.run_folder, "last.pth"))["scheduler"]
    assert scheduler["last_epoch"] == 2 * steps, "every batch of both epochs stepped once, none twice"


# --- CheckpointKeeper on synthetic metrics ------------------------------------------------------
def _keeper(folder, keep_best=True, class_names=("a", "b"), optimizer="sgd", model_name="resnext50_32x4d", fused=None):
    torch.manual_seed(0)
    model = nn.Linear(4, len(class_names))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    metadata = CheckpointMetadata(model_name, list(class_names), Preprocessing(),
                                  {"optimizer": optimizer, "train_mode": "scratch"})
    os.makedirs(folder, exist_ok=True)
    return CheckpointKeeper(str(folder), model, sgd, scheduler, scaler, metadata, keep_best=keep_best)


def _metrics(epoch, top1, loss):
    return {"epoch": epoch, "val_top1": top1, "val_loss": loss, "val_temperature": _temperature(epoch),
            "val_per_class": {}, "note": "not a scalar"}


def _temperature(epoch):
    return 1.0 + epoch / 10


def test_is_better_prefers_top1_then_lower_loss():
    assert is_better(_metrics(1, 0.1, 9.0), None)
    assert is_better(_metrics(2, 0.6, 9.0), _metrics(1, 0.5, 0.1))
    assert is_better(_metrics(2, 0.5, 0.9), _metrics(1, 0.5, 1.0))
    assert not is_better(_metrics(2, 0.5, 1.0), _metrics(1, 0.5, 1.0)), "a tie is no improvement"
    assert not is_better(_metrics(2, 0.4, 0.1), _metrics(1, 0.5, 1.0))


def test_keeper_tracks_best_and_stale_epochs(tmp_path):
    keeper = _keeper(tmp_path / "run")
    sequence = [(0.5, 1.0, True, 0), (0.5, 0.9, True, 0), (0.4, 0.5, False, 1), (0.5, 0.9, False, 2), (0.6, 2.0, True, 0)]
    for epoch, (top1, loss, improved, stale) in enumerate(sequence, start=1):
        assert keeper.end_epoch(_metrics(epoch, top1, loss)) is improved
        assert keeper.state.stale == stale and keeper.state.epoch == epoch
        best = safe_load(keeper.path("best.pth"))
        assert best["epoch"] == keeper.state.best["epoch"] and best["stale"] == 0
        # Each checkpoint carries the temperature fitted on its own epoch's validation predictions.
        assert best["temperature"] == _temperature(best["epoch"])
        assert safe_load(keeper.path("last.pth"))["temperature"] == _temperature(epoch)
        if improved:  # serialized once: last.pth is the same bytes
            assert filecmp.cmp(keeper.path("best.pth"), keeper.path("last.pth"), shallow=False)
    assert sorted(os.listdir(tmp_path / "run")) == ["best.pth", "last.pth"], "no temporary file left"
    assert keeper.state.best == {"epoch": 5, "val_top1": 0.6, "val_loss": 2.0, "val_temperature": 1.5}
    assert [row["epoch"] for row in keeper.state.history] == [1, 2, 3, 4, 5] and keeper.state.epochs_done == 5
    last = safe_load(keeper.path("last.pth"))
    assert (last["epoch"], last["batch"], last["stale"], len(last["history"])) == (5, 0, 0, 5)
    assert last["history"][0] == {"epoch": 1, "val_top1": 0.5, "val_loss": 1.0, "val_temperature": 1.1, "val_per_class": {}}
    assert last["train_params"] == {"optimizer": "sgd", "train_mode": "scratch"}

    without_best = _keeper(tmp_path / "no-best", keep_best=False)
    assert without_best.end_epoch(_metrics(1, 0.5, 1.0))
    assert os.listdir(tmp_path / "no-best") == ["last.pth"]


def test_keeper_resumes_state_and_carries_the_best_model_over(tmp_path):
    keeper = _keeper(tmp_path / "first")
    keeper.end_epoch(_metrics(1, 0.7, 1.0))
    keeper.end_epoch(_metrics(2, 0.6, 1.0))
    keeper.save_interrupted(epoch=2, batch=3)
    resumed = _keeper(tmp_path / "second")
    resumed.resume(keeper.path("last.pth"))
    state = resumed.state
    assert (state.epoch, state.batch, state.stale, state.best["epoch"]) == (2, 3, 1, 1)
    assert state.temperature == _temperature(2)
    assert state.start_batch(2) == 3 and state.start_batch(3) == 0
    assert safe_load(resumed.path("best.pth"))["epoch"] == 1, "best.pth copied into the new run folder"
    assert torch.equal(resumed.model.weight, keeper.model.weight)

    assert [group["fused"] for group in resumed.optimizer.param_groups] == [None]
    fused = _keeper(tmp_path / "fused", fused=True)
    fused.resume(keeper.path("last.pth"))
    assert [group["fused"] for group in fused.optimizer.param_groups] == [True], \
        "the step runs as this run chose, not as the checkpoint's run did"

    os.remove(keeper.path("best.pth"))
    orphan = _keeper(tmp_path / "third")
    orphan.resume(keeper.path("last.pth"))
    assert orphan.state.best is None and not os.path.exists(orphan.path("best.pth"))


@pytest.mark.parametrize("change, message", [
    ({"class_names": ("a", "c")}, "trained on other classes: a, b"),
    ({"optimizer": "adamw"}, "trained with optimizer 'sgd', this run asks for 'adamw'"),
    ({"model_name": "resnext101_32x8d"}, "is a resnext50_32x4d, model_name is resnext101_32x8d"),
])
def test_keeper_refuses_a_checkpoint_of_another_run(tmp_path, change, message):
    keeper = _keeper(tmp_path / "first")
    keeper.end_epoch(_metrics(1, 0.7, 1.0))
    with pytest.raises(CheckpointError, match=message):
        _keeper(tmp_path / "second", **change).resume(keeper.path("last.pth"))


def test_keeper_refuses_a_file_that_is_not_a_training_checkpoint(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"fc.weight": torch.zeros(2, 4)}, plain)
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        _keeper(tmp_path / "run").resume(str(plain))


def test_worst_predictions_gallery_gives_every_title_a_band_of_its_own(tmp_path):
    """Tall and wide images, right and wrong guesses: no title runs into an image, another title or the
    figure's edge, and the titles stay legible."""
    import numpy as np
    from matplotlib import pyplot as plt
    from PIL import Image

    from resnext_core.reports.plots import worst_predictions_figure

    items = []
    for index, (height, width) in enumerate([(90, 30), (30, 90), (64, 64)] * 4):
        path = str(tmp_path / f"{index}.png")
        Image.fromarray(np.full((height, width, 3), 40 * (index % 6), np.uint8)).save(path)
        items.append((path, 0))
    worst = [{"index": i, "label": i % 3, "predicted": (i + i % 2) % 3, "confidence": 0.93} for i in range(len(items))]
    figure = worst_predictions_figure(worst, items, ["cat", "dog", "long class name"], "Worst-classified, epoch 4")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    cells = [axes for axes in figure.axes if axes.images]
    assert len(cells) == len(items)
    images = [axes.images[0].get_window_extent(renderer) for axes in cells]
    titles = [axes.title.get_window_extent(renderer) for axes in cells] + [figure._suptitle.get_window_extent(renderer)]
    page = figure.bbox
    for box in images + titles:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, box
    for i, title in enumerate(titles):
        assert not any(title.overlaps(image) for image in images), f"title {i} runs into an image"
        assert not any(title.overlaps(other) for j, other in enumerate(titles) if j != i), f"title {i} overlaps another"
    assert all(axes.title.get_fontsize() >= 10 for axes in cells)
    plt.close(figure)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_recipes_optimizers_step_fused(tmp_path, optimizer):
    """One kernel for every parameter (benchmarks/optimizer_step.py); weight decay off norms and biases."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    built = build_optimizer(model, _parts_config(tmp_path, str(tmp_path), optimizer=optimizer))
    assert [group["fused"] for group in built.param_groups] == [True, True]
    assert [len(group["params"]) for group in built.param_groups] == [1, 3]
    assert [group["weight_decay"] for group in built.param_groups] == [0.05, 0.0]


LARGE_SET = (24, 2000)  # images, side: 275 MiB once decoded


def _image_dataset(root, size, count):
    bases = [Image.fromarray(textured_image(size, size, seed=seed)) for seed in range(4)]
    for index in range(count):
        folder = os.path.join(root, "ab"[index % 2])
        os.makedirs(folder, exist_ok=True)
        # Smooth content compresses well: the files are small, the decoded images are not.
        bases[index % 4].save(os.path.join(folder, f"{index}.jpg"), quality=90)
    return root


@pytest.mark.slow
def test_training_streams_images_instead_of_preloading(tmp_path):
    """Large photos train in about the memory of thumbnails: images are decoded a batch at a time."""
    count, side = LARGE_SET
    peaks = {}
    for label, size in (("small", 64), ("large", side)):
        data = _image_dataset(str(tmp_path / label), size, count)
        params = {"dataset_folder": data, "output_folder": str(tmp_path / f"out-{label}"), "model_name": "resnext50",
                  "train_mode": "scratch", "input_size": "32", "epochs": "1", "batch_size": "4", "val_split": "0.2",
                  "export_pth": "False"}
        code = "import json\n" + TRAIN_SCRIPT.format(train=TRAIN, params=repr(params)) + f"print(json.dumps({PEAK_RSS}))"
        peaks[label] = json_tail(run_python(code))
    decoded = count * side * side * 3 / 2**20
    print(f"peak RSS small {peaks['small']:.0f} MiB, large {peaks['large']:.0f} MiB; the large set decodes to {decoded:.0f} MiB")
    assert peaks["large"] - peaks["small"] < 0.35 * decoded, peaks
