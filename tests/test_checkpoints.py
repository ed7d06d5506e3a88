"""Checkpoints: one self-describing format, the public plugin's plain state dicts, files that are refused,
and a checkpoint never lost to a killed process."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from resnext_core.common import checkpoint, models
from resnext_core.common.checkpoint import load_checkpoint, safe_load
from resnext_core.common.errors import CheckpointError
from resnext_core.common.files import atomic_copy, atomic_save
from resnext_core.common.preprocess import Preprocessing

from conftest import ROOT
from helpers import TRAIN, TRAIN_SCRIPT, FileCreatingPayload, new_task, small_checkpoint, tiny_dataset


def test_checkpoint_round_trip(tmp_path):
    model = small_checkpoint(tmp_path / "best.pth", epoch=3)
    spec = checkpoint.load_checkpoint(str(tmp_path / "best.pth"))
    assert spec.model_name == "resnext50_32x4d" and spec.class_names == ["cat", "dog", "bird"]
    assert spec.preprocessing == Preprocessing(64, 73)
    assert torch.equal(spec.state_dict["fc.bias"], model.state_dict()["fc.bias"])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_plain_state_dict_with_class_file(tmp_path):
    model = models.build_model("resnext50", num_classes=2)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "plain.pth")
    (tmp_path / "classes.txt").write_text("ok\n\nnot ok\n")
    spec = checkpoint.load_checkpoint(str(tmp_path / "plain.pth"), str(tmp_path / "classes.txt"))
    assert spec.class_names == ["ok", "not ok"] and spec.model_name == "resnext50_32x4d"
    with pytest.raises(CheckpointError, match="class_file"):
        checkpoint.load_checkpoint(str(tmp_path / "plain.pth"))


def test_architecture_is_read_from_the_weights(tmp_path):
    with torch.device("meta"):
        for name in models.MODEL_NAMES:
            assert checkpoint.detect_architecture(models.build_model(name).state_dict()) == name


def test_class_count_mismatch_names_both_numbers(tmp_path):
    small_checkpoint(tmp_path / "best.pth")
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(CheckpointError, match=r"5 classes.*3 outputs"):
        checkpoint.load_checkpoint(str(tmp_path / "best.pth"), str(tmp_path / "five.txt"))


def test_class_file_duplicates_refused(tmp_path):
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(CheckpointError, match="repeats class names: a"):
        checkpoint.read_class_file(str(tmp_path / "dup.txt"))


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), (b"", "empty"), (b"hello, not a checkpoint\n", "corrupt"), ("truncate", "corrupt")],
    ids=["missing", "empty", "text", "truncated"],
)
def test_bad_weight_files_name_the_path(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content == "truncate":
        small_checkpoint(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.load_checkpoint(str(path))
    assert str(path) in str(info.value)


def test_unsafe_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "payload": FileCreatingPayload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load_checkpoint(str(path))
    assert not marker.exists()


def _temp_checkpoints(folder):
    return [e.path for e in os.scandir(folder) if e.name.startswith(".tmp-") and e.name.endswith(".pth")] if os.path.isdir(folder) else []


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=6)
    out = tmp_path / "out"
    params = {"dataset_folder": data, "output_folder": str(out), "run_name": "killed", "model_name": "resnext50",
              "train_mode": "scratch", "input_size": "32", "epochs": "1000", "batch_size": "6", "optimizer": "adamw",
              "hflip": "False", "val_split": "0.25", "export_pth": "False"}
    run = out / "killed"
    process = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT.format(train=TRAIN, params=repr(params))],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    caught = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            # Wait for a rewrite of last.pth: the previous one exists and a new one is half written.
            if (run / "last.pth").exists():
                partial = _temp_checkpoints(run)
                if partial and os.path.getsize(partial[0]) > 0:
                    process.send_signal(signal.SIGKILL)
                    caught = partial[0]
                    break
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert caught, f"never saw a checkpoint being written: {process.stderr.read()[-2000:]}"
    assert process.returncode == -signal.SIGKILL
    assert os.path.exists(caught), "killed before the rename: the write really was interrupted"
    last = safe_load(str(run / "last.pth"))
    assert last["epoch"] >= 1 and load_checkpoint(str(run / "last.pth")).class_names == ["0", "1", "7"]
    # ...and training goes on from it.
    _, task = new_task(TRAIN, {**params, "epochs": str(last["epoch"] + 1), "run_name": "resumed",
                               "resume": str(run / "last.pth")})
    task.run()
    resumed = safe_load(os.path.join(task.get_output(0).get_path(), "last.pth"))
    assert resumed["epoch"] == last["epoch"] + 1


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
