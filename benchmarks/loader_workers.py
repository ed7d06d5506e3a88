"""Data-loader workers on this machine: what `num_workers` auto rests on.

  python -m benchmarks loader-workers [--workers 0 1 2] [--rounds 2] [--size 224]

A folder of 640x480 JPEG photos (2 classes x 48), the training recipe's augmentation at --size: first the
loader alone (img/s of decoded, augmented batches: what could feed a GPU), then whole one-epoch trainings of
resnext50_32x4d from scratch (batch 16, the Trainer as the plugin runs it) with each worker count,
interleaved for --rounds rounds. Prints medians and each count's epoch time relative to 0 workers.
"""
from __future__ import annotations

import os
import statistics
import tempfile

from .common import default_out, photo, timed, write_report

IMAGES_PER_CLASS = 48


def photo_folder() -> str:
    from PIL import Image

    root = tempfile.mkdtemp(prefix="resnext-workers-")
    for label in range(2):
        os.makedirs(os.path.join(root, f"class{label}"))
        for index in range(IMAGES_PER_CLASS):
            path = os.path.join(root, f"class{label}", f"{index}.jpg")
            Image.fromarray(photo(480, 640, seed=label * 1000 + index)).save(path, quality=90)
    return root


def add_arguments(parser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default=default_out("loader-workers"))


def run(args) -> int:
    os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="resnext-workers-torch-")
    from resnext_core.common.runtime import disable_openmp_dynamic_threads
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.trainer import Callbacks, Trainer

    disable_openmp_dynamic_threads()
    dataset = photo_folder()

    def trainer(workers: int) -> Trainer:
        config = TrainConfig(dataset_folder=dataset, output_folder=tempfile.mkdtemp(prefix="resnext-workers-run-"),
                             model_name="resnext50", weights="none", train_mode="scratch", input_size=args.size,
                             epochs=1, batch_size=16, val_split=0.1, num_workers=workers, export_pth=False)
        return Trainer(config, Callbacks(log=lambda line: None))

    loader_alone = {}
    for workers in args.workers:
        data = trainer(workers).data
        images, seconds = timed(lambda: sum(len(batch) for batch, _ in data.train_loader(0, 0)))
        loader_alone[workers] = images / seconds
        data.close()
        print(f"loader alone, {workers} workers: {loader_alone[workers]:.0f} img/s", flush=True)
    epochs = {workers: [] for workers in args.workers}
    for _ in range(args.rounds):
        for workers in args.workers:
            epochs[workers].append(timed(trainer(workers).run)[1])
            print(f"one epoch, {workers} workers: {epochs[workers][-1]:.1f} s", flush=True)
    medians = {workers: statistics.median(times) for workers, times in epochs.items()}
    reference = medians[args.workers[0]]
    for workers, median in medians.items():
        print(f"{workers} workers: epoch {median:.1f} s, {reference / median:.2f}x the speed of {args.workers[0]} workers")
    report = {"input_size": args.size, "images": 2 * IMAGES_PER_CLASS, "loader_alone_img_per_s": loader_alone,
              "epoch_median_s": medians, "epoch_s": epochs}
    write_report(report, args.out)
    return 0
