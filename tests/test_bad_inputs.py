"""The bad-input matrix: every case goes through a plugin as users call it (Workflow + task.run()).

Each case ends in a result or an error whose message names the problem; no case may take the process
down (a native abort would end this pytest run). The table below is the list the README's
reliability section refers to.
"""
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from resnext_core.common import models

from helpers import (
    INFER, TRAIN, FileCreatingPayload, new_task, small_checkpoint, textured_image, tiny_dataset
)

OK = "result"


@dataclass
class Case:
    id: str
    plugin: str
    expect: object  # OK, or substrings the error message must contain
    params: dict = field(default_factory=dict)
    image: object = None  # an array, or None for a small textured image (inference only)
    prepare: object = None  # prepare(tmp_path, digits) -> extra params (files, folders)


def _image(height, width, channels=3, dtype=np.uint8, value=None):
    if value is None:
        return textured_image(height, width, channels, dtype)
    return np.full((height, width, channels), value, dtype)


def _file(name, content):
    """prepare() writing `content` (bytes) to tmp_path/name and pointing model_weight_file at it."""

    def prepare(tmp_path, _):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        return {"model_weight_file": str(path)}

    return prepare


def _truncated(tmp_path, _):
    path = tmp_path / "truncated.pth"
    small_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return {"model_weight_file": str(path)}


def _other_architecture(tmp_path, _):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    return {"model_weight_file": str(path), "class_file": str(tmp_path / "classes.txt")}


def _class_file(text):
    def prepare(tmp_path, _):
        weights = tmp_path / "three.pth"
        small_checkpoint(weights)
        (tmp_path / "classes.txt").write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"model_weight_file": str(weights), "class_file": str(tmp_path / "classes.txt")}

    return prepare


def _unsafe_pickle(tmp_path, _):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": FileCreatingPayload(str(tmp_path / "pwned"))}, path)
    return {"model_weight_file": str(path)}


def _missing_fc(tmp_path, _):
    path = tmp_path / "headless.pth"
    state = models.build_model("resnext50", num_classes=3).state_dict()
    del state["fc.weight"], state["fc.bias"]
    torch.save(state, path)
    return {"model_weight_file": str(path)}


def _quantization_images(tmp_path, _):
    for index in range(6):
        Image.fromarray(textured_image(80, 100, seed=index)).save(tmp_path / f"{index}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not an image")  # skipped, not fatal
    return {"quantization_folder": str(tmp_path)}


def _dataset(layout):
    """prepare() building a dataset folder of the given layout from real digit images."""

    def prepare(tmp_path, digits):
        data = tmp_path / "data"
        if layout != "missing":
            data.mkdir()
        if layout == "no_classes":
            (data / "notes.txt").write_text("no class folders here")
        if layout in ("one_class", "empty_class"):
            tiny_dataset(data, classes=("3",), digits_folder=digits)
        if layout == "empty_class":
            tiny_dataset(data, classes=("4",), digits_folder=digits)
            (data / "empty").mkdir()
        if layout in ("good", "corrupt_files"):
            tiny_dataset(data, digits_folder=digits)
        if layout == "corrupt_files":
            (data / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
            (data / "1" / "zero.jpg").write_bytes(b"")
            (data / "7" / "notes.txt").write_text("not an image")
        return {"dataset_folder": str(data), "output_folder": str(tmp_path / "out")}

    return prepare


def _with(prepare, **params):
    def combined(tmp_path, digits):
        return {**prepare(tmp_path, digits), **params}

    return combined


def _resume_from(content):
    def prepare(tmp_path, digits):
        path = tmp_path / "last.pth"
        if content is not None:
            path.write_bytes(content)
        return {**_dataset("good")(tmp_path, digits), "resume": str(path)}

    return prepare


def _output_is_a_file(tmp_path, digits):
    params = _dataset("good")(tmp_path, digits)
    (tmp_path / "a_file").write_text("")
    return {**params, "output_folder": str(tmp_path / "a_file" / "runs")}


TINY_TRAINING = {"model_name": "resnext50", "train_mode": "scratch", "input_size": "32", "epochs": "1",
                 "batch_size": "8", "optimizer": "adamw", "hflip": "False", "val_split": "0.25"}
TRAIN_GOOD = _dataset("good")

CASES = [
    # Images (inference)
    Case("empty-array", INFER, ["empty"], image=np.zeros((0, 0, 3), np.uint8)),
    Case("zero-rows", INFER, ["empty", "(0, 50, 3)"], image=np.zeros((0, 50, 3), np.uint8)),
    Case("zero-columns", INFER, ["empty"], image=np.zeros((40, 0), np.uint8)),
    Case("one-pixel", INFER, OK, image=_image(1, 1, value=200)),
    Case("one-row-5000-wide", INFER, OK, image=_image(1, 5000)),
    Case("two-channels", INFER, OK, image=_image(30, 40, 2)),
    Case("five-channels", INFER, ["5"], image=_image(30, 40, 5)),
    # Ikomia's CImageIO refuses bool and uint32 arrays itself (resnext_core takes them: test_properties).
    Case("bool", INFER, ["set_image", "CMat"], image=_image(30, 40, 1, bool, True)),
    Case("uint32", INFER, ["set_image", "CMat"], image=_image(30, 40, 3, np.uint32, 7)),
    Case("float16", INFER, OK, image=_image(30, 40, 3, np.float16)),
    Case("one-dimensional", INFER, ["H x W", "(5,)"], image=np.ones(5, np.uint8)),
    Case("four-dimensional", INFER, ["H x W", "(2, 3, 4, 5)"], image=np.ones((2, 3, 4, 5), np.uint8)),
    Case("int64", INFER, OK, image=_image(30, 40, 3, np.int64, 4000)),  # read as 16-bit
    Case("int64-above-16-bit", INFER, ["0..65535", "70000"], image=_image(30, 40, 3, np.int64, 70000)),
    Case("int8-negative", INFER, ["0..65535", "-5"], image=_image(30, 40, 3, np.int8, -5)),
    Case("float-0-255", INFER, OK, image=_image(30, 40, 3, np.float64, 180.0)),
    Case("float-nan", INFER, ["NaN"], image=_image(30, 40, 3, np.float32, np.nan)),
    Case("float-inf", INFER, ["infinite"], image=_image(30, 40, 3, np.float32, np.inf)),
    Case("constant-black", INFER, OK, image=_image(50, 50, value=0)),
    # Parameters (inference)
    Case("unknown-model", INFER, ["Unknown model_name 'resnet101'", "resnext101_64x4d"], {"model_name": "resnet101"}),
    Case("empty-model-name", INFER, ["model_name", "resnext50_32x4d"], {"model_name": ""}),
    Case("unknown-weights", INFER, ["IMAGENET1K_V9", "IMAGENET1K_V2"], {"weights": "IMAGENET1K_V9"}),
    Case("input-size-negative", INFER, ["input_size", "-3"], {"input_size": "-3"}),
    Case("input-size-zero", INFER, ["input_size", "0"], {"input_size": "0"}),
    Case("input-size-huge", INFER, ["input_size", "100000"], {"input_size": "100000"}),
    Case("input-size-text", INFER, ["input_size", "big"], {"input_size": "big"}),
    Case("input-size-empty", INFER, OK, {"input_size": ""}),  # empty means auto, as in the widget
    Case("top-k-zero", INFER, OK, {"top_k": "0"}),  # results kept, nothing drawn
    Case("top-k-above-classes", INFER, OK, {"top_k": "1000"}),
    Case("top-k-negative", INFER, ["top_k", "-1"], {"top_k": "-1"}),
    Case("top-k-text", INFER, ["top_k must be an integer", "many"], {"top_k": "many"}),
    Case("top-k-empty", INFER, ["top_k must be an integer"], {"top_k": ""}),
    Case("device-unknown", INFER, ["Unknown device 'tpu'"], {"device": "tpu"}),
    Case("precision-unknown", INFER, ["precision must be one of", "fp32", "int8", "'int3'"], {"precision": "int3"}),
    Case("int8-without-calibration", INFER, ["int8", "quantization_folder"], {"precision": "int8"}),
    Case("int8-calibration-missing", INFER, ["quantization_folder not found", "nowhere"],
         {"precision": "int8", "quantization_folder": "/nowhere"}),
    Case("int8-calibration-no-images", INFER, ["holds no image files"], {"precision": "int8"},
         prepare=lambda tmp_path, _: {"quantization_folder": str(tmp_path)}),
    Case("int8-calibrated", INFER, OK, {"precision": "int8", "input_size": "64"}, prepare=_quantization_images),
    Case("dataset-unknown", INFER, ["dataset must be one of", "Mars"], {"dataset": "Mars"}),
    Case("custom-without-file", INFER, ["no model_weight_file"], {"dataset": "Custom"}),
    # Weight and class files (inference)
    Case("weight-file-missing", INFER, ["Weight file not found", "nope.pth"], prepare=_file("nope.pth", None)),
    Case("weight-file-empty", INFER, ["empty.pth", "empty"], prepare=_file("empty.pth", b"")),
    Case("weight-file-text", INFER, ["notes.pth", "corrupt"], prepare=_file("notes.pth", b"hello, not a checkpoint\n")),
    Case("weight-file-truncated", INFER, ["truncated.pth", "corrupt"], prepare=_truncated),
    Case("weight-file-directory", INFER, ["is a folder", "expected a .pth file"], prepare=lambda tmp_path, _: {"model_weight_file": str(tmp_path)}),
    Case("weight-file-resnet18", INFER, ["resnet18.pth", "not a ResNeXt"], prepare=_other_architecture),
    Case("weight-file-without-fc", INFER, ["headless.pth", "fc.weight"], prepare=_missing_fc),
    Case("weight-file-unsafe-pickle", INFER, ["evil.pth", "refused", "would run io.open"], prepare=_unsafe_pickle),
    Case("class-count-mismatch", INFER, ["2 classes", "3 outputs"], prepare=_class_file("a\nb\n")),
    Case("class-file-blank-lines", INFER, OK, prepare=_class_file("\nx\n\n  y  \n\nz\n\n")),
    Case("class-file-duplicates", INFER, ["repeats class names: a"], prepare=_class_file("a\nb\na\n")),
    Case("class-file-empty", INFER, ["holds no class names"], prepare=_class_file("\n \n")),
    Case("class-file-binary", INFER, ["classes.txt", "not UTF-8"], prepare=_class_file(b"\xff\xfe\x00\x81")),
    # Datasets and parameters (training)
    Case("dataset-missing", TRAIN, ["Dataset folder not found"], prepare=_dataset("missing")),
    Case("dataset-not-given", TRAIN, ["No dataset given", "dataset_folder"], {"dataset_folder": ""}),
    Case("dataset-no-classes", TRAIN, ["No class folders"], prepare=_dataset("no_classes")),
    Case("dataset-one-class", TRAIN, ["Only one class"], prepare=_dataset("one_class")),
    Case("dataset-empty-class", TRAIN, ["no image file", "empty"], prepare=_dataset("empty_class")),
    Case("dataset-corrupt-files", TRAIN, OK, prepare=_dataset("corrupt_files")),
    Case("train-epochs-text", TRAIN, ["epochs must be an integer", "ten"], {"epochs": "ten"}, prepare=TRAIN_GOOD),
    Case("train-epochs-zero", TRAIN, ["epochs must be between"], {"epochs": "0"}, prepare=TRAIN_GOOD),
    Case("train-batch-zero", TRAIN, ["batch_size must be between"], {"batch_size": "0"}, prepare=TRAIN_GOOD),
    Case("train-batch-above-set", TRAIN, OK, {"batch_size": "500"}, prepare=TRAIN_GOOD),
    Case("train-lr-negative", TRAIN, ["learning_rate must be between", "-1"], {"learning_rate": "-1"}, prepare=TRAIN_GOOD),
    Case("train-lr-nan", TRAIN, ["learning_rate must be between", "nan"], {"learning_rate": "nan"}, prepare=TRAIN_GOOD),
    Case("train-val-split-above-1", TRAIN, ["val_split must be between"], {"val_split": "1.5"}, prepare=TRAIN_GOOD),
    Case("train-input-size-zero", TRAIN, ["input_size must be between"], {"input_size": "0"}, prepare=TRAIN_GOOD),
    Case("train-bool-garbage", TRAIN, ["hflip must be true or false"], {"hflip": "maybe"}, prepare=TRAIN_GOOD),
    Case("train-mode-unknown", TRAIN, ["train_mode must be one of"], {"train_mode": "magic"}, prepare=TRAIN_GOOD),
    Case("train-model-unknown", TRAIN, ["Unknown model_name 'vgg'", "resnext50_32x4d"], {"model_name": "vgg"}, prepare=TRAIN_GOOD),
    Case("train-device-unknown", TRAIN, ["Unknown device 'tpu'"], {"device": "tpu"}, prepare=TRAIN_GOOD),
    Case("train-feature-extract-no-weights", TRAIN, ["needs pretrained weights"],
         {"weights": "none", "train_mode": "feature_extract"}, prepare=TRAIN_GOOD),
    Case("train-resume-missing", TRAIN, ["last.pth", "not found"], prepare=_resume_from(None)),
    Case("train-resume-corrupt", TRAIN, ["last.pth", "corrupt"], prepare=_resume_from(b"\x80\x02garbage")),
    Case("train-output-is-a-file", TRAIN, ["cannot be created"], prepare=_output_is_a_file),
]
if not torch.cuda.is_available():
    CASES += [
        Case("cuda-without-cuda", INFER, ["CUDA is not available"], {"device": "cuda"}),
        Case("fp16-on-cpu", INFER, ["fp16", "CUDA"], {"precision": "fp16", "device": "cpu"}),
        Case("train-cuda-without-cuda", TRAIN, ["CUDA is not available"], {"device": "cuda"}, prepare=TRAIN_GOOD),
    ]


def _run_case(case, tmp_path, digits):
    params = dict(TINY_TRAINING) if case.plugin == TRAIN else {}
    params.update(case.params)
    if case.prepare:
        params.update(case.prepare(tmp_path, digits))
    _, task = new_task(case.plugin, params)
    if case.plugin == INFER:
        task.get_input(0).set_image(textured_image(60, 80) if case.image is None else case.image)
    task.run()
    return task


def _marked(case: Case):
    """A case that trains a model or quantizes one is left out of make test-fast."""
    slow = (case.plugin == TRAIN and case.expect == OK) or case.params.get("precision") == "int8" and case.expect == OK
    return pytest.param(case, id=case.id, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case", [_marked(case) for case in CASES])
def test_bad_input_matrix(case, tmp_path, digits, imagenet_weights):
    if case.expect == OK:
        task = _run_case(case, tmp_path, digits)
        if case.plugin == INFER:
            confidences = [float(c) for _, c in task.get_whole_image_results()]
            assert confidences and np.isfinite(confidences).all() and abs(sum(confidences) - 1) < 1e-3
            assert task.get_image_with_graphics().shape[:2] == (case.image if case.image is not None else np.empty((60, 80))).shape[:2]
        else:
            assert os.path.isfile(os.path.join(task.get_output(0).get_path(), "best.pth"))
        return
    with pytest.raises(Exception) as info:
        _run_case(case, tmp_path, digits)
    message = str(info.value)
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert "Traceback" not in message and len(message) < 600, "one clear sentence, not a dump"
    assert not (tmp_path / "pwned").exists(), "no pickle payload ever runs"


def test_matrix_is_large_and_covers_both_plugins():
    assert len(CASES) >= 30
    assert {case.plugin for case in CASES} == {INFER, TRAIN}
    assert len({case.id for case in CASES}) == len(CASES)
