"""The data side of one training run: the dataset folder read and reported once, the training augmentation,
each epoch's seeded batch order (this rank's shard of it), the loaders, and the validation images a run keeps
beside its checkpoints."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2 as T

from ..common.errors import ConfigError, ImageError
from ..common.models import resolve_weights
from ..common.preprocess import Preprocessing, image_to_tensor
from ..common.run_folder import evenly_spread
from ..data.datasets import training_split
from ..data.decode import PixelsNeeded, read_image
from ..data.loading import ItemImages, UnreadableFiles, collate
from . import distributed
from .class_balance import image_sampling_weights, imbalance_warnings, smallest_classes_line
from .config import MAX_AUTO_WORKERS, TrainConfig
from ..common.world import SINGLE, World, cores_per_process

ONNX_SAMPLE_IMAGES = 4


POLICIES = {"trivialaugment": T.TrivialAugmentWide, "randaugment": T.RandAugment, "augmix": T.AugMix}


class TrainTransform:
    """RandomResizedCrop (+ horizontal flip, + an augmentation policy) on the image tensor, the shared
    normalisation, then random erasing: torchvision's references' order.

    min_crop_scale: smallest crop, as a fraction of the image area; hflip off for asymmetric classes (digits,
    text, left/right); augment: a key of POLICIES or "none"; random_erasing: its probability.
    """

    RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratios, torchvision's default

    def __init__(self, preprocessing: Preprocessing, min_crop_scale: float = 0.25, hflip: bool = True,
                 augment: str = "none", random_erasing: float = 0.0):
        self.preprocessing = preprocessing
        # Decoding needs no more pixels than the smallest crop keeps at crop_size (data/decode.py).
        self.pixels_needed = PixelsNeeded.for_random_crop(preprocessing.crop_size, min_crop_scale, self.RATIO[0])
        steps = [T.RandomResizedCrop(preprocessing.crop_size, scale=(min_crop_scale, 1.0), ratio=self.RATIO,
                                     antialias=True)]
        if hflip:
            steps.append(T.RandomHorizontalFlip())
        if augment in POLICIES:
            steps.append(POLICIES[augment]())
        self.augment = T.Compose(steps)
        self.erase = T.RandomErasing(random_erasing, value=0) if random_erasing else None

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        tensor = self.preprocessing.normalize(self.augment(image_to_tensor(image)))
        return self.erase(tensor) if self.erase is not None else tensor


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


UNREAD = -1  # the label of a validation slot whose image could not be read (left out of the scores)


class ReportingLoader:
    """A DataLoader of data/loading.py's LoadedBatch as (images, labels) pairs, unread slots labelled UNREAD; the
    unreadable files met go to on_unreadable(list of Unreadable) as each batch arrives."""

    def __init__(self, loader, on_unreadable):
        self.loader, self.on_unreadable = loader, on_unreadable

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if batch.unreadable:
                self.on_unreadable(batch.unreadable)
            read = batch.read.view(-1, *([1] * (batch.labels.dim() - 1)))  # a multi-label row's every entry
            yield batch.images, torch.where(read, batch.labels, UNREAD)


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


def training_preprocessing(config: TrainConfig) -> Preprocessing:
    if config.pretrained:
        return Preprocessing.from_weights(resolve_weights(config.model_name, config.weights), config.input_size)
    return Preprocessing().at_size(config.input_size)


def loader_workers(requested: int | None, device: torch.device, world: World = SINGLE) -> int:
    """num_workers, or auto's choice: none on the CPU, where decoding in other processes takes cores from the
    training step (docs/performance.md: measured slower); on CUDA, this process's share of the cores less one for itself,
    up to MAX_AUTO_WORKERS, so that decoding keeps pace with the GPU."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    return min(MAX_AUTO_WORKERS, max(1, cores_per_process(world) - 1))


def sampling_weights(config: TrainConfig, train_labels, num_classes: int):
    """Per-image weights for class_balance balanced_sampling, else None (each image once an epoch)."""
    if config.class_balance != "balanced_sampling":
        return None
    if getattr(train_labels, "multi_label", False):
        raise ConfigError("class_balance balanced_sampling draws images by their class, and a multi-label image has "
                          "several or none: use weighted_loss (each class's positive weight) for a multi-label dataset")
    return image_sampling_weights(train_labels, num_classes)


class TrainingData:
    """Constructing it lists the dataset (names only: no image is opened), writes nothing, and logs the dataset's
    warnings and its smallest classes. The images are read by the loaders, where an unreadable one is skipped,
    logged and recorded in `unreadable`."""

    def __init__(self, config: TrainConfig, device: torch.device, world: World = SINGLE, log=print):
        self.config, self.device, self.world = config, device, world
        self.split = training_split(config.dataset_folder, config.label_file, config.val_split, config.seed,
                                    config.multi_label_setting)
        self.multi_label = self.split.multi_label
        for warning in self.split.warnings:
            log(f"warning: {warning}")
        if self.split.skipped:
            log(f"skipped {len(self.split.skipped)} file(s) that are not images, e.g. {self.split.skipped[0][0]}")
        self.log = log
        self.unreadable = UnreadableFiles(len(self.split.train) + len(self.split.val), config.unreadable_limit)
        self.class_names = self.split.class_names
        # Class indices, or a multi-label dataset's item list (its label sets): what class balance reads.
        self.train_labels = self.split.train if self.multi_label else self.split.train.labels
        self.train_counts = self.split.train.class_counts(len(self.class_names)).tolist()
        self.val_counts = self.split.val.class_counts(len(self.class_names)).tolist()
        log(smallest_classes_line(self.class_names, self.train_counts))
        for warning in imbalance_warnings(self.class_names, self.train_counts, config.class_balance != "none"):
            log(f"warning: {warning}")
        self.image_weights = sampling_weights(config, self.train_labels, len(self.class_names))
        self.preprocessing = training_preprocessing(config)
        self.batch_size = self._batch_size(log)
        self.num_workers = loader_workers(config.num_workers, device, world)
        augment = TrainTransform(self.preprocessing, config.min_crop_scale, config.hflip, config.augment,
                                 config.random_erasing)
        # One for the run (each epoch only resamples); an unreadable image is replaced: batches keep their size.
        self._train_set = ItemImages(self.split.train, augment, augment.pixels_needed, replace_unreadable=True,
                                     num_classes=len(self.class_names))
        self._run_batches = RunBatches(self.epoch_batches)
        self._train_loader = self._val_loader = None  # made at first use, kept until close()

    def _batch_size(self, log) -> int:
        distributed.check_batch_size(self.config.batch_size, self.world.size)
        if self.config.batch_size > len(self.split.train):
            usable = len(self.split.train) // self.world.size * self.world.size  # equal shards
            log(f"warning: batch_size {self.config.batch_size} > {len(self.split.train)} training images: using {usable}")
            return usable
        return self.config.batch_size

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> EpochBatches:
        """This rank's shard of each batch of `epoch`, from `start_batch` on."""
        return EpochBatches(len(self.split.train), self.batch_size, self.config.seed, epoch, start_batch,
                            self.image_weights, self.world.rank, self.world.size)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.epoch_batches(0))

    def train_loader(self, epoch: int, start_batch: int):
        """This rank's augmented batches of `epoch`, from `start_batch` on."""
        self._run_batches.set_epoch(epoch, start_batch)
        if self._train_loader is None:  # one loader for the run: its workers start once
            self._train_loader = self._loader(self._train_set, batch_sampler=self._run_batches)
        return self._train_loader

    def val_loader(self):
        """This rank's share of the validation set, in order, preprocessed as inference preprocesses; an image that
        cannot be read is labelled UNREAD."""
        if self._val_loader is None:
            items = distributed.val_shard(self.split.val, self.world)
            dataset = evaluation_images(items, self.preprocessing, len(self.class_names))
            self._val_loader = self._loader(dataset, batch_size=max(self.batch_size, 32))
        return self._val_loader

    def evaluation_loader(self, items, on_unreadable) -> ReportingLoader:
        """Another labelled set (a test set: its labels the model's indices) read as the validation set is, in this
        process; its unreadable files go to on_unreadable, not into the run's count."""
        loader = torch.utils.data.DataLoader(evaluation_images(items, self.preprocessing, len(self.class_names)), collate_fn=collate,
                                             batch_size=max(self.batch_size, 32))
        return ReportingLoader(loader, on_unreadable)

    def close(self) -> None:
        """Ends the loaders' worker processes, which would otherwise live as long as this object."""
        self._train_loader = self._val_loader = None

    def _loader(self, dataset, **batching):
        loader = torch.utils.data.DataLoader(dataset, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                                             pin_memory=self.device.type == "cuda", collate_fn=collate, **batching)
        return ReportingLoader(loader, self.record_unreadable)

    def record_unreadable(self, met: list) -> None:
        """Files found unreadable, by this process or (distributed) another: recorded, and each logged once."""
        for entry in self.unreadable.add(met):
            self.log(f"skipped unreadable image {entry.where}: {entry.reason}")

    def quantization_images(self) -> list:
        """Validation images spread over the classes (the list is in class order), those that can be read."""
        return self._readable(evenly_spread(self.split.val))

    def onnx_sample_images(self) -> list:
        return self._readable(self.split.val[: 2 * ONNX_SAMPLE_IMAGES])[:ONNX_SAMPLE_IMAGES]

    def _readable(self, items) -> list:
        needed = PixelsNeeded.for_resize(self.preprocessing.resize_size)
        images = []
        for path, _ in items:
            try:
                images.append(read_image(path, needed))
            except ImageError:  # the validation loader meets and reports it
                pass
        return images


def evaluation_images(items, preprocessing: Preprocessing, num_classes: int) -> ItemImages:
    """Labelled images read as inference reads them (decoded at the size its resize needs), none replaced."""
    return ItemImages(items, preprocessing, PixelsNeeded.for_resize(preprocessing.resize_size),
                      blank_size=preprocessing.crop_size, num_classes=num_classes)
