"""Image-folder datasets: discovery, splitting, reading any image file, train/val transforms."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2 as T

from .errors import DatasetError, ImageError
from .preprocess import Preprocessing, image_to_tensor

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm")


@dataclass
class DatasetSplit:
    class_names: list
    train: list  # [(path, label), ...]
    val: list
    skipped: list = field(default_factory=list)  # [(path, reason), ...]
    warnings: list = field(default_factory=list)


def read_image(path: str) -> np.ndarray:
    """Any image file as a numpy array resnext_core.preprocess understands (gray, RGBA, 16-bit...)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode == "1":
                image = image.convert("L")
            return np.array(image)  # writable copy: torch.from_numpy warns on read-only arrays
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"Cannot read image {path}: {exc}") from None


def _is_readable_image(path: str) -> str | None:
    """None if the file decodes as an image, else the reason."""
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return "not an image file (extension)"
    try:
        with Image.open(path) as image:
            image.verify()
        return None
    except Exception as exc:  # PIL raises many types for damaged files
        return f"corrupt image ({type(exc).__name__}: {exc})"


def _class_folders(folder: str) -> list:
    if not os.path.isdir(folder):
        return []
    return sorted(
        d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _scan(folder: str, class_names: list, skipped: list) -> dict:
    """{class_name: [image paths]} for the class folders present under `folder`."""
    found = {}
    for name in class_names:
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue
        paths = []
        for root, dirs, files in os.walk(class_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for filename in sorted(files):
                if filename.startswith("."):
                    continue
                path = os.path.join(root, filename)
                reason = _is_readable_image(path)
                if reason:
                    skipped.append((path, reason))
                else:
                    paths.append(path)
        found[name] = paths
    return found


def discover(folder: str, val_split: float = 0.2, seed: int = 0) -> DatasetSplit:
    """train/<class>/ + val/<class>/, or flat <class>/ folders split by val_split (per class, seeded)."""
    if not folder:
        raise DatasetError("No dataset given: set dataset_folder, or connect a dataset folder to the task's input")
    if not os.path.isdir(folder):
        raise DatasetError(f"Dataset folder not found: {folder}")
    skipped, warnings = [], []
    train_dir, val_dir = os.path.join(folder, "train"), os.path.join(folder, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        train_classes, val_classes = _class_folders(train_dir), _class_folders(val_dir)
        class_names = sorted(set(train_classes) | set(val_classes))
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            warnings.append(
                f"train and val have different classes (using their union): only in train: "
                f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'}"
            )
        _check_classes(class_names, folder)
        train_paths = _scan(train_dir, class_names, skipped)
        val_paths = _scan(val_dir, class_names, skipped)
    else:
        class_names = _check_classes(_class_folders(folder), folder)
        train_paths, val_paths = _split(_scan(folder, class_names, skipped), val_split, seed, warnings)
    empty = [n for n in class_names if not train_paths.get(n) and not val_paths.get(n)]
    if empty:
        raise DatasetError(f"Class folder(s) with no readable image in {folder}: {', '.join(empty)}")
    no_train = [n for n in class_names if not train_paths.get(n)]
    if no_train:
        warnings.append(f"class(es) with no training image (cannot be learned): {', '.join(no_train)}")
    label = {name: i for i, name in enumerate(class_names)}
    train = [(p, label[n]) for n in class_names for p in train_paths.get(n, [])]
    val = [(p, label[n]) for n in class_names for p in val_paths.get(n, [])]
    if not val:
        raise DatasetError(f"No validation image in {folder}: add a val/ folder or raise val_split")
    for path, reason in skipped:
        logger.warning("skipped %s: %s", path, reason)
    return DatasetSplit(class_names, train, val, skipped, warnings)


def _check_classes(class_names: list, folder: str) -> list:
    if not class_names:
        raise DatasetError(f"No class folders in {folder}: expected <class>/ or train/<class>/ and val/<class>/")
    if len(class_names) < 2:
        raise DatasetError(f"Only one class ({class_names[0]}) in {folder}: classification needs at least 2")
    return class_names


def _split(paths: dict, val_split: float, seed: int, warnings: list):
    rng = random.Random(seed)
    train, val = {}, {}
    for name, items in paths.items():
        items = list(items)
        rng.shuffle(items)
        count = int(round(len(items) * val_split))
        if len(items) >= 2:
            count = min(max(count, 1 if val_split > 0 else 0), len(items) - 1)
        else:
            count = 0
            if items:
                warnings.append(f"class {name} has 1 image: used for training only")
        val[name], train[name] = items[:count], items[count:]
    return train, val


class ImageDataset(torch.utils.data.Dataset):
    """(path, label) items -> (normalised tensor, label)."""

    def __init__(self, items: list, transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        return self.transform(read_image(path)), label


class TrainTransform:
    """RandomResizedCrop (+ horizontal flip) on the image tensor, then the shared normalisation.

    min_crop_scale: smallest crop, as a fraction of the image area; hflip off for asymmetric
    classes (digits, text, left/right).
    """

    def __init__(self, preprocessing: Preprocessing, min_crop_scale: float = 0.25, hflip: bool = True):
        self.preprocessing = preprocessing
        steps = [T.RandomResizedCrop(preprocessing.crop_size, scale=(min_crop_scale, 1.0), antialias=True)]
        if hflip:
            steps.append(T.RandomHorizontalFlip())
        self.augment = T.Compose(steps)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.preprocessing.normalize(self.augment(image_to_tensor(image)))


class EpochBatches(torch.utils.data.Sampler):
    """Shuffled batches, reproducible per (seed, epoch), resumable at a batch index.

    image_weights (balanced sampling): the epoch draws `size` images with replacement, each with a
    probability proportional to its weight, instead of every image once. The draw depends only on
    (seed, epoch) too, so a resumed run continues the same order.
    rank, world_size (distributed training): each global batch is split into world_size equal shards and
    this sampler yields shard `rank` of each; the order does not depend on world_size, so a run resumes
    with any number of processes. The trailing batch is cut to a multiple of world_size and dropped when a
    shard would hold a single image: BatchNorm cannot train on it.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0, image_weights=None,
                 rank: int = 0, world_size: int = 1):
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        if image_weights is None:
            order = torch.randperm(size, generator=generator).tolist()
        else:
            weights = torch.as_tensor(image_weights, dtype=torch.float64)
            order = torch.multinomial(weights, size, replacement=True, generator=generator).tolist()
        batches = [order[i : i + batch_size] for i in range(0, size, batch_size)]
        last = batches[-1][: len(batches[-1]) // world_size * world_size] if batches else []
        batches[-1:] = [last] if len(last) >= 2 * world_size or len(batches) == 1 else []
        self.batches = [batch[rank::world_size] for batch in batches[start_batch:]]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class RunBatches(torch.utils.data.Sampler):
    """The batch sampler of a whole run: the EpochBatches of the epoch set last, so that one DataLoader,
    and its persistent worker processes, serves every epoch instead of starting new workers each time."""

    def __init__(self, epoch_batches):
        self.epoch_batches = epoch_batches  # (epoch, start_batch) -> EpochBatches
        self.current = ()  # no order drawn until set_epoch(): each epoch's is drawn once, when it starts

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.current = self.epoch_batches(epoch, start_batch)

    def __iter__(self):
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current)
