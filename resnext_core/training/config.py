"""The training configuration: every parameter of train_torchvision_resnext declared once (default, range, label,
help), typed, validated, and saved into every checkpoint. The plugin's Param and panel, its README table and
the train command's flags derive from it; the public plugin's parameter names map onto it (LEGACY)."""
from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import ConfigError
from ..common.models import DEFAULT_MODEL, MODEL_NAMES, NO_WEIGHTS, offered_weights, resolve_model_name, resolve_weights
from ..common.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from ..common.runtime import device_option
from ..common.schema import ADVANCED, BOOL, FILE, FOLDER, SIZE, TEXT, Legacy, Schema, option
from .distributed import ALL_PROCESSES, parse_gpus, parse_processes

TRAIN_MODES = ("fine_tune", "feature_extract", "scratch")
MULTI_LABEL_CHOICES = ("auto", "True", "False")
AUGMENTATIONS = ("none", "trivialaugment", "randaugment", "augmix")  # torchvision.transforms.v2's policies
OPTIMIZERS = ("sgd", "adamw")
CLASS_BALANCES = ("none", "weighted_loss", "balanced_sampling")
NO_WEIGHTS_CHOICE = "none"
MAX_AUTO_WORKERS = 8  # num_workers auto's cap on CUDA (data.loader_workers)


def weight_choices(values: dict) -> list:
    """ImageNet weights offered for the chosen model, and training without them."""
    return offered_weights(values["model_name"]) + [NO_WEIGHTS_CHOICE]


@dataclass(frozen=True)
class TrainConfig:
    dataset_folder: str = option(
        "", "Dataset folder", "Folder with train/<class>/ and val/<class>/, or flat <class>/ folders; "
        "a folder connected to the task's input wins.", kind=FOLDER)
    label_file: str = option(
        "", "Label file", "Instead of class folders: a CSV (path,label[,split] header) or JSON Lines file listing "
        "each image and its class; paths relative to the file's folder. Wins over dataset_folder.",
        kind=FILE, file_filter="Label file (*.csv *.tsv *.jsonl *.ndjson)")
    multi_label: str = option(
        "auto", "Several labels an image", "True: a sigmoid a class (an image may hold several classes, or none), "
        "each class's threshold tuned on the validation images; auto: True for a label file with a labels column "
        "(names separated by ;) or an image with other than one label.", choices=MULTI_LABEL_CHOICES)
    model_name: str = option(
        DEFAULT_MODEL, "Model", "ResNeXt variant; aliases resnext50, resnext101 (= 32x8d).",
        choices=MODEL_NAMES, parse_with=resolve_model_name)
    train_mode: str = option(
        "fine_tune", "Train mode", "fine_tune: all layers from ImageNet weights; feature_extract: only the "
        "new classifier; scratch: random initial weights.", choices=TRAIN_MODES)
    epochs: int = option(15, "Epochs", "Passes over the training images.", low=1, high=100_000)
    batch_size: int = option(
        8, "Batch size", "Images per forward and backward, over all processes (capped at the training set's size); "
        "an optimizer step takes accumulation_steps of them.",
        low=1, high=65_536)
    learning_rate: float = option(
        0.001, "Learning rate", "Peak learning rate, after warmup; cosine decay to 0.", low=1e-8, high=10.0, decimals=6)
    device: str = device_option()
    processes: str = option(
        "1", "Processes", f"Training processes (DDP): {ALL_PROCESSES} = one per GPU; on the CPU, N processes "
        "sharing the cores (gloo). Each step's batch is split between them.", kind=TEXT, parse_with=parse_processes,
        accepted=f"`{ALL_PROCESSES}` or 1 .. N")
    weights: str = option(
        "DEFAULT", "Pretrained weights", "torchvision ImageNet weights to start from (none: from scratch).",
        choices=weight_choices, depends_on="model_name", group=ADVANCED)
    input_size: int = option(
        224, "Input size", "Crop size in pixels of the training images (and of inference on this model).",
        low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, group=ADVANCED)
    optimizer: str = option("sgd", "Optimizer", "sgd (Nesterov momentum) or adamw.", choices=OPTIMIZERS, group=ADVANCED)
    momentum: float = option(0.9, "Momentum", "SGD momentum (0 = plain SGD).", low=0.0, high=0.999, group=ADVANCED)
    weight_decay: float = option(
        1e-4, "Weight decay", "L2 penalty on weights (not on norms and biases).", low=0.0, high=1.0, decimals=6, group=ADVANCED)
    warmup_epochs: float = option(
        1.0, "Warmup epochs", "Epochs of linear learning-rate warmup.", low=0.0, high=1000.0, decimals=2, group=ADVANCED)
    label_smoothing: float = option(
        0.1, "Label smoothing", "Share of the target spread over the other classes.", low=0.0, high=0.99, decimals=2, group=ADVANCED)
    class_balance: str = option(
        "none", "Class balance", "For imbalanced datasets: weighted_loss weighs each class's loss by its inverse "
        "frequency; balanced_sampling draws each epoch's images (with replacement) so every class comes about "
        "equally often.", choices=CLASS_BALANCES, group=ADVANCED)
    min_crop_scale: float = option(
        0.25, "Smallest random crop", "Smallest random crop, as a fraction of the image area.",
        low=0.01, high=1.0, decimals=2, group=ADVANCED)
    hflip: bool = option(True, "Random horizontal flip", "Mirror training images at random (off for digits, text, left/right).", group=ADVANCED)
    augment: str = option(
        "none", "Augmentation policy", "torchvision's TrivialAugment, RandAugment or AugMix on every training image, "
        "after the crop: more variety for small datasets; their rotations and shears can change a class where "
        "orientation matters (digits, text).", choices=AUGMENTATIONS, group=ADVANCED)
    random_erasing: float = option(
        0.0, "Random erasing", "Probability of blanking a random rectangle of a training image (0 = never): "
        "robustness to occlusion.", low=0.0, high=1.0, decimals=2, group=ADVANCED)
    mixup: float = option(
        0.0, "Mixup alpha", "Blend pairs of training images and their labels (Beta(alpha, alpha) weights; 0 = off, "
        "0.2 the usual): soft targets, a smoother model; needs more epochs to pay.", low=0.0, high=10.0, decimals=2,
        group=ADVANCED)
    cutmix: float = option(
        0.0, "CutMix alpha", "Paste a patch of one training image into another, labels mixed by area (0 = off, 1.0 the "
        "usual); with mixup too, each batch takes one of the two.", low=0.0, high=10.0, decimals=2, group=ADVANCED)
    ema: float = option(
        0.0, "EMA decay", "Keep an exponential moving average of the weights (e.g. 0.999; 0 = off): validated, and "
        "saved as best.pth, instead of the last step's weights; warmed up over the first steps.",
        low=0.0, high=0.99999, decimals=5, group=ADVANCED)
    backbone_lr_factor: float = option(
        1.0, "Backbone learning-rate factor", "Fine-tuning: the pretrained layers learn at learning_rate times this, "
        "the new classifier at learning_rate (e.g. 0.1 keeps ImageNet features from being washed out).",
        low=0.0, high=1.0, decimals=3, group=ADVANCED)
    accumulation_steps: int = option(
        1, "Gradient accumulation", "Batches whose gradients add up before each optimizer step: a step sees "
        "batch_size x this images, a global batch larger than memory holds.", low=1, high=1024, group=ADVANCED)
    val_split: float = option(
        0.2, "Validation split", "Share of each class held out for validation when the folder has no val/.",
        low=0.0, high=0.9, decimals=2, group=ADVANCED)
    unreadable_limit: float = option(
        0.1, "Unreadable images allowed", "Images that cannot be decoded (truncated, empty, not images) are skipped "
        "and listed in skipped_files.txt; past this share of the dataset the run stops with an error instead.",
        low=0.0, high=1.0, decimals=3, group=ADVANCED)
    seed: int = option(0, "Seed", "Seed of the split, the batch order and the initial weights.", low=0, high=2**31 - 1, group=ADVANCED)
    num_workers: int | None = option(
        None, "Data workers", "Processes decoding images, kept for the whole run (0 = in the training process); "
        "auto: 0 on the CPU, where the training step needs every core; "
        f"on CUDA, the cores per process less one, up to {MAX_AUTO_WORKERS}.",
        kind=SIZE, low=0, high=64, group=ADVANCED)
    amp: bool = option(True, "Mixed precision", "bf16/fp16 autocast where the hardware runs it natively.", group=ADVANCED)
    gpus: str = option(
        "", "GPUs", "CUDA indices the processes use, separated by commas (empty: every visible GPU).",
        kind=TEXT, parse_with=parse_gpus, accepted="e.g. `0,1`; empty = all", group=ADVANCED)
    sync_batchnorm: bool = option(
        False, "Sync BatchNorm", "With several processes, BatchNorm statistics over the whole batch instead of "
        "each process's share (slower; helps small per-GPU batches). CUDA only.", group=ADVANCED)
    patience: int = option(0, "Early-stop patience", "Epochs without improvement before stopping (0 = never).", low=0, high=100_000, group=ADVANCED)
    export_pth: bool = option(True, "Export best.pth", "Keep the best epoch's checkpoint (last.pth is always kept).", group=ADVANCED)
    export_onnx: bool = option(False, "Export ONNX", "Also write model.onnx of the best epoch.", group=ADVANCED)
    output_folder: str = option(
        "", "Output folder", "Where run folders go (empty: Ikomia's data folder).", kind=FOLDER, group=ADVANCED)
    resume: str = option(
        "", "Resume from", "A last.pth or best.pth to continue from.", kind=FILE, file_filter="PyTorch checkpoint (*.pth)", group=ADVANCED)
    run_name: str = option("", "Run name", "Name of the run folder (empty: date and time).", group=ADVANCED)
    test_folder: str = option(
        "", "Test folder", "A labelled folder (<class>/ or val/<class>/) or label file the best checkpoint is scored on "
        "once training ends, by python -m resnext_core.evaluate's own code: the run folder's test/ gets evaluation.json "
        "and its pictures, MLflow the test metrics. Empty: none.", kind=FOLDER, group=ADVANCED)

    def __post_init__(self) -> None:
        """Checked once, as the config is made (parsed from the stored strings, or built in code); read-only after."""
        object.__setattr__(self, "model_name", resolve_model_name(self.model_name))
        for name, choices in (("train_mode", TRAIN_MODES), ("optimizer", OPTIMIZERS), ("class_balance", CLASS_BALANCES),
                              ("augment", AUGMENTATIONS), ("multi_label", MULTI_LABEL_CHOICES)):
            if getattr(self, name) not in choices:  # a config built in code skips the schema's parsing
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got '{getattr(self, name)}'")
        if self.pretrained:
            resolve_weights(self.model_name, self.weights)
        elif self.train_mode == "feature_extract":
            raise ConfigError("train_mode 'feature_extract' needs pretrained weights (weights is 'none')")

    @property
    def multi_label_setting(self):
        """multi_label as the dataset readers take it: "auto", True or False."""
        return {"true": True, "false": False}.get(self.multi_label.lower(), "auto")

    @property
    def pretrained(self) -> bool:
        return self.train_mode != "scratch" and str(self.weights).strip().lower() not in NO_WEIGHTS


# The public plugin's booleans, mapped onto train_mode and weights.
LEGACY = [
    Legacy(
        "feature_extract", BOOL,
        read=lambda config: config.train_mode == "feature_extract",
        write=lambda on: {"train_mode": "feature_extract" if on else "fine_tune"},
        help="legacy: `True` = `train_mode` `feature_extract`",
    ),
    Legacy(
        "use_pretrained", BOOL,
        read=lambda config: config.pretrained,
        write=lambda on: {"train_mode": "fine_tune", "weights": "DEFAULT"} if on else {"train_mode": "scratch"},
        help="legacy: `False` = `train_mode` `scratch`",
    ),
]
TRAIN_SCHEMA = Schema(TrainConfig, legacy=LEGACY)
