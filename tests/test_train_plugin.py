"""train_torchvision_resnext through Workflow on real images (scikit-learn's digits), and resnext_core.training."""
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

from helpers import DIGITS_RECIPE, INFER, TRAIN, heldout_accuracy, new_task, results, tiny_dataset
from resnext_core.calibration import expected_calibration_error, negative_log_likelihood
from resnext_core.checkpoint import safe_load
from resnext_core.errors import ConfigError
from resnext_core.inference import load_classifier
from resnext_core.metrics import classification_metrics
from resnext_core.training import TrainConfig, Trainer


FAST_PRECISIONS = ["bf16", "int8"]  # bf16: what 'auto' picks on capable hardware; int8: opt-in. fp16 is CUDA only
TINY = {"model_name": "resnext50", "train_mode": "scratch", "input_size": "32", "epochs": "1", "batch_size": "8",
        "optimizer": "adamw", "learning_rate": "0.002", "weight_decay": "0.05", "hflip": "False", "val_split": "0.25"}


def run_training(params):
    _, task = new_task(TRAIN, params)
    task.run()
    return task, task.get_output(0).get_path()


def test_tiny_run_writes_every_output(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, classes=("0", "1", "2", "3", "4", "5"))
    task, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "export_onnx": "True"})
    assert os.path.dirname(run) == str(tmp_path / "out")
    for name in ("best.pth", "last.pth", "classes.txt", "metrics.csv", "metrics.json", "best_metrics.json",
                 "confusion_matrix.png", "training_curves.png", "model.onnx", "calibration_sample.npy"):
        assert os.path.isfile(os.path.join(run, name)), name
    sample = np.load(os.path.join(run, "calibration_sample.npy"))  # int8's calibration for this run's checkpoints
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


def test_onnx_export_matches_torch_with_dynamic_batch(tmp_path, digits):
    import onnxruntime

    from resnext_core import load_classifier

    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "export_onnx": "True"})
    classifier = load_classifier(weight_file=os.path.join(run, "best.pth"), device="cpu", engine="torch")
    session = onnxruntime.InferenceSession(os.path.join(run, "model.onnx"), providers=["CPUExecutionProvider"])
    for count in (1, 5):
        images = torch.randn(count, 3, 32, 32)
        with torch.inference_mode():
            expected = classifier.runner.model(images).numpy()
        actual = session.run(None, {"images": images.numpy()})[0]
        assert actual.shape == (count, 3) and np.abs(actual - expected).max() < 1e-4


def test_checkpoint_feeds_inference_with_only_its_path(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "out")})
    _, infer = new_task(INFER, {"model_weight_file": os.path.join(run, "best.pth")})
    infer.get_input(0).set_image(np.asarray(Image.open(glob.glob(os.path.join(data, "7", "*.png"))[0]).convert("RGB")))
    infer.run()
    assert sorted(n for n, _ in results(infer)) == ["0", "1", "7"]


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


def test_stop_within_a_batch_then_resume(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    calls = {"n": 0}

    def stop_in_epoch_2():
        calls["n"] += 1  # checked before each batch and once after an epoch's last batch
        return calls["n"] > 8  # 18 training images, batches of 4: 5 batches + 1 check an epoch

    first = Trainer(_config(tmp_path, data), should_stop=stop_in_epoch_2).run()
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


def test_corrupt_files_skipped_and_counted_classes_unioned(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, split=True)
    (tmp_path / "data" / "train" / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "data" / "train" / "1" / "readme.txt").write_text("not an image")
    tiny_dataset(tmp_path / "data" / "train", classes=("9",), digits_folder=digits, per_class=3)
    logs = []
    result = Trainer(_config(tmp_path, data, epochs=1), log=logs.append).run()
    text = "\n".join(logs)
    assert "only in train: 9" in text and "skipped 2 unreadable file(s)" in text
    assert result.history[0]["skipped_files"] == 2
    assert open(os.path.join(result.run_folder, "classes.txt")).read().split() == ["0", "1", "7", "9"]
    assert len(open(os.path.join(result.run_folder, "skipped_files.txt")).read().splitlines()) == 2


def test_batch_larger_than_the_set_and_bad_output_folder(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=4)
    logs = []
    result = Trainer(_config(tmp_path, data, epochs=1, batch_size=500), log=logs.append).run()
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
def test_real_accuracy_on_heldout_digits(digits_model, heldout):
    """A broken trainer (labels shuffled, no learning) stays near 10%."""
    accuracy = heldout_accuracy(digits_model, heldout)
    print(f"held-out accuracy after {DIGITS_RECIPE['epochs']} epochs: {accuracy:.3f}")
    assert accuracy >= 0.90


@pytest.mark.slow
def test_calibrated_confidences_on_heldout_digits(digits_model, heldout):
    """The temperature fitted on the run's validation split lowers ECE on images it never saw; top-1 unchanged."""
    images, labels = [image for image, _ in heldout], [int(truth) for _, truth in heldout]
    fitted = safe_load(digits_model)["temperature"]
    raw = load_classifier(weight_file=digits_model, device="cpu", calibrate=False).predict(images).numpy()
    calibrated = load_classifier(weight_file=digits_model, device="cpu").predict(images).numpy()
    before, after = expected_calibration_error(raw, labels), expected_calibration_error(calibrated, labels)
    print(f"held-out digits: T {fitted:.3f}, ECE {before:.4f} -> {after:.4f}, "
          f"NLL {_nll(raw, labels):.4f} -> {_nll(calibrated, labels):.4f}")
    assert fitted != pytest.approx(1.0, abs=0.02)  # label smoothing leaves a model underconfident: T < 1
    assert after <= before
    assert (raw.argmax(1) == calibrated.argmax(1)).all()
    # The plugin applies it by default and reports the raw softmax with calibrate off.
    _, infer = new_task(INFER, {"model_weight_file": digits_model})
    infer.get_input(0).set_image(images[0])
    infer.run()
    assert results(infer)[0][1] == pytest.approx(calibrated[0].max(), abs=1e-4)
    infer.set_parameters({"calibrated_confidence": "False"})
    infer.run()
    assert results(infer)[0][1] == pytest.approx(raw[0].max(), abs=1e-4)


def _nll(probabilities, labels) -> float:
    return negative_log_likelihood(np.log(np.maximum(probabilities, 1e-12)), labels)


@pytest.mark.slow
@pytest.mark.parametrize("precision", FAST_PRECISIONS)
def test_fast_precisions_agree_with_fp32(digits_model, heldout, precision):
    """Faster precisions keep top-1 agreement >= 99% with fp32 (the rule 'auto' follows; int8 is held to it too).
    int8 calibrates on the sample of validation images the run left beside its checkpoint: no calibration_folder."""
    images = [image for image, _ in heldout]
    exact = load_classifier(weight_file=digits_model, device="cpu", precision="fp32").predict(images).argmax(1)
    fast = load_classifier(weight_file=digits_model, device="cpu", precision=precision).predict(images).argmax(1)
    agreement = (exact == fast).float().mean().item()
    print(f"{precision}: top-1 agreement with fp32 {agreement:.4f} over {len(images)} held-out digits")
    assert agreement >= 0.99


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


def test_data_workers_train_and_shut_down_when_stopped(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    before = _children()
    result = Trainer(_config(tmp_path, data, epochs=1, num_workers=2)).run()
    assert result.epochs_done == 1 and not result.stopped
    calls = {"n": 0}

    def stop_at_third_batch():
        calls["n"] += 1
        return calls["n"] > 2

    stopped = Trainer(_config(tmp_path, data, epochs=3, num_workers=2), should_stop=stop_at_third_batch).run()
    assert stopped.stopped
    assert _children_once_settled(before) == before, "data-loading workers are gone once training returns"


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
    from resnext_core.train_config import MAX_AUTO_WORKERS
    from resnext_core.training_data import loader_workers

    assert TrainConfig().num_workers is None, "auto by default"
    assert loader_workers(None, torch.device("cpu")) == 0, "measured slower with workers on the CPU (README)"
    assert loader_workers(3, torch.device("cpu")) == 3 and loader_workers(0, torch.device("cuda")) == 0, "a number is kept"
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(None, torch.device("cuda")) == min(MAX_AUTO_WORKERS, max(1, cores - 1))


def test_a_failed_training_does_not_break_the_next(tmp_path, digits):
    """A run failing after its MLflow run started (bad resume file) must not leave that run active."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits)
    (tmp_path / "last.pth").write_bytes(b"\x80\x02garbage")
    with pytest.raises(Exception, match="last.pth is corrupt"):
        run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "failed"),
                      "resume": str(tmp_path / "last.pth")})
    _, run = run_training({**TINY, "dataset_folder": data, "output_folder": str(tmp_path / "next")})
    assert os.path.isfile(os.path.join(run, "best.pth"))


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
