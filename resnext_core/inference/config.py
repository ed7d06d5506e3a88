"""The inference configuration: every parameter of infer_torchvision_resnext declared once (default, range,
label, help), typed. The plugin's Param and panel, its README table, the bulk prediction and evaluation
commands' flags and load_classifier() all take it as it is, under the names the user sees.

A field declared with defines_model=True names the model: another value loads another model (it is part of
the model cache's key, classifier.model_key); the others only change what is done with its outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import ConfigError
from ..common.models import DEFAULT_MODEL, MODEL_NAMES, offered_weights, resolve_model_name
from ..common.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from ..common.runtime import PRECISIONS, device_option
from ..common.schema import ADVANCED, AUTO_NUMBER, FILE, FOLDER, SIZE, Schema, alias, option
from ..common.temperature import TEMPERATURE_RANGE
from .engines import ENGINES
from .explain import EXPLAIN_METHODS, NO_EXPLANATION

DATASETS = ("ImageNet", "Custom")


@dataclass(frozen=True)
class InferConfig:
    model_name: str = option(
        DEFAULT_MODEL, "Model", "ResNeXt variant; aliases resnext50, resnext101 (= 32x8d). A weight file decides it itself.",
        choices=MODEL_NAMES, parse_with=resolve_model_name, defines_model=True)
    weights: str = option(
        "DEFAULT", "ImageNet weights", "torchvision weights: DEFAULT is the best (V2, or V1 for 64x4d).",
        choices=lambda values: offered_weights(values["model_name"]), depends_on="model_name", defines_model=True)
    model_weight_file: str = option(
        "", "Custom weight file", "A train_torchvision_resnext checkpoint, or a plain state-dict .pth with class_file.",
        kind=FILE, file_filter="PyTorch checkpoint (*.pth *.pt)", defines_model=True)
    class_file: str = option(
        "", "Class file", "One class name a line; overrides the checkpoint's names (same count).",
        kind=FILE, file_filter="Text file (*.txt)", defines_model=True)
    top_k: int = option(5, "Labels drawn (top-k)", "Labels drawn on the image (0 = none); results hold every class.", low=0, high=1000)
    threshold: float | None = option(
        None, "Label threshold", "Multi-label models: a class is one of the image's labels from this confidence on "
        "(auto: each class's own, tuned on its run's validation images); the labels drawn are those, top_k at most.",
        kind=AUTO_NUMBER, low=0.0, high=1.0, decimals=3)
    explain: str = option(
        NO_EXPLANATION, "Explanation heatmap", "Where the top-1 class's evidence lies (class activation map), "
        "on image output 4; none: no map, no cost. eigencam is class-agnostic.", choices=EXPLAIN_METHODS)
    input_size: int = option(
        None, "Input size", "Crop size in pixels; auto = the weights' or checkpoint's own.",
        kind=SIZE, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, group=ADVANCED, defines_model=True)
    device: str = device_option(group=ADVANCED, defines_model=True)
    precision: str = option(
        "auto", "Precision", "auto: bf16 where the hardware runs it natively, else fp32; int8: CPU (OpenVINO), quantized "
        "with a sample of images (quantization_folder).",
        choices=PRECISIONS, group=ADVANCED, defines_model=True)
    engine: str = option(
        "auto", "Engine", "auto: OpenVINO on the CPU (converted once, cached on disk), torch elsewhere; "
        "openvino: fp32, int8, and bf16 on CPUs with AVX512-BF16 or AMX; onnxruntime: ONNX Runtime for fp32 on the "
        "CPU; torch: always torch.", choices=ENGINES, group=ADVANCED, defines_model=True)
    calibrated_confidence: bool = option(
        True, "Calibrated confidences", "Divide the logits by the temperature fitted on a trained checkpoint's "
        "validation images (else by temperature), so that 0.9 means right about 9 times in 10.", group=ADVANCED)
    temperature: float = option(
        1.0, "Temperature", "Used where the weights carry no fitted temperature (ImageNet weights, plain state dicts).",
        low=TEMPERATURE_RANGE[0], high=TEMPERATURE_RANGE[1], decimals=3, group=ADVANCED)
    tta: bool = option(
        False, "Test-time augmentation", "Average over the image and its mirror: twice the compute; wrong where "
        "mirroring changes the class (digits, text).", group=ADVANCED)
    quantization_folder: str = option(
        "", "int8 quantization images", "Images like those to classify; used by precision int8 only. Not needed for "
        "a checkpoint of a training run: it uses the run's quantization_sample.npy.", kind=FOLDER, group=ADVANCED,
        defines_model=True)
    dataset: str = option(
        "ImageNet", "Trained on", "The public plugin's switch: Custom requires a weight file.", choices=DATASETS, group=ADVANCED)

    def __post_init__(self) -> None:
        """Checked once, as the config is made (a config built in code skips the parsing: names checked here);
        read-only after."""
        object.__setattr__(self, "model_name", resolve_model_name(self.model_name))
        if self.dataset == "Custom" and not self.model_weight_file:
            raise ConfigError("dataset is 'Custom' but no model_weight_file was given")


# model_path: the public plugin's name of model_weight_file.
INFER_SCHEMA = Schema(InferConfig, legacy=[alias("model_path", "model_weight_file"),
                                            alias("calibration_folder", "quantization_folder")])
