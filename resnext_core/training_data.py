"""The data side of one training run: the dataset folder read and reported once, each epoch's seeded batch
order (this rank's shard of it), the loaders, and the validation images a run keeps beside its checkpoints.
No ikomia, no Qt."""
from __future__ import annotations

import torch

from . import distributed
from .balance import image_sampling_weights, images_per_class, imbalance_warnings, smallest_classes_line
from .data import EpochBatches, ImageDataset, RunBatches, TrainTransform, discover, read_image
from .distributed import SINGLE, World
from .models import resolve_weights
from .preprocess import Preprocessing
from .quantize import evenly_spread
from .train_config import MAX_AUTO_WORKERS, TrainConfig

ONNX_SAMPLE_IMAGES = 4


def training_preprocessing(config: TrainConfig) -> Preprocessing:
    if config.pretrained:
        return Preprocessing.from_weights(resolve_weights(config.model_name, config.weights), config.input_size)
    return Preprocessing().at_size(config.input_size)


def loader_workers(requested: int | None, device: torch.device, world: World = SINGLE) -> int:
    """num_workers, or auto's choice: none on the CPU, where decoding in other processes takes cores from the
    training step (README: measured slower); on CUDA, this process's share of the cores less one for itself,
    up to MAX_AUTO_WORKERS, so that decoding keeps pace with the GPU."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    return min(MAX_AUTO_WORKERS, max(1, distributed.cores_per_process(world) - 1))


def sampling_weights(config: TrainConfig, train_labels: list, num_classes: int):
    """Per-image weights for class_balance balanced_sampling, else None (each image once an epoch)."""
    if config.class_balance != "balanced_sampling":
        return None
    return image_sampling_weights(train_labels, num_classes)


class TrainingData:
    """Constructing it reads the dataset folder, writes nothing, and logs the dataset's warnings and its
    smallest classes."""

    def __init__(self, config: TrainConfig, device: torch.device, world: World = SINGLE, log=print):
        self.config, self.device, self.world = config, device, world
        self.split = discover(config.dataset_folder, config.val_split, config.seed)
        for warning in self.split.warnings:
            log(f"warning: {warning}")
        if self.split.skipped:
            log(f"skipped {len(self.split.skipped)} unreadable file(s), e.g. {self.split.skipped[0][0]}: {self.split.skipped[0][1]}")
        self.class_names = self.split.class_names
        self.train_labels = [label for _, label in self.split.train]
        self.train_counts = images_per_class(self.split.train, len(self.class_names))
        self.val_counts = images_per_class(self.split.val, len(self.class_names))
        log(smallest_classes_line(self.class_names, self.train_counts))
        for warning in imbalance_warnings(self.class_names, self.train_counts, config.class_balance != "none"):
            log(f"warning: {warning}")
        self.image_weights = sampling_weights(config, self.train_labels, len(self.class_names))
        self.preprocessing = training_preprocessing(config)
        self.batch_size = self._batch_size(log)
        self.num_workers = loader_workers(config.num_workers, device, world)
        augment = TrainTransform(self.preprocessing, config.min_crop_scale, config.hflip)
        self._train_set = ImageDataset(self.split.train, augment)  # one for the run; each epoch only resamples
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
        """This rank's share of the validation set, in order, preprocessed as inference preprocesses."""
        if self._val_loader is None:
            items = distributed.val_shard(self.split.val, self.world)
            self._val_loader = self._loader(ImageDataset(items, self.preprocessing), batch_size=max(self.batch_size, 32))
        return self._val_loader

    def close(self) -> None:
        """Ends the loaders' worker processes, which would otherwise live as long as this object."""
        self._train_loader = self._val_loader = None

    def _loader(self, dataset, **batching):
        return torch.utils.data.DataLoader(dataset, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                                           pin_memory=self.device.type == "cuda", **batching)

    def calibration_images(self) -> list:
        """Validation images spread over the classes (the list is in class order)."""
        return [read_image(path) for path, _ in evenly_spread(self.split.val)]

    def onnx_sample_images(self) -> list:
        return [read_image(path) for path, _ in self.split.val[:ONNX_SAMPLE_IMAGES]]
