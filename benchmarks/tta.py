"""Test-time augmentation (the image and its mirror): held-out accuracy and time, off vs on, one process.

Two real datasets from scikit-learn's bundled digits, trained from scratch as the demo trains:
  digits      all ten digits, trained without flips: mirroring is WRONG here (a mirrored 2 is no 2)
  symmetric   the digits 0, 1 and 8 only, which look alike in a mirror, trained with random flips:
              mirroring is right here
Time is measured at the trained 32 px and at 224 px (the same model, input_size 224), interleaved.

    python -m benchmarks tta [--work DIR] [--repeats N]
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from resnext_core import load_classifier
from resnext_core.training.config import TRAIN_SCHEMA
from resnext_core.training.trainer import Callbacks, Trainer
from resnext_tools.digits import DIGITS_RECIPE, heldout_items, write_digits_dataset

from .common import default_out, timed, write_report

SYMMETRIC_DIGITS = ("0", "1", "8")
DATASETS = {  # name: (classes kept, random flips in training)
    "digits": (None, False),
    "symmetric": (SYMMETRIC_DIGITS, True),
}


def keep_classes(folder: str, classes) -> None:
    """Removes every class folder but `classes` from train/ and heldout/."""
    if classes is None:
        return
    for split in ("train", "heldout"):
        for name in os.listdir(os.path.join(folder, split)):
            if name not in classes:
                shutil.rmtree(os.path.join(folder, split, name))


def train(folder: str, hflip: bool, output: str) -> str:
    values = {**DIGITS_RECIPE, "dataset_folder": os.path.join(folder, "train"), "output_folder": output,
              "hflip": str(hflip), "device": "cpu"}
    config = TRAIN_SCHEMA.parse(values)
    return os.path.join(Trainer(config, Callbacks(log=lambda line: None)).run().run_folder, "best.pth")


def heldout(folder: str) -> tuple:
    items = heldout_items(folder)
    images = [np.array(Image.open(path).convert("RGB")) for path, _ in items]
    names = sorted({truth for _, truth in items})
    return images, np.array([names.index(truth) for _, truth in items]), names


def accuracy(weight_file: str, images, labels, mirror: bool) -> float:
    predicted = load_classifier(model_weight_file=weight_file, device="cpu", tta=mirror).predict(images).argmax(1).numpy()
    return float((predicted == labels).mean())


def seconds_per_image(weight_file: str, images, input_size, repeats: int) -> dict:
    """Median seconds per image, off and on, measured interleaved on the same images."""
    classifiers = {mirror: load_classifier(model_weight_file=weight_file, device="cpu", input_size=input_size, tta=mirror)
                   for mirror in (False, True)}
    sample = images[:64]
    times = {False: [], True: []}
    for mirror, classifier in classifiers.items():
        classifier.predict(sample[:2])  # warm-up
    for _ in range(repeats):
        for mirror, classifier in classifiers.items():
            times[mirror].append(timed(lambda: classifier.predict(sample))[1] / len(sample))
    return {"off": float(np.median(times[False])), "on": float(np.median(times[True]))}


def add_arguments(parser) -> None:
    parser.add_argument("--work", default="", help="folder for the datasets and runs (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=default_out("tta"))


def run(args) -> int:
    work = args.work or tempfile.mkdtemp(prefix="resnext-tta-")
    results = {"datasets": {}}
    for name, (classes, hflip) in DATASETS.items():
        folder = os.path.join(work, name)
        write_digits_dataset(folder)
        keep_classes(folder, classes)
        weight_file = train(folder, hflip, os.path.join(work, "runs", name))
        images, labels, names = heldout(folder)
        row = {"classes": names, "trained_with_flips": hflip, "heldout_images": len(images),
               "accuracy_off": accuracy(weight_file, images, labels, False),
               "accuracy_on": accuracy(weight_file, images, labels, True),
               "seconds_per_image_32px": seconds_per_image(weight_file, images, None, args.repeats),
               "seconds_per_image_224px": seconds_per_image(weight_file, images, 224, args.repeats)}
        results["datasets"][name] = row
        print(f"{name:10s} held-out accuracy {100 * row['accuracy_off']:.2f}% -> {100 * row['accuracy_on']:.2f}% with TTA "
              f"({len(images)} images); time x{row['seconds_per_image_32px']['on'] / row['seconds_per_image_32px']['off']:.2f} "
              f"at 32 px, x{row['seconds_per_image_224px']['on'] / row['seconds_per_image_224px']['off']:.2f} at 224 px "
              f"({1000 * row['seconds_per_image_224px']['off']:.1f} -> {1000 * row['seconds_per_image_224px']['on']:.1f} ms/image)")
    write_report(results, args.out)
    return 0
