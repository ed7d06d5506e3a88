"""Score a model on a labelled folder from the command line: a checkpoint of the training plugin, or ImageNet
weights, with the inference plugin's parameters.

    python -m resnext_core.evaluate my_test_set/ --output evaluation/ --model_weight_file runs/cats/best.pth
    python -m resnext_core.evaluate imagenet_val/ --output evaluation/ --model_name resnext101_32x8d

The folder holds <class>/ folders of images (or val/<class>/: a training dataset's held-out part); its classes
are matched to the model's by name, and a class the model does not know is reported, not scored. The output
folder gets evaluation.json (top-1, top-5, per-class precision/recall/F1, the confusion matrix, the expected
calibration error with and without the model's temperature, unknown classes, unreadable files),
predictions.csv, confusion_matrix.png, worst_predictions.png and reliability_diagram.png.
"""
from __future__ import annotations

import argparse

from .common.cli import add_flag, add_parameter_flags, command_parser, parsed_config, run_command
from .data.sources import BATCH_SIZE
from .inference.config import INFER_SCHEMA
from .inference.evaluation import evaluate_folder


def parser() -> argparse.ArgumentParser:
    parsed = command_parser("python -m resnext_core.evaluate", __doc__)
    parsed.add_argument("folder", help="a labelled set: <class>/ or val/<class>/ folders of images, or a label file "
                                       "(.csv, .jsonl: path, label[, split]; its val rows where it has a split)")
    add_flag(parsed, "output", required=True, help="the folder for evaluation.json and its pictures")
    add_flag(parsed, "batch_size", type=int, default=BATCH_SIZE, help="images per forward")
    add_flag(parsed, "workers", type=int, help="decoding threads (default: auto, from the cores)")
    add_parameter_flags(parsed, INFER_SCHEMA, "the inference plugin's parameters")
    return parsed


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    report = evaluate_folder(parsed_config(args, INFER_SCHEMA), args.folder, args.output, args.batch_size, args.workers)
    if "mAP" in report:  # a multi-label model
        line = (f"{report['images']} images of {report['folder']}: mAP {report['mAP']:.4f} (micro {report['mAP_micro']:.4f}), "
                f"exact match {100 * report['exact_match']:.2f}%")
    else:
        line = f"{report['images']} images of {report['folder']}: top-1 {100 * report['top1']:.2f}%"
    if "top5" in report:
        line += f", top-5 {100 * report['top5']:.2f}%"
    print(line + f", macro F1 {report['f1']:.3f}, ECE {100 * report['ece']:.2f}% raw -> "
          f"{100 * report['ece_calibrated']:.2f}% at temperature {report['temperature']:.3g}", flush=True)
    for name, count in report["unknown_classes"].items():
        print(f"not scored: {count} image(s) of class {name}, which the model does not know", flush=True)
    if report["unreadable"]:
        print(f"unreadable: {len(report['unreadable'])} file(s), e.g. {report['unreadable'][0][0]}", flush=True)
    print(f"written {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    run_command(main)
