"""Datasets as users bring them: broken files met mid-epoch (one process and two), label files (CSV and JSON Lines,
with bad lines), listing without decoding, compact item lists, and the evaluate and bulk commands on the same
files."""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from resnext_core.common.errors import DatasetError
from resnext_core.data.datasets import labelled_set, training_split
from resnext_core.data.folders import list_classes
from resnext_core.data.items import ItemList
from resnext_core.data.label_files import read_label_file
from resnext_core.training.config import TrainConfig
from resnext_core.train import train
from resnext_core.training.trainer import Callbacks, Trainer

from conftest import ROOT
from helpers import small_checkpoint, textured_image

CLASSES = ("0", "1", "7")
# unreadable_limit: these tiny sets hold a larger share of broken files than a real one may.
SMALL = dict(model_name="resnext50", train_mode="scratch", weights="none", input_size=32, epochs=1, batch_size=8,
             optimizer="adamw", learning_rate=0.002, hflip=False, device="cpu", unreadable_limit=0.5)
# The three kinds of broken file users meet, and the reason each is named with.
BROKEN = {"text.jpg": "not an image Pillow can identify", "empty.jpg": "empty file", "cut.jpg": "truncated"}


def jpeg_dataset(root, digits, per_class=10, split=True):
    """Digits as JPEG files (train/ and val/ <class>/, or flat <class>/), 64 px gray."""
    for name in CLASSES:
        sources = sorted(os.listdir(os.path.join(digits, "train", name)))[:per_class]
        for index, filename in enumerate(sources):
            part = ("val" if index % 4 == 0 else "train") if split else ""
            folder = os.path.join(root, part, name)
            os.makedirs(folder, exist_ok=True)
            image = Image.open(os.path.join(digits, "train", name, filename)).resize((64, 64))
            image.save(os.path.join(folder, f"{index:02d}.jpg"), quality=90)
    return str(root)


def break_files(folder, prefix=""):
    """The three kinds of broken file in `folder`: a text file named .jpg, an empty one, a JPEG cut at a third."""
    os.makedirs(folder, exist_ok=True)
    encoded = io.BytesIO()
    Image.fromarray(textured_image(120, 160)).save(encoded, "JPEG", quality=90)
    whole = encoded.getvalue()
    with open(os.path.join(folder, prefix + "text.jpg"), "w") as handle:
        handle.write("a web page saved as an image\n")
    open(os.path.join(folder, prefix + "empty.jpg"), "wb").close()
    with open(os.path.join(folder, prefix + "cut.jpg"), "wb") as handle:
        handle.write(whole[: len(whole) // 3])
    return [os.path.join(folder, prefix + name) for name in BROKEN]


def skipped_lines(run_folder) -> dict:
    with open(os.path.join(run_folder, "skipped_files.txt"), encoding="utf-8") as handle:
        return dict(line.rstrip("\n").split("\t", 1) for line in handle)


def assert_named(broken: list, skipped: dict, log: str):
    for path in broken:
        reason = BROKEN[os.path.basename(path).split("_")[-1]]
        assert reason in skipped[path], (path, skipped[path])
        assert f"skipped unreadable image {path}" in log, path


def test_listing_opens_no_file_and_items_are_compact(tmp_path):
    """The scan reads names: a broken file is listed like any image (met when read); a file of another
    extension is skipped by name. A million paths cost their bytes and a few more each."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.jpg").write_text("not a jpeg")
    (tmp_path / "b" / "y.png").write_bytes(b"")
    (tmp_path / "b" / "notes.txt").write_text("notes")
    skipped = []
    items = list_classes(str(tmp_path), ["a", "b"], skipped)
    assert list(items) == [(str(tmp_path / "a" / "x.jpg"), 0), (str(tmp_path / "b" / "y.png"), 1)]
    assert skipped == [(str(tmp_path / "b" / "notes.txt"), "not an image file (by its extension)")]
    paths = [f"class{i % 1000:04d}/image_{i:07d}.jpg" for i in range(1_000_000)]
    million = ItemList("/data/set", paths, np.arange(len(paths)) % 1000)
    assert million.nbytes <= sum(map(len, paths)) + 12 * len(paths)
    assert million[999_999] == ("/data/set/class0999/image_0999999.jpg", 999)
    assert million.take([5, 2]).paths() == ["/data/set/class0005/image_0000005.jpg", "/data/set/class0002/image_0000002.jpg"]


@pytest.mark.slow
def test_broken_files_met_mid_epoch_are_skipped_named_and_the_run_completes(tmp_path, digits):
    data = jpeg_dataset(tmp_path / "data", digits)
    broken = break_files(os.path.join(data, "train", "1")) + break_files(os.path.join(data, "val", "7"), "val_")
    logs = []
    config = TrainConfig(dataset_folder=data, output_folder=str(tmp_path / "runs"), **SMALL)
    trainer = Trainer(config, Callbacks(log=logs.append))
    assert not any("unreadable" in line for line in logs), "nothing is opened before training"
    result = trainer.run()
    assert result.epochs_done == 1 and result.skipped == 6 and result.history[0]["skipped_files"] == 6
    assert_named(broken, skipped_lines(result.run_folder), "\n".join(logs))
    assert os.path.isfile(os.path.join(result.run_folder, "best.pth"))
    validation_images = sum(len(os.listdir(os.path.join(data, "val", c))) for c in CLASSES)
    confusion = np.array(json.load(open(os.path.join(result.run_folder, "best_metrics.json")))["val_confusion_matrix"])
    assert confusion.sum() == validation_images - 3, "the unreadable validation images are left out of the scores"


@pytest.mark.slow
def test_broken_files_on_two_gloo_processes_are_named_by_rank_0(tmp_path, digits):
    """Each rank meets its own shard's broken files; every one reaches the run folder and the caller's log, and the
    ranks stay in step (the run completes)."""
    data = jpeg_dataset(tmp_path / "data", digits, per_class=12)
    broken = break_files(os.path.join(data, "train", "0")) + break_files(os.path.join(data, "train", "7"), "b_")
    logs = []
    config = TrainConfig(dataset_folder=data, output_folder=str(tmp_path / "runs"), processes="2", **SMALL)
    result = train(config, Callbacks(log=logs.append))
    assert result.epochs_done == 1 and result.skipped == 6
    assert_named(broken, skipped_lines(result.run_folder), "\n".join(logs))


@pytest.mark.slow
def test_more_unreadable_images_than_the_limit_stop_the_run_with_the_reason(tmp_path, digits):
    data = jpeg_dataset(tmp_path / "data", digits, per_class=4, split=False)
    for name in CLASSES:
        for copy in range(3):
            break_files(os.path.join(data, name), f"{copy}_")
    config = TrainConfig(dataset_folder=data, output_folder=str(tmp_path / "runs"),
                         **{**SMALL, "epochs": 3, "unreadable_limit": 0.25})
    with pytest.raises(DatasetError, match=r"of the 39 images are unreadable, more than unreadable_limit \(0.25\)"):
        Trainer(config, Callbacks(log=lambda line: None)).run()
    run_folder = os.path.join(tmp_path, "runs", os.listdir(tmp_path / "runs")[0])
    assert not os.path.exists(os.path.join(run_folder, "last.pth")), "stopped within the first epoch"


def write_label_file(path, rows, columns=("path", "label", "split")):
    if str(path).endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(dict(zip(columns, row))) + "\n" for row in rows)
        return str(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


@pytest.mark.slow
def test_a_label_file_trains_with_its_split_and_names_a_missing_file_by_its_line(tmp_path, digits):
    data = jpeg_dataset(tmp_path / "images", digits, split=False)
    rows = []
    for name in CLASSES:
        for index, filename in enumerate(sorted(os.listdir(os.path.join(data, name)))):
            path = os.path.join("images", name, filename)
            if index == 3:  # an absolute path
                path = os.path.join(str(tmp_path), path)
            rows.append((path, f"digit {name}", "val" if index % 4 == 0 else "train"))
    rows.append(("images/1/gone.jpg", "digit 1", "train"))
    label_file = write_label_file(tmp_path / "labels.csv", rows)
    logs = []
    config = TrainConfig(label_file=label_file, output_folder=str(tmp_path / "runs"), **SMALL)
    result = Trainer(config, Callbacks(log=logs.append)).run()
    assert open(os.path.join(result.run_folder, "classes.txt")).read().split("\n")[:3] == ["digit 0", "digit 1", "digit 7"]
    counts = list(csv.DictReader(open(os.path.join(result.run_folder, "class_counts.csv"))))
    assert [(r["train"], r["val"]) for r in counts] == [("7", "3"), ("8", "3"), ("7", "3")]
    missing = str(tmp_path / "images" / "1" / "gone.jpg")
    assert skipped_lines(result.run_folder)[missing] == f"no such file (labels.csv line {len(rows) + 1})"
    assert any(f"{missing} (labels.csv line {len(rows) + 1}): no such file" in line for line in logs)


def test_json_lines_and_val_split_without_a_split_column(tmp_path, digits):
    data = jpeg_dataset(tmp_path / "images", digits, split=False)
    rows = [(os.path.join("images", name, f), name) for name in CLASSES for f in sorted(os.listdir(os.path.join(data, name)))]
    split = training_split("", write_label_file(tmp_path / "labels.jsonl", rows, ("path", "label")), val_split=0.2, seed=3)
    assert split.class_names == list(CLASSES) and (len(split.train), len(split.val)) == (24, 6)
    assert split.train.describe(0).endswith("(labels.jsonl line %d)" % split.train.lines[0])
    again = training_split("", str(tmp_path / "labels.jsonl"), val_split=0.2, seed=3)
    assert again.val.paths() == split.val.paths(), "the split is seeded"


@pytest.mark.parametrize("name, text, problems", [
    ("labels.csv", "path,label,split\na.jpg,cat,train\nb.jpg,,train\nc.jpg,dog,tset\n,dog,val\na.jpg,dog,val\n",
     ["4 bad line(s)", "line 3: empty label", "line 4: unknown split 'tset' (expected train or val)", "line 5: empty path",
      "line 6: a.jpg is listed already, on line 2"]),
    ("labels.jsonl", '{"path": "a.jpg", "label": "cat"}\nnot json\n[1]\n{"path": "b.jpg", "label": 3}\n',
     ["line 2: not JSON", "line 3: not a JSON object", "line 4: label must be text, got 3"]),
    ("labels.csv", "file,class\na.jpg,cat\n", ["its first line must name the columns", "got file, class"]),
    ("labels.txt", "a.jpg cat\n", ["expected a .csv, .tsv, .jsonl, .ndjson file"]),
])
def test_bad_lines_of_a_label_file_are_named_with_their_numbers(tmp_path, name, text, problems):
    (tmp_path / name).write_text(text)
    with pytest.raises(DatasetError) as error:
        read_label_file(str(tmp_path / name))
    for problem in problems:
        assert problem in str(error.value)


def test_a_label_file_whose_paths_are_all_missing_is_refused_at_once(tmp_path):
    label_file = write_label_file(tmp_path / "labels.csv", [(f"photos/{i}.jpg", "cat" if i % 2 else "dog") for i in range(50)],
                                  ("path", "label"))
    with pytest.raises(DatasetError, match=r"none of the 50 listed files checked exists .*relative paths are read from "
                                           r"the label file's folder"):
        training_split("", label_file)


@pytest.mark.slow
def test_evaluate_reads_a_label_file_and_names_broken_files(tmp_path, digits):
    """The evaluate command on a label file (its val rows) scores what a folder of the same files scores, and names
    the broken ones."""
    data = jpeg_dataset(tmp_path / "data", digits)
    broken = break_files(os.path.join(data, "val", "0"))
    rows = [(os.path.relpath(os.path.join(root, f), tmp_path), os.path.basename(root), os.path.basename(os.path.dirname(root)))
            for root, _, files in os.walk(data) for f in sorted(files)]
    label_file = write_label_file(tmp_path / "labels.csv", rows)
    small_checkpoint(tmp_path / "m.pth", classes=CLASSES)
    reports = {}
    for source in (data, label_file):
        output = tmp_path / f"eval-{os.path.basename(source)}"
        completed = subprocess.run([sys.executable, "-m", "resnext_core.evaluate", source, "--output", str(output),
                                    "--model_weight_file", str(tmp_path / "m.pth")], cwd=ROOT, capture_output=True,
                                   text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr[-3000:]
        reports[source] = json.load(open(output / "evaluation.json"))
    by_folder, by_file = reports[data], reports[label_file]
    assert by_file["images"] == by_folder["images"] == 9 and by_file["top1"] == by_folder["top1"]
    for report in (by_folder, by_file):
        assert sorted(u["path"] for u in report["unreadable"]) == sorted(broken)
    assert labelled_set(label_file).items.lines is not None


def test_bulk_prediction_gives_each_broken_file_a_row_with_its_reason(tmp_path, digits):
    from resnext_core import InferConfig
    from resnext_core.inference.bulk import predict_files

    data = jpeg_dataset(tmp_path / "data", digits, per_class=4, split=False)
    broken = break_files(os.path.join(data, "0"))
    small_checkpoint(tmp_path / "m.pth", classes=CLASSES)
    result = predict_files(InferConfig(model_weight_file=str(tmp_path / "m.pth"), device="cpu"), [data],
                           str(tmp_path / "rows.csv"), progress=False)
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path / "rows.csv"))}
    assert result.errors == 3 and result.classified == 12 and len(rows) == 15
    for path in broken:
        assert BROKEN[os.path.basename(path)] in rows[path]["error"]
