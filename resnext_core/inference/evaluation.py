"""A classifier (an InferConfig: ImageNet weights or a checkpoint) scored on a labelled folder, with the trainer's
own metric code (reports/evaluation_folder.py). The folder's classes are matched to the model's by name; images of a
class the model does not know are counted apart, unreadable files listed."""
from __future__ import annotations

import numpy as np
import torch

from ..common.errors import DatasetError
from ..data.datasets import labelled_set
from ..data.sources import Unit, batches
from ..reports.evaluation_folder import evaluation_report, scored_items, write_evaluation
from .bulk import BATCH_SIZE, auto_workers
from .classifier import load_classifier
from .config import InferConfig


def evaluate_folder(config: InferConfig, folder: str, output: str, batch_size: int = BATCH_SIZE,
                    workers: int | None = None) -> dict:
    """The report (reports.evaluation_folder.evaluation_report, plus the unknown classes and unreadable files) of the
    classifier `config` names on `folder` (<class>/ or val/<class>/), written into the folder `output`."""
    test = labelled_set(folder)
    classifier = load_classifier(config)
    scored, unknown = scored_items(test, classifier.class_names)
    truth = dict(scored)
    workers = auto_workers(classifier.device) if workers is None else workers
    items, rows, unreadable = [], [], list(test.skipped)
    for samples in batches([Unit(path) for path in truth], classifier.preprocessing, batch_size, workers):
        log_probabilities = classifier.probabilities(samples.images, temperature=1.0).clamp_min(1e-30).log()
        read = iter(log_probabilities)
        for (path, _), error in zip(samples.keys, samples.errors):
            if error is None:
                items.append((path, truth[path]))
                rows.append(next(read))
            else:
                unreadable.append((path, error))
    if not items:
        raise DatasetError(f"No readable image of {test.source} is of a class the model knows: its classes are "
                           f"{', '.join(test.class_names)}; the model's {', '.join(classifier.class_names[:10])}"
                           + (", ..." if len(classifier.class_names) > 10 else ""))
    logits = torch.stack(rows).numpy().astype(np.float64)
    report = evaluation_report(logits, [label for _, label in items], classifier.class_names, classifier.temperature)
    write_evaluation(output, report, items, logits, classifier.class_names, unknown, unreadable)
    return {**report, "unknown_classes": unknown, "unreadable": unreadable, "folder": test.source}
