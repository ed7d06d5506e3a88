"""A classifier (an InferConfig: ImageNet weights or a checkpoint) scored on a labelled set (a folder or a label
file) by the one scorer (common/scoring.py), the report written as reports/evaluation_folder.py writes it. The
set's classes are matched to the model's by name; images of a class the model does not know are counted apart,
unreadable files listed. The evaluate command and a training run's test_folder both score here."""
from __future__ import annotations

import numpy as np
import torch

from ..common.errors import DatasetError
from ..common.scoring import score, score_multi_label
from ..data.datasets import labelled_set
from ..data.sources import BATCH_SIZE, Unit, auto_workers, batches
from ..reports.evaluation_folder import scored_items, write_evaluation
from .classifier import load_classifier
from .config import InferConfig


def evaluate_folder(config: InferConfig, folder, output: str, batch_size: int = BATCH_SIZE,
                    workers: int | None = None) -> dict:
    """The scorer's report, plus the unknown classes and unreadable files, of the classifier `config` names on
    `folder` (<class>/ or val/<class>/ folders, or a label file), at the classifier's temperature (and a multi-label
    model's thresholds); score() reports over the classes the set holds. Written into the folder `output`.
    `folder` may be that set already read (data.splits.LabelledSet)."""
    test = labelled_set(folder) if isinstance(folder, str) else folder
    classifier = load_classifier(config)
    if test.items.multi_label and not classifier.multi_label:
        raise DatasetError(f"{test.source} gives images several labels (or none): its model must be multi-label, and "
                           f"{classifier.description} is not")
    scored, unknown = scored_items(test, classifier.class_names)
    truth = dict(scored.as_label_sets() if classifier.multi_label else scored)
    workers = auto_workers(classifier.device) if workers is None else workers
    items, rows, unreadable = [], [], list(test.skipped)
    for samples in batches([Unit(path) for path in truth], classifier.preprocessing, batch_size, workers):
        read = iter(classifier.scoring_logits(samples.images) if len(samples.images) else [])
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
    labels = [label for _, label in items]
    if classifier.multi_label:
        targets = np.zeros(logits.shape, dtype=np.float64)
        for row, label in enumerate(labels):
            targets[row, list(label)] = 1.0
        report = score_multi_label(logits, targets, classifier.class_names, classifier.temperature,
                                   classifier.thresholds.numpy())
    else:
        report = score(logits, labels, classifier.class_names, classifier.temperature, evaluated=sorted(set(labels)))
    write_evaluation(output, report, items, logits, classifier.class_names, unknown, unreadable)
    return {**report, "unknown_classes": unknown, "unreadable": unreadable, "folder": test.source}
