"""infer_torchvision_resnext: its parameters (declared once), Param, task and factory, thin adapters over resnext_core."""
import copy
from dataclasses import dataclass

import numpy as np

from ikomia import core, dataprocess

from .resnext_core import load_classifier
from .resnext_core.calibration import TEMPERATURE_RANGE
from .resnext_core.drawing import draw_labels, format_label
from .resnext_core.errors import ConfigError
from .resnext_core.explain import EXPLAIN_METHODS, NO_EXPLANATION, explain, render
from .resnext_core.models import DEFAULT_MODEL, MODEL_NAMES, offered_weights, resolve_model_name
from .resnext_core.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE, region_box
from .resnext_core.runtime import ENGINES, PRECISIONS, device_option
from .resnext_core.schema import ADVANCED, FILE, FOLDER, SIZE, Schema, alias, option
from .resnext_ikomia.metadata import KEYWORDS, fill_info
from .resnext_ikomia.param import SchemaParam

DATASETS = ("ImageNet", "Custom")
# CClassificationTask's outputs are 0 the labelled image, 1 the region results, 2 graphics, 3 the result
# table; ours comes after them, present even when empty: a workflow's connections do not move with `explain`.
EXPLANATION_OUTPUT = 4


@dataclass
class InferConfig:
    model_name: str = option(
        DEFAULT_MODEL, "Model", "ResNeXt variant; aliases resnext50, resnext101 (= 32x8d). A weight file decides it itself.",
        choices=MODEL_NAMES, parse_with=resolve_model_name)
    weights: str = option(
        "DEFAULT", "ImageNet weights", "torchvision weights: DEFAULT is the best (V2, or V1 for 64x4d).",
        choices=lambda values: offered_weights(values["model_name"]), depends_on="model_name")
    model_weight_file: str = option(
        "", "Custom weight file", "A train_torchvision_resnext checkpoint, or a plain state-dict .pth with class_file.",
        kind=FILE, file_filter="PyTorch checkpoint (*.pth *.pt)")
    class_file: str = option(
        "", "Class file", "One class name a line; overrides the checkpoint's names (same count).",
        kind=FILE, file_filter="Text file (*.txt)")
    top_k: int = option(5, "Labels drawn (top-k)", "Labels drawn on the image (0 = none); results hold every class.", low=0, high=1000)
    explain: str = option(
        NO_EXPLANATION, "Explanation heatmap", "Where the top-1 class's evidence lies (class activation map), "
        "on image output 4; none: no map, no cost. eigencam is class-agnostic.", choices=EXPLAIN_METHODS)
    input_size: int = option(
        None, "Input size", "Crop size in pixels; auto = the weights' or checkpoint's own.",
        kind=SIZE, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, group=ADVANCED)
    device: str = device_option(group=ADVANCED)
    precision: str = option(
        "auto", "Precision", "auto: bf16 where the hardware runs it natively, else fp32; int8: CPU (OpenVINO), calibrated on "
        "calibration images.",
        choices=PRECISIONS, group=ADVANCED)
    engine: str = option(
        "auto", "Engine", "auto: OpenVINO on the CPU (converted once, cached on disk), torch elsewhere; "
        "openvino: fp32, int8, and bf16 on CPUs with AVX512-BF16 or AMX; onnxruntime: ONNX Runtime for fp32 on the "
        "CPU; torch: always torch.", choices=ENGINES, group=ADVANCED)
    calibrated_confidence: bool = option(
        True, "Calibrated confidences", "Divide the logits by the temperature fitted on a trained checkpoint's "
        "validation images (else by temperature), so that 0.9 means right about 9 times in 10.", group=ADVANCED)
    temperature: float = option(
        1.0, "Temperature", "Used where the weights carry no fitted temperature (ImageNet weights, plain state dicts).",
        low=TEMPERATURE_RANGE[0], high=TEMPERATURE_RANGE[1], decimals=3, group=ADVANCED)
    tta: bool = option(
        False, "Test-time augmentation", "Average over the image and its mirror: twice the compute; wrong where "
        "mirroring changes the class (digits, text).", group=ADVANCED)
    calibration_folder: str = option(
        "", "int8 calibration images", "Images like those to classify; used by precision int8 only. Not needed for "
        "a checkpoint of a training run: it uses the run's calibration_sample.npy.", kind=FOLDER, group=ADVANCED)
    dataset: str = option(
        "ImageNet", "Trained on", "The public plugin's switch: Custom requires a weight file.", choices=DATASETS, group=ADVANCED)


INFER_SCHEMA = Schema(InferConfig, legacy=[alias("model_path", "model_weight_file")])


class InferResNeXtParam(SchemaParam):
    schema = INFER_SCHEMA


def classifier_for(config: InferConfig):
    """The (cached) classifier the current parameters describe."""
    if config.dataset == "Custom" and not config.model_weight_file:
        raise ConfigError("dataset is 'Custom' but no model_weight_file was given")
    return load_classifier(
        model_name=config.model_name,
        weights=config.weights,
        weight_file=config.model_weight_file,
        class_file=config.class_file,
        device=config.device,
        precision=config.precision,
        input_size=config.input_size,
        calibration_folder=config.calibration_folder,
        engine=config.engine,
        calibrate=config.calibrated_confidence,
        temperature=config.temperature,
        mirror=config.tta,
    )


class InferResNeXt(dataprocess.CClassificationTask):
    def __init__(self, name, param):
        dataprocess.CClassificationTask.__init__(self, name)
        self.set_param_object(InferResNeXtParam() if param is None else copy.deepcopy(param))
        self.add_output(dataprocess.CImageIO(core.IODataType.IMAGE, "Explanation (top-1 class heatmap)"))

    def get_progress_steps(self):
        return 1

    def run(self):
        self.begin_task_run()
        # Results accumulate across direct run() calls otherwise (a second "Confidence" series...).
        for index in range(1, self.get_output_count()):
            self.get_output(index).clear_data()
        config = self.get_param_object().config()
        # Resolved on every run: a parameter change takes effect at once; unchanged ones hit the model cache.
        classifier = classifier_for(config)
        self.set_names(classifier.class_names)
        labelled = explained = None
        if self.is_whole_image_classification():
            labelled, explained = self._classify_whole_image(classifier, config)
        else:
            explained = self._classify_regions(classifier, config)
        self.emit_step_progress()
        self._make_input_forwardable()
        self.end_task_run()
        if labelled is not None:
            # end_task_run() forwards the input image to output 0: the labelled copy goes in after it.
            self.get_output(0).set_image(labelled)
        if explained is not None:
            self.get_output(EXPLANATION_OUTPUT).set_image(explained)

    def _make_input_forwardable(self):
        """end_task_run() forwards the input image through OpenCV, which has no float16 kernels."""
        image = self.get_input(0).get_image()
        if image.dtype == np.float16:
            self.get_input(0).set_image(image.astype(np.float32))

    def _classify_whole_image(self, classifier, config):
        """Sets the results; returns the image with the top-k labels drawn, and the explanation image or None."""
        image = self.get_input(0).get_image()
        probabilities = classifier.predict([image])[0]
        ranked = classifier.top_k(probabilities, probabilities.numel())
        self.set_whole_image_results([n for n, _ in ranked], [f"{c:.8g}" for _, c in ranked])
        # The core's label is top-1 in a fixed small font; ours is top-k, sized to the image.
        self.get_output(2).set_items([])
        labelled = draw_labels(image, [format_label(name, conf) for name, conf in ranked[:config.top_k]])
        if config.explain == NO_EXPLANATION:
            return labelled, None
        top1 = int(probabilities.argmax())
        return labelled, render(image, explain(classifier, [image], [top1], config.explain))

    def _regions(self, image):
        """[(item, box, crop), ...] of the graphics input's regions that hold pixels. Cut here: ikomia
        0.16.1's get_object_sub_image() returns the whole image whatever the region."""
        height, width = image.shape[:2]
        regions = []
        for item in self.get_input_objects():
            box = region_box(*item.get_bounding_rect(), height, width)
            if box is not None:
                left, top, right, bottom = box
                regions.append((item, box, image[top:bottom, left:right]))
        return regions

    def _classify_regions(self, classifier, config):
        """Adds each region's top-1; returns the explanation image or None."""
        image = self.get_input(0).get_image()
        regions = self._regions(image)
        if not regions:
            return None if config.explain == NO_EXPLANATION else render(image, [])
        probabilities = classifier.predict([crop for _, _, crop in regions])  # one batched forward
        confidences, indices = probabilities.max(dim=1)
        for (item, _, _), index, confidence in zip(regions, indices.tolist(), confidences.tolist()):
            self.add_object(item, index, confidence)
        if config.explain == NO_EXPLANATION:
            return None
        explanations = explain(classifier, [crop for _, _, crop in regions], indices.tolist(), config.explain,
                               boxes=[box for _, box, _ in regions])
        return render(image, explanations)


class InferResNeXtFactory(dataprocess.CTaskFactory):
    def __init__(self):
        dataprocess.CTaskFactory.__init__(self)
        info = self.info
        info.name = "infer_torchvision_resnext"
        info.short_description = "ResNeXt image classification (torchvision): ImageNet or your own trained model."
        info.description = (
            "Classifies whole images or regions of interest with torchvision's ResNeXt "
            "(resnext50_32x4d, resnext101_32x8d, resnext101_64x4d), using the ImageNet weights "
            "(IMAGENET1K_V2 by default, V1 selectable) or a checkpoint from train_torchvision_resnext. "
            "Preprocessing matches the weights' own (resize shorter side, centre crop); regions are "
            "classified in one batch; the top-k labels are drawn on the output image."
        )
        fill_info(info, keywords=f"{KEYWORDS},imagenet", algo_type=core.AlgoType.INFER)

    def create(self, param=None):
        return InferResNeXt(self.info.name, param)
