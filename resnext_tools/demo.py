"""The main job, offline, on real data: train ResNeXt on scikit-learn's digits, then classify held-out digits.

Both steps go through the Ikomia plugins as users call them (Workflow().add_task(name=...)).
Outputs in demo_output/: the dataset, the training run (checkpoints, metrics, plots), labelled images.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

os.environ.setdefault("IKOMIA_AUTO_COMPLETION", "0")

from resnext_tools.digits import DIGITS_RECIPE, heldout_items, write_digits_dataset  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "demo_output")
LABELLED_SAMPLES = 20
SAMPLE_SIZE = 160  # labelled copies are upscaled so their labels can be read


def train(dataset_folder: str) -> str:
    from ikomia.dataprocess.workflow import Workflow

    task = Workflow().add_task(name="train_torchvision_resnext")
    task.set_parameters({**DIGITS_RECIPE, "run_name": "digits", "dataset_folder": dataset_folder,
                         "output_folder": os.path.join(OUTPUT, "runs")})
    task.run()
    return task.get_output(0).get_path()


def classify_heldout(weight_file: str, dataset_folder: str) -> float:
    import numpy as np
    from PIL import Image
    from ikomia.dataprocess.workflow import Workflow

    task = Workflow().add_task(name="infer_torchvision_resnext")
    task.set_parameters({"model_weight_file": weight_file, "top_k": "2"})
    labelled_dir = os.path.join(OUTPUT, "labelled")
    os.makedirs(labelled_dir, exist_ok=True)
    items = heldout_items(dataset_folder)
    correct = 0
    samples = set(range(0, len(items), max(1, len(items) // LABELLED_SAMPLES)))  # spread over the classes
    for index, (path, truth) in enumerate(items):
        image = np.array(Image.open(path).convert("RGB"))
        task.get_input(0).set_image(image)
        task.run()
        predicted = task.get_whole_image_results()[0][0]
        correct += predicted == truth
        if index in samples:
            big = np.array(Image.fromarray(image).resize((SAMPLE_SIZE, SAMPLE_SIZE), Image.NEAREST))
            task.get_input(0).set_image(big)
            task.run()
            out = os.path.join(labelled_dir, f"{index:03d}_true-{truth}_pred-{predicted}.png")
            Image.fromarray(task.get_image_with_graphics()).save(out)
    return correct / len(items)


def heldout_calibration(weight_file: str, dataset_folder: str) -> tuple:
    """(fitted temperature, held-out ECE of the raw softmax, held-out ECE calibrated)."""
    import numpy as np
    from PIL import Image
    from resnext_core import load_classifier
    from resnext_core.common.checkpoint import load_checkpoint
    from resnext_core.common.scoring import expected_calibration_error

    items = heldout_items(dataset_folder)
    images = [np.array(Image.open(path).convert("RGB")) for path, _ in items]
    labels = [int(truth) for _, truth in items]
    raw, calibrated = (load_classifier(model_weight_file=weight_file, calibrated_confidence=calibrate).predict(images).numpy()
                       for calibrate in (False, True))
    return (load_checkpoint(weight_file).temperature,
            expected_calibration_error(raw, labels), expected_calibration_error(calibrated, labels))


def main() -> int:
    started = time.time()
    shutil.rmtree(OUTPUT, ignore_errors=True)
    dataset = os.path.join(OUTPUT, "digits")
    counts = write_digits_dataset(dataset)
    print(f"digits dataset: {counts['train']} training images, {counts['heldout']} held out, in {dataset}")
    run_folder = train(os.path.join(dataset, "train"))
    trained = time.time()
    accuracy = classify_heldout(os.path.join(run_folder, "best.pth"), dataset)
    print(f"run folder: {run_folder}")
    print(f"labelled images: {os.path.join(OUTPUT, 'labelled')}")
    print(f"training {trained - started:.0f} s, total {time.time() - started:.0f} s")
    print(f"held-out accuracy: {100 * accuracy:.2f}% ({counts['heldout']} digits never seen in training)")
    temperature, ece_raw, ece_calibrated = heldout_calibration(os.path.join(run_folder, "best.pth"), dataset)
    print(f"held-out calibration: temperature {temperature:.3f} (fitted on validation), "
          f"ECE {100 * ece_raw:.2f}% raw -> {100 * ece_calibrated:.2f}% calibrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
