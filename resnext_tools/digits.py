"""An image-folder dataset from scikit-learn's bundled digits (real handwritten digits, no download), and the
recipe that trains ResNeXt on it: what the demo, the tests and the benchmarks train on.

  <folder>/train/<digit>/*.png   for the trainer (it splits off validation itself)
  <folder>/heldout/<digit>/*.png never seen in training: the demo's and the accuracy tests' test set
Images are the 8x8 digits upscaled to `size` px, 8-bit gray.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

CLASS_NAMES = [str(d) for d in range(10)]
# The training plugin's parameters for tiny gray images from scratch: AdamW, no flip (digits are not
# mirror-symmetric), 8 epochs at 32 px (the demo's; the tests train fewer).
DIGITS_RECIPE = {
    "model_name": "resnext50_32x4d",
    "train_mode": "scratch",
    "input_size": "32",
    "epochs": "8",
    "batch_size": "32",
    "optimizer": "adamw",
    "learning_rate": "0.002",
    "weight_decay": "0.05",
    "warmup_epochs": "1",
    "label_smoothing": "0.1",
    "min_crop_scale": "0.6",
    "hflip": "False",
    "val_split": "0.1",
    "seed": "0",
}


def write_digits_dataset(folder: str, size: int = 32, heldout_fraction: float = 0.2, seed: int = 0) -> dict:
    digits = load_digits()
    images = (digits.images / 16.0 * 255).round().astype(np.uint8)
    train_idx, heldout_idx = train_test_split(
        np.arange(len(images)), test_size=heldout_fraction, stratify=digits.target, random_state=seed
    )
    counts = {}
    for split, indices in (("train", train_idx), ("heldout", heldout_idx)):
        for index in indices:
            label = CLASS_NAMES[digits.target[index]]
            class_dir = os.path.join(folder, split, label)
            os.makedirs(class_dir, exist_ok=True)
            image = Image.fromarray(images[index]).resize((size, size), Image.BILINEAR)
            image.save(os.path.join(class_dir, f"{index:04d}.png"))
        counts[split] = len(indices)
    return counts


def heldout_items(folder: str) -> list:
    """[(path, digit name), ...] of the held-out split."""
    root = os.path.join(folder, "heldout")
    return [
        (os.path.join(root, name, filename), name)
        for name in sorted(os.listdir(root))
        for filename in sorted(os.listdir(os.path.join(root, name)))
    ]


# The multi-label recipe: 2 x 2 grids of digits, one to three cells filled, labelled with the digits they show.
GRID_RECIPE = {**DIGITS_RECIPE, "multi_label": "True", "input_size": "40", "epochs": "6", "batch_size": "16",
               "min_crop_scale": "0.8"}
GRID_CELL = 20  # px: a grid is 2 x 2 cells, input_size's side


def write_digit_grids(folder: str, counts: dict = None, seed: int = 0, cell: int = GRID_CELL) -> dict:
    """2 x 2 grids of scikit-learn's digits, 1 to 3 cells filled, as PNG files, and their label files:
    labels.csv (path, labels, split: train and val) and heldout.csv (path, labels). The three sets draw from
    disjoint digit images, so no held-out grid shows a digit image seen in training. Returns {split: grid count}."""
    counts = counts or {"train": 2000, "val": 300, "heldout": 300}
    digits = load_digits()
    images = (digits.images / 16.0 * 255).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    pools = dict(zip(("train", "val", "heldout"), np.split(order, [int(0.6 * len(order)), int(0.75 * len(order))])))
    rows = {"train": [], "val": [], "heldout": []}
    for split, count in counts.items():
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        for index in range(count):
            grid = np.zeros((2 * cell, 2 * cell), np.uint8)
            places = rng.choice(4, size=rng.integers(1, 4), replace=False)
            shown = rng.choice(pools[split], size=len(places), replace=False)
            for place, digit in zip(places, shown):
                top, left = (place // 2) * cell, (place % 2) * cell
                grid[top : top + cell, left : left + cell] = np.asarray(
                    Image.fromarray(images[digit]).resize((cell, cell), Image.BILINEAR))
            name = os.path.join(split, f"{index:05d}.png")
            Image.fromarray(grid).save(os.path.join(folder, name))
            labels = ";".join(sorted({CLASS_NAMES[digits.target[digit]] for digit in shown}))
            rows[split].append((name, labels))
    with open(os.path.join(folder, "labels.csv"), "w", encoding="utf-8") as handle:
        handle.write("path,labels,split\n")
        handle.writelines(f"{path},{labels},{split}\n" for split in ("train", "val") for path, labels in rows[split])
    with open(os.path.join(folder, "heldout.csv"), "w", encoding="utf-8") as handle:
        handle.write("path,labels\n")
        handle.writelines(f"{path},{labels}\n" for path, labels in rows["heldout"])
    return {split: len(found) for split, found in rows.items()}
