"""Fine-tuning recipes on few images, the way users fine-tune: which of the training options pay, by how much.

  python -m benchmarks transfer [--shots 10 30] [--seeds 3] [--epochs 12] [--recipes baseline mixup ...]

Offline, on scikit-learn's digits: resnext50_32x4d is trained from scratch on the digits 0-4 (the demo's recipe),
and its weights stand in for the ImageNet ones (saved under torchvision's file name in a TORCH_HOME of the
benchmark's own). Each recipe then fine-tunes them (train_mode fine_tune) on --shots images of each of the digits
5-9, for each seed (the seed draws the images, the split, the order and the new classifier), with the trainer's
own parts (TrainingData, build_setup, train_one_epoch: the run folder's files and the per-epoch validation left
out, which change no weight), and its last epoch (2 validation images a class choose no epoch reliably) is scored
on the 180 held-out digits 5-9 (the evaluated model: the moving average where there is one). Prints held-out
accuracy, mean and standard deviation over the seeds, per recipe and shot count. Flips are left out: a mirrored
digit is another digit.
"""
from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile

from .common import default_out, timed, write_report

SOURCE_CLASSES, TARGET_CLASSES = [str(d) for d in range(5)], [str(d) for d in range(5, 10)]
BASE = {"model_name": "resnext50_32x4d", "train_mode": "fine_tune", "weights": "DEFAULT", "input_size": "32",
        "batch_size": "16", "optimizer": "adamw", "learning_rate": "0.001", "weight_decay": "0.05", "hflip": "False",
        "min_crop_scale": "0.6", "val_split": "0.2"}
RECIPES = {
    "baseline": {},
    "trivialaugment": {"augment": "trivialaugment"},
    "randaugment": {"augment": "randaugment"},
    "augmix": {"augment": "augmix"},
    "random_erasing": {"random_erasing": "0.25"},
    "mixup": {"mixup": "0.2"},
    "cutmix": {"cutmix": "1.0"},
    "ema": {"ema": "0.99"},
    "backbone_lr_0.1": {"backbone_lr_factor": "0.1"},
}


def _copy_classes(source: str, target: str, classes: list, per_class: int | None, seed: int) -> str:
    rng = random.Random(seed)
    for name in classes:
        files = sorted(os.listdir(os.path.join(source, name)))
        chosen = files if per_class is None else rng.sample(files, per_class)
        os.makedirs(os.path.join(target, name))
        for filename in chosen:
            shutil.copy(os.path.join(source, name, filename), os.path.join(target, name, filename))
    return target


def pretrained_on_source(work: str, digits: str) -> float:
    """Train the digits 0-4 model and cache it as the 'ImageNet' resnext50 weights; returns its held-out top-1."""
    import torch

    from resnext_core.common import models
    from resnext_core.common.checkpoint import safe_load
    from resnext_core.training.config import TRAIN_SCHEMA
    from resnext_core.training.trainer import Callbacks, Trainer
    from resnext_tools.digits import DIGITS_RECIPE

    source = _copy_classes(os.path.join(digits, "train"), os.path.join(work, "source"), SOURCE_CLASSES, None, 0)
    test = _copy_classes(os.path.join(digits, "heldout"), os.path.join(work, "source_test"), SOURCE_CLASSES, None, 0)
    config = TRAIN_SCHEMA.parse({**DIGITS_RECIPE, "dataset_folder": source, "test_folder": test,
                                 "output_folder": os.path.join(work, "runs")})
    result = Trainer(config, Callbacks(log=lambda line: None)).run()
    state = safe_load(os.path.join(result.run_folder, "best.pth"))["state_dict"]
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, state["fc.weight"].shape[1]), torch.zeros(1000)
    path = models.cached_weights_path(models.resolve_weights("resnext50_32x4d"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)
    return result.test["top1"]


def fine_tune(config, test: str) -> float:
    """Held-out top-1 of `config`'s recipe on the labelled folder `test`, after its last epoch."""
    import numpy as np
    import torch

    from resnext_core.data.datasets import labelled_set
    from resnext_core.reports.evaluation_folder import scored_items
    from resnext_core.training.data import UNREAD, TrainingData
    from resnext_core.training.loop import build_setup, predict, train_one_epoch

    device = torch.device("cpu")
    data = TrainingData(config, device, log=lambda line: None)
    torch.manual_seed(config.seed)  # as Trainer.run seeds the new classifier and the augmentation
    np.random.seed(config.seed)
    setup = build_setup(config, len(data.class_names), device, torch.float32, data.steps_per_epoch, data.train_labels)
    for epoch in range(config.epochs):
        train_one_epoch(setup, data.train_loader(epoch, 0), epoch=epoch)
    data.close()
    items, _ = scored_items(labelled_set(test), data.class_names)
    loader = data.evaluation_loader(items, on_unreadable=lambda met: None)
    logits, labels = predict(setup.evaluated_model, loader, device, torch.float32, len(data.class_names))
    read = labels != UNREAD
    return float((logits[read].argmax(1) == labels[read]).mean())


def add_arguments(parser) -> None:
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 30], help="training images of each class")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default=default_out("transfer"))


def run(args) -> int:
    work = tempfile.mkdtemp(prefix="resnext-transfer-")
    os.environ["TORCH_HOME"] = os.path.join(work, "torch")
    from resnext_core.common.runtime import disable_openmp_dynamic_threads
    from resnext_core.training.config import TRAIN_SCHEMA
    from resnext_tools.digits import write_digits_dataset

    disable_openmp_dynamic_threads()
    digits = os.path.join(work, "digits")
    write_digits_dataset(digits)
    source_top1, source_seconds = timed(lambda: pretrained_on_source(work, digits))
    print(f"source model (digits 0-4, from scratch): held-out top-1 {100 * source_top1:.1f}% in {source_seconds:.0f} s")
    test = _copy_classes(os.path.join(digits, "heldout"), os.path.join(work, "target_test"), TARGET_CLASSES, None, 0)
    accuracy = {recipe: {shots: [] for shots in args.shots} for recipe in args.recipes}
    for shots in args.shots:
        for seed in range(args.seeds):
            data = _copy_classes(os.path.join(digits, "train"), os.path.join(work, f"target-{shots}-{seed}"),
                                 TARGET_CLASSES, shots, seed)
            for recipe in args.recipes:  # the recipes interleaved: a slow spell of the machine hits them alike
                values = {**BASE, **RECIPES[recipe], "epochs": str(args.epochs), "seed": str(seed),
                          "dataset_folder": data, "output_folder": os.path.join(work, "runs")}
                top1, seconds = timed(lambda: fine_tune(TRAIN_SCHEMA.parse(values), test))
                accuracy[recipe][shots].append(top1)
                print(f"{shots} shots, seed {seed}, {recipe:16s} held-out top-1 {100 * top1:5.1f}% ({seconds:.0f} s)",
                      flush=True)
    table = {recipe: {str(shots): {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                   "runs": values} for shots, values in by_shots.items()}
             for recipe, by_shots in accuracy.items()}
    print(f"\n{'recipe':16s}" + "".join(f"{f'{shots} a class':>22s}" for shots in args.shots))
    for recipe, by_shots in table.items():
        print(f"{recipe:16s}" + "".join(f"{100 * row['mean']:14.1f} ± {100 * row['std']:4.1f}%" for row in by_shots.values()))
    write_report({"source_heldout_top1": source_top1, "epochs": args.epochs, "seeds": args.seeds, "base": BASE,
                  "recipes": {r: RECIPES[r] for r in args.recipes}, "heldout_top1": table}, args.out)
    return 0
