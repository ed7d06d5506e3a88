"""The data side as users' data meets it: 12-megapixel photos, broken files, a million listed images.

  python -m benchmarks data [--parts decoders fidelity bulk training startup broken scale]
                            [--checkpoint best.pth] [--photos 48] [--files 10000 100000 1000000]

decoders: one 12 MP JPEG (4000 x 3000, quality 92) decoded whole and reduced (libjpeg's DCT scaling) by Pillow,
  OpenCV and torchvision, interleaved: milliseconds each.
fidelity: a digits model (--checkpoint, else the digits recipe trained for 3 epochs) on held-out digits scaled up
  to 12 MP JPEGs, read whole (what the plugin receives from Ikomia) and reduced (what the bulk commands and the
  trainer read): top-1 agreement, the largest confidence difference, accuracy of each.
bulk: python -m resnext_core.predict's images per second on --photos photos at 640 x 480 and the same photos
  at 4000 x 3000, interleaved; the ratio.
training: one epoch of resnext50_32x4d at 224 (batch 16, the Trainer as the plugin runs it) on the two folders,
  interleaved; the loader alone and the model step alone (synthetic tensors) beside it.
startup: --files images listed in 1,000 class folders (hard links of one tiny JPEG): the time to list their
  names, to read the dataset (the trainer's split) and to its first training batch, and the item list's bytes.
broken: 10,000 small JPEGs with 50 broken files (20 text files named .jpg, 25 JPEGs cut at a third, 5 empty):
  one training epoch, the evaluate command and the bulk command, each checked to complete and name all 50.
scale: the bulk and evaluate commands' time per image on 2,000 and 20,000 listed files.
"""
from __future__ import annotations

import csv
import json
import os
import random
import statistics
import tempfile
import time

from .common import default_out, photo, race, timed, write_report

BIG = (3000, 4000)  # 12 MP, a phone photo's
SMALL = (480, 640)
QUALITY = 92
GRAIN = 3.0  # sensor-like noise (standard deviation, 0-255): a smooth synthetic photo would compress unlike a real one
PARTS = ("decoders", "fidelity", "bulk", "training", "startup", "broken", "scale")


def add_arguments(parser) -> None:
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--checkpoint", help="fidelity: a digits model (default: train the digits recipe, 3 epochs)")
    parser.add_argument("--fidelity-images", type=int, default=200)
    parser.add_argument("--photos", type=int, default=48, help="bulk and training: photos of each size")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds after a warm-up")
    parser.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", default=default_out("data"))


def grainy_photo(height: int, width: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    image = photo(height, width, seed).astype(np.float32) + rng.normal(0, GRAIN, (height, width, 3))
    return image.clip(0, 255).astype(np.uint8)


def save_jpeg(image, path: str) -> str:
    from PIL import Image

    Image.fromarray(image).save(path, quality=QUALITY)
    return path


def photo_folders(count: int) -> dict:
    """{size name: a folder of `count` photos in 2 class folders}, the same photos at both sizes."""
    root = tempfile.mkdtemp(prefix="resnext-data-photos-")
    folders = {}
    for name, (height, width) in (("640x480", SMALL), ("4000x3000", BIG)):
        folders[name] = os.path.join(root, name)
        for index in range(count):
            folder = os.path.join(folders[name], f"class{index % 2}")
            os.makedirs(folder, exist_ok=True)
            save_jpeg(grainy_photo(height, width, index), os.path.join(folder, f"{index:04d}.jpg"))
    return folders


# --- decoders ---------------------------------------------------------------------------------------
def decoders(args) -> dict:
    import cv2
    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg

    from resnext_core.data.decode import PixelsNeeded, read_image

    path = save_jpeg(grainy_photo(*BIG, seed=0), os.path.join(tempfile.mkdtemp(), "photo.jpg"))
    inference = PixelsNeeded.for_resize(232)  # resnext50's V2 weights: shorter side 232, crop 224
    training = PixelsNeeded.for_random_crop(224, 0.25)  # the trainer's defaults
    with Image.open(path) as image:
        scales = {"inference": inference.reduction(*image.size), "training": training.reduction(*image.size)}
    cv_flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}

    def tv():
        with open(path, "rb") as handle:
            return decode_jpeg(torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8))

    contenders = {
        "pillow_full": lambda: read_image(path),
        f"pillow_reduced_1/{scales['inference']}_inference": lambda: read_image(path, inference),
        f"pillow_reduced_1/{scales['training']}_training": lambda: read_image(path, training),
        "opencv_full": lambda: cv2.imread(path, cv2.IMREAD_COLOR),
        f"opencv_reduced_1/{scales['inference']}": lambda: cv2.imread(path, cv_flags[scales["inference"]]),
        f"opencv_reduced_1/{scales['training']}": lambda: cv2.imread(path, cv_flags[scales["training"]]),
        "torchvision_decode_jpeg_full": tv,
    }
    seconds = race(contenders, repeats=9)
    for name, value in seconds.items():
        print(f"decode 12 MP ({os.path.getsize(path) / 1e6:.1f} MB): {name} {1000 * value:.1f} ms", flush=True)
    return {"file_mb": os.path.getsize(path) / 1e6, "reductions": scales,
            "milliseconds": {name: 1000 * value for name, value in seconds.items()}}


# --- fidelity ---------------------------------------------------------------------------------------
def digits_checkpoint(args) -> tuple:
    """(checkpoint, digits dataset folder)."""
    from resnext_tools.digits import write_digits_dataset

    dataset = tempfile.mkdtemp(prefix="resnext-data-digits-")
    write_digits_dataset(dataset)
    if args.checkpoint:
        return args.checkpoint, dataset
    from resnext_core.training.config import TRAIN_SCHEMA
    from resnext_core.training.trainer import Callbacks, Trainer
    from resnext_tools.digits import DIGITS_RECIPE

    config = TRAIN_SCHEMA.parse({**DIGITS_RECIPE, "epochs": "3", "dataset_folder": os.path.join(dataset, "train"),
                                 "output_folder": tempfile.mkdtemp(prefix="resnext-data-run-")})
    result = Trainer(config, Callbacks(log=lambda line: None)).run()
    return os.path.join(result.run_folder, "best.pth"), dataset


def fidelity(args) -> dict:
    import numpy as np
    from PIL import Image

    from resnext_core import load_classifier
    from resnext_core.data.decode import PixelsNeeded, read_image
    from resnext_tools.digits import heldout_items

    checkpoint, dataset = digits_checkpoint(args)
    classifier = load_classifier(model_weight_file=checkpoint, device="cpu", precision="fp32", engine="torch")
    items = heldout_items(dataset)
    items = items[:: max(1, len(items) // args.fidelity_images)][: args.fidelity_images]
    side = int(np.sqrt(BIG[0] * BIG[1]))  # a digit is square: 12 MP as side x side
    folder = tempfile.mkdtemp(prefix="resnext-data-fidelity-")
    needed = PixelsNeeded.for_resize(classifier.preprocessing.resize_size)
    whole, reduced, truths, scale = [], [], [], 1
    for index, (path, truth) in enumerate(items):
        big = np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.BILINEAR))
        jpeg = save_jpeg(big, os.path.join(folder, f"{index}.jpg"))
        whole.append(classifier.predict([read_image(jpeg)])[0])
        small = read_image(jpeg, needed)
        scale = side // small.shape[0]
        reduced.append(classifier.predict([small])[0])
        truths.append(classifier.class_names.index(truth))
        os.unlink(jpeg)
    whole, reduced, truths = (np.stack([t.numpy() for t in whole]), np.stack([t.numpy() for t in reduced]),
                              np.asarray(truths))
    report = {"images": len(items), "side": side, "reduction": scale, "resize_size": classifier.preprocessing.resize_size,
              "top1_agreement": float((whole.argmax(1) == reduced.argmax(1)).mean()),
              "max_confidence_difference": float(np.abs(whole - reduced).max()),
              "mean_confidence_difference": float(np.abs(whole - reduced).mean()),
              "top1_whole": float((whole.argmax(1) == truths).mean()),
              "top1_reduced": float((reduced.argmax(1) == truths).mean())}
    print(f"fidelity ({len(items)} digits at {side} x {side}, reduced 1/{scale}): top-1 agreement "
          f"{100 * report['top1_agreement']:.2f}%, largest confidence difference {report['max_confidence_difference']:.4f}, "
          f"top-1 {100 * report['top1_whole']:.2f}% whole vs {100 * report['top1_reduced']:.2f}% reduced", flush=True)
    return report


# --- bulk and training ------------------------------------------------------------------------------
def bulk(args, folders: dict) -> dict:
    """Each size with 1 decoding thread, 2, and auto's count, interleaved; the ratio at auto's."""
    from resnext_core import InferConfig
    from resnext_core.common.runtime import resolve_device
    from resnext_core.data.sources import auto_workers
    from resnext_core.inference.bulk import predict_files

    from .common import cache_weights

    cache_weights("resnext50_32x4d")
    config = InferConfig(model_name="resnext50_32x4d")
    auto = auto_workers(resolve_device("auto"))
    counts = sorted({1, 2, auto})

    def run(name, workers):
        output = os.path.join(tempfile.mkdtemp(prefix="resnext-data-bulk-"), "rows.csv")
        return lambda: predict_files(config, [folders[name]], output, workers=workers, progress=False)

    seconds = {(name, workers): [] for name in folders for workers in counts}
    for round_index in range(args.rounds + 1):
        for name, workers in seconds:
            elapsed = timed(run(name, workers))[1]
            if round_index:
                seconds[name, workers].append(elapsed)
            print(f"bulk, round {round_index}: {name}, {workers} threads: {args.photos / elapsed:.1f} img/s", flush=True)
    rate = {f"{name}, {workers} threads": args.photos / statistics.median(values) for (name, workers), values in seconds.items()}
    ratio = rate[f"4000x3000, {auto} threads"] / rate[f"640x480, {auto} threads"]
    for name, value in rate.items():
        print(f"bulk: {name} {value:.1f} img/s", flush=True)
    print(f"bulk, auto ({auto} threads): 12 MP at {ratio:.2f}x the rate at 640x480", flush=True)
    return {"images_per_second": rate, "auto_threads": auto, "ratio_12mp_to_640x480": ratio,
            "file_mb": {name: sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)
                        / args.photos / 1e6 for name, folder in folders.items()}}


def training(args, folders: dict) -> dict:
    import torch

    from resnext_core.common.runtime import disable_openmp_dynamic_threads
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.loop import build_setup, train_one_epoch
    from resnext_core.training.trainer import Callbacks, Trainer

    disable_openmp_dynamic_threads()

    def trainer(name) -> Trainer:
        config = TrainConfig(dataset_folder=folders[name], output_folder=tempfile.mkdtemp(prefix="resnext-data-run-"),
                             model_name="resnext50", weights="none", train_mode="scratch", input_size=224, epochs=1,
                             batch_size=16, val_split=0.1, export_pth=False)
        return Trainer(config, Callbacks(log=lambda line: None))

    loader_alone = {}
    for name in folders:
        data = trainer(name).data
        images, seconds = timed(lambda: sum(len(batch) for batch, _ in data.train_loader(0, 0)))
        loader_alone[name] = images / seconds
        data.close()
        print(f"training loader alone, {name}: {loader_alone[name]:.1f} img/s", flush=True)
    synthetic = trainer("640x480")
    setup = build_setup(synthetic.config, 2, synthetic.device, synthetic.amp_dtype, 4, [0, 1])
    batches = [(torch.randn(16, 3, 224, 224), torch.randint(0, 2, (16,))) for _ in range(4)]
    train_one_epoch(setup, batches[:1], epoch=0)  # warm-up
    step_rate = train_one_epoch(setup, batches, epoch=0).images_per_second
    print(f"training step alone (synthetic tensors): {step_rate:.1f} img/s", flush=True)
    rates = {name: [] for name in folders}
    for round_index in range(args.rounds + 1):
        for name in folders:
            result = trainer(name).run()
            if round_index:
                rates[name].append(result.history[0]["images_per_second"])
            print(f"training epoch, round {round_index}: {name} {result.history[0]['images_per_second']:.1f} img/s",
                  flush=True)
    rate = {name: statistics.median(values) for name, values in rates.items()}
    ratio = rate["4000x3000"] / rate["640x480"]
    print(f"training: {rate['640x480']:.1f} img/s at 640x480, {rate['4000x3000']:.1f} img/s at 12 MP: {ratio:.2f}x", flush=True)
    return {"epoch_images_per_second": rate, "ratio_12mp_to_640x480": ratio, "loader_alone_images_per_second": loader_alone,
            "step_alone_images_per_second": step_rate, "rounds": rates}


# --- start-up at scale -------------------------------------------------------------------------------
LINKS_PER_FILE = 60_000  # ext4 allows 65,000 links to a file


def linked_dataset(count: int, classes: int = 1000) -> str:
    """`count` hard links of one tiny JPEG in `classes` class folders: a listing as large as a real dataset's,
    without its bytes."""
    root = tempfile.mkdtemp(prefix=f"resnext-data-{count}-")
    for label in range(classes):
        os.makedirs(os.path.join(root, "images", f"class{label:04d}"))
    for index in range(count):
        if index % LINKS_PER_FILE == 0:
            source = save_jpeg(photo(24, 24, seed=1), os.path.join(root, f"source{index}.jpg"))
        os.link(source, os.path.join(root, "images", f"class{index % classes:04d}", f"{index:07d}.jpg"))
    return os.path.join(root, "images")


def list_names(folder: str) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        return int(handle.read().split("VmRSS:")[1].split()[0]) / 1024


def startup(args) -> dict:
    import gc
    import torch

    from resnext_core.data.datasets import training_split
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.data import TrainingData

    figures = {}
    for count in args.files:
        folder, made = timed(lambda: linked_dataset(count))
        os.sync()
        list_names(folder)  # both timings below read a warm directory cache
        gc.collect()
        before = rss_mib()
        (listed, list_s), (split, split_s) = timed(lambda: list_names(folder)), timed(lambda: training_split(folder, "", 0.1, 0))
        grown = rss_mib() - before
        del split
        config = TrainConfig(dataset_folder=folder, output_folder=tempfile.mkdtemp(), model_name="resnext50", weights="none",
                             train_mode="scratch", input_size=32, batch_size=32, val_split=0.1)
        started = time.perf_counter()
        data = TrainingData(config, torch.device("cpu"), log=lambda line: None)
        next(iter(data.train_loader(0, 0)))
        first_batch_s = time.perf_counter() - started
        figures[count] = {"listed": listed, "list_s": list_s, "read_dataset_s": split_s, "first_batch_s": first_batch_s,
                          "first_batch_over_list": first_batch_s / list_s, "items_mib": (data.split.train.nbytes +
                                                                                         data.split.val.nbytes) / 2**20,
                          "rss_growth_mib_reading_dataset": grown, "made_s": made}
        print(f"start-up, {count} files: list {list_s:.2f} s, dataset read {split_s:.2f} s, first batch {first_batch_s:.2f} s "
              f"({first_batch_s / list_s:.1f}x the listing); items {figures[count]['items_mib']:.1f} MiB, "
              f"RSS +{grown:.0f} MiB", flush=True)
        data.close()
        del data
        import shutil

        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    return figures


# --- broken files -----------------------------------------------------------------------------------
BROKEN_KINDS = {"text": 20, "cut": 25, "empty": 5}


def damaged_dataset(images: int = 10_000, classes: int = 10) -> tuple:
    """(folder, {broken path: kind}): `images` small JPEGs in class folders, BROKEN_KINDS among them."""
    root = tempfile.mkdtemp(prefix="resnext-data-broken-")
    rng = random.Random(0)
    for label in range(classes):
        os.makedirs(os.path.join(root, f"class{label}"))
    paths = []
    for index in range(images):
        path = os.path.join(root, f"class{index % classes}", f"{index:05d}.jpg")
        save_jpeg(grainy_photo(64, 64, seed=index % 997), path)
        paths.append(path)
    broken = {}
    chosen = rng.sample(paths, sum(BROKEN_KINDS.values()))
    kinds = [kind for kind, count in BROKEN_KINDS.items() for _ in range(count)]
    for path, kind in zip(chosen, kinds):
        whole = open(path, "rb").read()
        with open(path, "wb") as handle:
            handle.write({"text": b"<html>not an image</html>\n", "cut": whole[: len(whole) // 3], "empty": b""}[kind])
        broken[path] = kind
    return root, broken


def broken(args) -> dict:
    from resnext_core import InferConfig
    from resnext_core.inference.bulk import predict_files
    from resnext_core.inference.evaluation import evaluate_folder
    from resnext_core.training.config import TrainConfig
    from resnext_core.training.trainer import Callbacks, Trainer

    folder, damaged = damaged_dataset()
    lines = []
    config = TrainConfig(dataset_folder=folder, output_folder=tempfile.mkdtemp(prefix="resnext-data-run-"),
                         model_name="resnext50", weights="none", train_mode="scratch", input_size=32, epochs=1,
                         batch_size=64, val_split=0.1, hflip=False)
    result, train_s = timed(Trainer(config, Callbacks(log=lines.append)).run)
    with open(os.path.join(result.run_folder, "skipped_files.txt"), encoding="utf-8") as handle:
        named_by_training = {line.split("\t")[0] for line in handle}
    checkpoint = os.path.join(result.run_folder, "best.pth")
    report, evaluate_s = timed(lambda: evaluate_folder(InferConfig(model_weight_file=checkpoint), folder,
                                                       tempfile.mkdtemp(prefix="resnext-data-eval-")))
    named_by_evaluate = {path for path, _ in report["unreadable"]}
    output = os.path.join(tempfile.mkdtemp(prefix="resnext-data-bulk-"), "rows.csv")
    bulk_result, bulk_s = timed(lambda: predict_files(InferConfig(model_weight_file=checkpoint), [folder], output,
                                                      progress=False))
    with open(output, newline="", encoding="utf-8") as handle:
        named_by_bulk = {row["path"] for row in csv.DictReader(handle) if row["error"]}
    figures = {"images": 10_000, "broken": len(damaged), "kinds": BROKEN_KINDS,
               "training": {"completed": result.epochs_done == 1, "named": len(named_by_training & set(damaged)), "seconds": train_s},
               "evaluate": {"named": len(named_by_evaluate & set(damaged)), "scored": report["images"], "seconds": evaluate_s},
               "bulk": {"named": len(named_by_bulk & set(damaged)), "rows": bulk_result.classified + bulk_result.errors,
                        "seconds": bulk_s}}
    print("broken files: " + json.dumps(figures), flush=True)
    return figures


# --- the bulk and evaluate commands at scale ------------------------------------------------------------
def scale(args) -> dict:
    from resnext_core import InferConfig
    from resnext_core.common import checkpoint as checkpoints
    from resnext_core.common import models
    from resnext_core.common.preprocess import Preprocessing
    from resnext_core.inference.bulk import predict_files
    from resnext_core.inference.evaluation import evaluate_folder

    model_file = os.path.join(tempfile.mkdtemp(prefix="resnext-data-model-"), "m.pth")
    model = models.build_model("resnext50", num_classes=10)
    checkpoints.save_checkpoint(model_file, "resnext50", model.state_dict(), [f"class{i:04d}" for i in range(10)],
                                Preprocessing(32, 33))
    config = InferConfig(model_weight_file=model_file)
    figures = {}
    for count in (2_000, 20_000):
        folder = linked_dataset(count, classes=10)
        output = os.path.join(tempfile.mkdtemp(prefix="resnext-data-scale-"), "rows.csv")
        bulk_s = timed(lambda: predict_files(config, [folder], output, progress=False))[1]
        evaluate_s = timed(lambda: evaluate_folder(config, folder, tempfile.mkdtemp(prefix="resnext-data-scale-")))[1]
        figures[count] = {"bulk_ms_per_image": 1000 * bulk_s / count, "evaluate_ms_per_image": 1000 * evaluate_s / count}
        print(f"{count} files: bulk {figures[count]['bulk_ms_per_image']:.2f} ms/img, evaluate "
              f"{figures[count]['evaluate_ms_per_image']:.2f} ms/img", flush=True)
    return figures


def run(args) -> int:
    os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp(prefix="resnext-data-torch-"))
    report = {}
    if "decoders" in args.parts:
        report["decoders"] = decoders(args)
    if "fidelity" in args.parts:
        report["fidelity"] = fidelity(args)
    if {"bulk", "training"} & set(args.parts):
        folders = photo_folders(args.photos)
        if "bulk" in args.parts:
            report["bulk"] = bulk(args, folders)
        if "training" in args.parts:
            report["training"] = training(args, folders)
    if "startup" in args.parts:
        report["startup"] = startup(args)
    if "broken" in args.parts:
        report["broken"] = broken(args)
    if "scale" in args.parts:
        report["scale"] = scale(args)
    write_report(report, args.out)
    return 0
