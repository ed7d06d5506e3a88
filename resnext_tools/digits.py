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
