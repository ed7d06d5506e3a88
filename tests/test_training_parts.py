"""resnext_core's training parts without the plugin: Trainer callbacks, stop and resume, CheckpointKeeper."""
import filecmp
import os

import pytest
import torch
from torch import nn

from helpers import tiny_dataset
from resnext_core.checkpoint import atomic_copy, atomic_save, safe_load
from resnext_core.checkpointing import CheckpointKeeper, CheckpointMetadata, is_better
from resnext_core.errors import CheckpointError, ConfigError
from resnext_core.preprocess import Preprocessing
from resnext_core.training import BatchProgress, TrainConfig, Trainer, build_optimizer

RUN_FILES = ("best.pth", "last.pth", "classes.txt", "metrics.csv", "metrics.json", "best_metrics.json",
             "confusion_matrix.png", "training_curves.png", "tensorboard", "model.onnx")


@pytest.fixture(scope="module")
def data(tmp_path_factory, digits):
    """3 classes of 8 digits: 18 training images (3 batches of 8 or fewer), 6 validation images."""
    return tiny_dataset(tmp_path_factory.mktemp("data"), digits_folder=digits)


def _config(output_folder, data, **overrides):
    values = dict(dataset_folder=data, output_folder=str(output_folder), model_name="resnext50", weights="none",
                  train_mode="scratch", input_size=32, epochs=1, batch_size=8, optimizer="adamw", learning_rate=0.002,
                  weight_decay=0.05, hflip=False, val_split=0.25, seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def _files_under(folder):
    return sorted(os.path.join(root, name) for root, dirs, files in os.walk(folder) for name in dirs + files)


def test_construction_writes_nothing_and_a_run_writes_every_file(tmp_path, data):
    events = []
    before = _files_under(tmp_path)
    trainer = Trainer(_config(tmp_path / "out", data, export_onnx=True), log=events.append,
                      on_start=lambda folder: events.append(("start", folder, os.listdir(folder))),
                      on_batch=lambda progress: events.append("batch"))
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


def test_an_unusable_output_folder_fails_at_run_not_at_construction(tmp_path, data):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    trainer = Trainer(_config(blocker / "runs", data))
    with pytest.raises(ConfigError, match="cannot be created"):
        trainer.run()


def test_on_batch_reports_every_batch_with_the_time_left(tmp_path, data, capsys):
    reports = []
    trainer = Trainer(_config(tmp_path, data, epochs=2), on_batch=reports.append, log=lambda line: None, progress_bar=True)
    trainer.run()
    batches = trainer.data.steps_per_epoch
    assert all(isinstance(report, BatchProgress) for report in reports)
    assert [(r.epoch, r.batch) for r in reports] == [(e, b) for e in (1, 2) for b in range(1, batches + 1)]
    assert {(r.epochs, r.batches) for r in reports} == {(2, batches)}
    assert all(r.seconds_left >= 0 and r.loss > 0 for r in reports)
    assert reports[0].seconds_left > 0 and reports[-1].seconds_left == 0
    assert "epoch 2/2" in capsys.readouterr().err, "progress_bar: a tqdm bar per epoch"


def test_stop_within_a_batch_then_resume_at_that_batch(tmp_path, data):
    seen = []

    def stop_after_first_batch_of_epoch_2():
        return bool(seen) and (seen[-1].epoch, seen[-1].batch) == (2, 1)

    first = Trainer(_config(tmp_path, data, epochs=2, export_onnx=True), should_stop=stop_after_first_batch_of_epoch_2,
                    on_batch=seen.append, log=lambda line: None).run()
    last = safe_load(os.path.join(first.run_folder, "last.pth"))
    assert first.stopped and first.epochs_done == 1
    assert (last["epoch"], last["batch"]) == (1, 1), "resumable at the batch where it stopped"
    assert not os.path.exists(os.path.join(first.run_folder, "model.onnx")), "a stopped run exports no ONNX"

    logs, resumed_batches = [], []
    resumed = Trainer(_config(tmp_path, data, epochs=2, resume=os.path.join(first.run_folder, "last.pth")),
                      on_batch=resumed_batches.append, log=logs.append).run()
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
    from PIL import Image

    from matplotlib import pyplot as plt

    from resnext_core.reports import worst_predictions_figure

    items = []
    for index, (height, width) in enumerate([(90, 30), (30, 90), (64, 64)] * 4):
        path = str(tmp_path / f"{index}.png")
        Image.fromarray(np.full((height, width, 3), 40 * (index % 6), np.uint8)).save(path)
        items.append((path, 0))
    worst = [{"index": i, "label": i % 3, "predicted": (i + i % 2) % 3, "confidence": 0.93} for i in range(len(items))]
    figure = worst_predictions_figure(worst, items, ["cat", "dog", "long class name"], epoch=4)
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


@pytest.mark.parametrize("links", [True, False])
def test_atomic_copy_links_or_copies_and_a_later_replace_leaves_the_copy(tmp_path, monkeypatch, links):
    """Where the file system refuses hard links (FAT, some shares, another device), the bytes are copied."""
    def refuse_link(*args):
        raise OSError(18, "Invalid cross-device link")

    if not links:
        monkeypatch.setattr(os, "link", refuse_link)
    source, copy = tmp_path / "last.pth", tmp_path / "run" / "best.pth"
    atomic_save({"epoch": 1}, str(source))
    atomic_copy(str(source), str(copy))
    assert (os.stat(copy).st_ino == os.stat(source).st_ino) is links
    atomic_save({"epoch": 2}, str(source))
    assert safe_load(str(copy)) == {"epoch": 1} and safe_load(str(source)) == {"epoch": 2}
    assert os.listdir(tmp_path / "run") == ["best.pth"], "no temporary file left"


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_recipes_optimizers_step_fused(tmp_path, optimizer):
    """One kernel for every parameter (benchmarks/optimizer_step.py); weight decay off norms and biases."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    built = build_optimizer(model, _config(tmp_path, str(tmp_path), optimizer=optimizer))
    assert [group["fused"] for group in built.param_groups] == [True, True]
    assert [len(group["params"]) for group in built.param_groups] == [1, 3]
    assert [group["weight_decay"] for group in built.param_groups] == [0.05, 0.0]
