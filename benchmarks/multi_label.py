"""A multi-label model as users train one: 2 x 2 grids of scikit-learn's digits (1 to 3 cells filled, labelled with
the digits shown), trained from scratch through the training plugin with resnext_tools.digits.GRID_RECIPE, then
the held-out grids (their digit images never seen in training) scored by the evaluate command and classified
through the inference plugin.

  python -m benchmarks multi-label [--train 700] [--val 200] [--heldout 200] [--epochs 6] [--cell 20]

Prints the training time, the held-out mAP (macro and micro), macro F1 at the tuned thresholds, the exact-match
ratio, the calibration error before and after the fitted temperature, the plugin's mAP beside the evaluate
command's, and how often the plugin draws as many labels as the grid shows.
"""
from __future__ import annotations

import csv
import os
import tempfile

from .common import default_out, isolated_ikomia, timed, write_report


def add_arguments(parser) -> None:
    parser.add_argument("--train", type=int, default=700)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--epochs", type=int, help="the recipe's own by default")
    parser.add_argument("--cell", type=int, default=20, help="px a grid cell (input_size is twice it)")
    parser.add_argument("--out", default=default_out("multi-label"))


def run(args) -> int:
    isolated_ikomia()
    import numpy as np
    import torch
    from ikomia.dataprocess.workflow import Workflow
    from PIL import Image
    from sklearn.metrics import average_precision_score

    from resnext_core import InferConfig, load_classifier
    from resnext_core.inference.evaluation import evaluate_folder
    from resnext_tools.digits import GRID_RECIPE, write_digit_grids

    folder = tempfile.mkdtemp(prefix="resnext-grids-")
    write_digit_grids(folder, {"train": args.train, "val": args.val, "heldout": args.heldout}, cell=args.cell)
    recipe = {**GRID_RECIPE, "input_size": str(2 * args.cell), "label_file": os.path.join(folder, "labels.csv"),
              "output_folder": os.path.join(folder, "runs")}
    if args.epochs:
        recipe["epochs"] = str(args.epochs)
    training = Workflow().add_task(name="train_torchvision_resnext")
    training.set_parameters(recipe)
    seconds = timed(training.run)[1]
    weight_file = os.path.join(training.get_output(0).get_path(), "best.pth")
    report = evaluate_folder(InferConfig(model_weight_file=weight_file), os.path.join(folder, "heldout.csv"),
                             os.path.join(folder, "evaluation"))
    classifier = load_classifier(model_weight_file=weight_file)
    task = Workflow().add_task(name="infer_torchvision_resnext")
    task.set_parameters({"model_weight_file": weight_file, "top_k": "4"})
    with open(os.path.join(folder, "heldout.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores, truth, drawn, shown = [], [], [], []
    for row in rows:
        task.get_input(0).set_image(np.asarray(Image.open(os.path.join(folder, row["path"])).convert("RGB")))
        task.run()
        results = dict((name, float(confidence)) for name, confidence in task.get_whole_image_results())
        scores.append([results[name] for name in classifier.class_names])
        labels = set(row["labels"].split(";")) - {""}
        truth.append([name in labels for name in classifier.class_names])
        drawn.append(len(classifier.labels(torch.tensor(scores[-1]), 4)))
        shown.append(len(labels))
    scores, truth = np.array(scores), np.array(truth)
    plugin_map = float(np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in range(truth.shape[1])]))
    figures = {"grids": {"train": args.train, "val": args.val, "heldout": args.heldout, "cell_px": args.cell},
               "recipe": recipe, "training_seconds": seconds,
               "heldout": {key: report[key] for key in ("mAP", "mAP_micro", "f1", "f1_micro", "exact_match", "ece",
                                                        "ece_calibrated", "nll", "nll_calibrated", "temperature")},
               "plugin_mAP": plugin_map, "drawn_count_is_shown_count": float(np.mean(np.array(drawn) == np.array(shown)))}
    held = figures["heldout"]
    print(f"trained in {seconds:.0f} s; held out: mAP {held['mAP']:.4f} (micro {held['mAP_micro']:.4f}), macro F1 "
          f"{held['f1']:.3f}, exact match {100 * held['exact_match']:.1f}%, ECE {100 * held['ece']:.2f}% raw -> "
          f"{100 * held['ece_calibrated']:.2f}% at T {held['temperature']:.3f}; the plugin's mAP {plugin_map:.4f}; "
          f"as many labels drawn as shown: {100 * figures['drawn_count_is_shown_count']:.1f}%", flush=True)
    write_report(figures, args.out)
    return 0
