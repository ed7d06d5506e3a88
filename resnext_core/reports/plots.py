"""The pictures of a classifier's results (matplotlib, headless): confusion matrix, reliability diagram,
worst-classified images, training curves. The trainer draws them after its epochs, the evaluation once."""
from __future__ import annotations

import numpy as np

from ..common.files import atomic_path
from ..common.preprocess import to_display_rgb
from ..common.scoring import ECE_BINS, expected_calibration_error_of_bins
from ..data.decode import PixelsNeeded, read_image

FIGURE_DPI = 100
GALLERY_CELL_INCHES = (2.6, 3.0)  # width, height of one image and its title


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix, class_names, path: str, title: str = "Validation confusion matrix (best epoch)") -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = min(4 + 0.4 * len(class_names), 30)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
        ax=axes, colorbar=False, xticks_rotation="vertical", include_values=len(class_names) <= 30
    )
    axes.set_title(title)
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def plot_reliability_diagram(reliability: dict, temperature: float, path: str,
                             title: str = "Reliability diagram (validation, best epoch)",
                             confidence_label: str = "confidence of the top-1 class") -> None:
    """Accuracy against confidence per bin, before and after temperature scaling, with each one's ECE;
    the bars below count the samples per bin. A calibrated model follows the diagonal."""
    plt = _pyplot()
    figure, (curve_axes, count_axes) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                                    gridspec_kw={"height_ratios": (3, 1)})
    curve_axes.plot((0, 1), (0, 1), color="gray", linestyle="--", label="perfect calibration")
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    for key, label, colour in (("raw", "raw (T = 1)", "tab:red"), ("calibrated", f"T = {temperature:.2f}", "tab:blue")):
        bins = reliability[key]
        used = np.asarray(bins["count"]) > 0
        ece = expected_calibration_error_of_bins(bins)
        curve_axes.plot(np.asarray(bins["confidence"])[used], np.asarray(bins["accuracy"])[used], marker="o",
                        color=colour, label=f"{label} (ECE {ece:.3f})")
        count_axes.bar(centres + (0.15 if key == "calibrated" else -0.15) / ECE_BINS, bins["count"],
                       width=0.3 / ECE_BINS, color=colour)
    curve_axes.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1.01))
    curve_axes.legend(loc="best")
    curve_axes.grid(alpha=0.3)
    count_axes.set(xlabel=confidence_label, ylabel="images")
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


# The accuracy curves drawn, by metric: a single-label run has top-1 (and top-5), a multi-label run mAP and exact match.
ACCURACY_CURVES = (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5"),
                   ("train_exact_match", "train exact match"), ("val_mAP", "val mAP"), ("val_exact_match", "val exact match"))


def plot_training_curves(history: list, path: str) -> None:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axes.plot(epochs, [r["val_loss"] for r in history], label="val")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    for key, label in ACCURACY_CURVES:
        if all(key in r for r in history):
            accuracy_axes.plot(epochs, [r[key] for r in history], label=label)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.01))
    for axes in (loss_axes, accuracy_axes):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def plot_worst_predictions(worst: list, items: list, class_names, path: str, title: str) -> None:
    """A gallery of the highest-loss images, each titled with its truth and the prediction."""
    figure = worst_predictions_figure(worst, items, class_names, title)
    _save_figure(figure, path)
    _pyplot().close(figure)


GALLERY_COLUMNS = 4
GALLERY_TITLE_INCHES = 0.45  # the band above each image for its two-line title
GALLERY_SUPTITLE_INCHES = 0.5


def worst_predictions_figure(worst: list, items: list, class_names, title: str):
    rows = max(1, -(-len(worst) // GALLERY_COLUMNS))
    cell_width, cell_height = GALLERY_CELL_INCHES
    size = (cell_width * GALLERY_COLUMNS, cell_height * rows + GALLERY_SUPTITLE_INCHES)
    # A fixed layout, computed here: matplotlib's constrained layout measured every title and tick of the
    # cells and took most of the time of an epoch's pictures.
    figure, grid = _pyplot().subplots(rows, GALLERY_COLUMNS, figsize=size, squeeze=False,
                                      gridspec_kw=_gallery_margins(*size))
    for axes in grid.flat:
        axes.axis("off")
    for axes, sample in zip(grid.flat, worst):
        image_path, _ = items[sample["index"]]
        side = round(cell_width * FIGURE_DPI)  # a 12 MP photo is decoded at the scale of its thumbnail
        axes.imshow(_thumbnail(to_display_rgb(read_image(image_path, PixelsNeeded.for_resize(side))), side))
        truth, guess = _names(sample["label"], class_names), _names(sample["predicted"], class_names)
        confidence = f" ({sample['confidence']:.0%})" if "confidence" in sample else ""
        axes.set_title(f"true {truth}\npredicted {guess}{confidence}", fontsize=10,
                       color="black" if truth == guess else "firebrick")
    figure.suptitle(title)
    return figure


def _names(label, class_names) -> str:
    """A class's name, or a multi-label image's names joined ("-" for none)."""
    if isinstance(label, (list, tuple)):
        return ";".join(class_names[i] for i in label) or "-"
    return class_names[label]


def plot_precision_recall(curves: dict, path: str, title: str = "Precision-recall curves (validation, best epoch)") -> None:
    """Each class's precision against recall (a multi-label model's), with its average precision in the legend
    (up to 20 classes named)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    for index, (name, curve) in enumerate(curves.items()):
        axes.plot(curve["recall"], curve["precision"], linewidth=1.2, label=f"{name} (AP {curve['ap']:.3f})" if index < 20 else None)
    axes.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(loc="lower left", fontsize=8, ncol=2)
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def _gallery_margins(width: float, height: float) -> dict:
    """Gridspec margins, as fractions of a width x height inches figure, that give the suptitle and each
    cell's title a band of their own."""
    margin = 0.08
    return {"left": margin / width, "right": 1 - margin / width, "bottom": margin / height,
            "top": 1 - (GALLERY_SUPTITLE_INCHES + GALLERY_TITLE_INCHES) / height,
            "hspace": GALLERY_TITLE_INCHES / (GALLERY_CELL_INCHES[1] - GALLERY_TITLE_INCHES), "wspace": 0.08}


def _thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """`rgb` shrunk to fit side x side: matplotlib keeps each shown image as float RGBA (32 bytes a pixel), so a
    gallery of full-size photos would take gigabytes to draw at the few hundred pixels it is saved at."""
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _save_figure(figure, path: str) -> None:
    with atomic_path(path, ".png") as tmp:
        figure.savefig(tmp, dpi=FIGURE_DPI)
