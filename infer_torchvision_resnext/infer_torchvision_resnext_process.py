"""infer_torchvision_resnext: Param, task and factory, thin adapters over resnext_core."""
import copy

import numpy as np

from ikomia import core, dataprocess

from .resnext_core import load_classifier
from .resnext_core.metadata import KEYWORDS, fill_info
from .resnext_core.drawing import draw_labels, format_label
from .resnext_core.errors import ConfigError
from .resnext_core.models import DEFAULT_MODEL
from .resnext_core.params import ParamValues, alias, parse_choice, parse_int
from .resnext_core.preprocess import parse_input_size

DEFAULTS = {
    "model_name": DEFAULT_MODEL,
    "weights": "DEFAULT",
    "input_size": "auto",
    "model_weight_file": "",
    "class_file": "",
    "top_k": "5",
    "device": "auto",
    "precision": "auto",
    "calibration_folder": "",
    "dataset": "ImageNet",
}
# The public plugin's name for the weight file.
LEGACY = {"model_path": alias("model_weight_file")}
DATASETS = ("ImageNet", "Custom")
MAX_TOP_K = 1000


class InferResNeXtParam(core.CWorkflowTaskParam):
    """All values are strings, as Ikomia stores them; they are validated when the task runs."""

    def __init__(self):
        core.CWorkflowTaskParam.__init__(self)
        self.values = ParamValues(DEFAULTS, LEGACY)

    def set_values(self, params):
        self.values.update(params)

    def get_values(self):
        return self.values.as_dict()


def classifier_for(values: ParamValues):
    """The (cached) classifier the current parameters describe."""
    weight_file = values["model_weight_file"].strip()
    if parse_choice(values, "dataset", DATASETS) == "Custom" and not weight_file:
        raise ConfigError("dataset is 'Custom' but no model_weight_file was given")
    return load_classifier(
        model_name=values["model_name"],
        weights=values["weights"],
        weight_file=weight_file,
        class_file=values["class_file"].strip(),
        device=values["device"],
        precision=values["precision"],
        input_size=parse_input_size(values["input_size"]),
        calibration_folder=values["calibration_folder"].strip(),
    )


class InferResNeXt(dataprocess.CClassificationTask):
    def __init__(self, name, param):
        dataprocess.CClassificationTask.__init__(self, name)
        self.set_param_object(InferResNeXtParam() if param is None else copy.deepcopy(param))

    def get_progress_steps(self):
        return 1

    def run(self):
        self.begin_task_run()
        # Results accumulate across direct run() calls otherwise (a second "Confidence" series...).
        for index in range(1, self.get_output_count()):
            self.get_output(index).clear_data()
        values = self.get_param_object().values
        top_k = parse_int(values, "top_k", 0, MAX_TOP_K)
        # Resolved on every run: a parameter change takes effect at once; unchanged ones hit the model cache.
        classifier = classifier_for(values)
        self.set_names(classifier.class_names)
        labelled = None
        if self.is_whole_image_classification():
            labelled = self._classify_whole_image(classifier, top_k)
        else:
            self._classify_regions(classifier)
        self.emit_step_progress()
        self._make_input_forwardable()
        self.end_task_run()
        if labelled is not None:
            # end_task_run() forwards the input image to output 0: the labelled copy goes in after it.
            self.get_output(0).set_image(labelled)

    def _make_input_forwardable(self):
        """end_task_run() forwards the input image through OpenCV, which has no float16 kernels."""
        image = self.get_input(0).get_image()
        if image.dtype == np.float16:
            self.get_input(0).set_image(image.astype(np.float32))

    def _classify_whole_image(self, classifier, top_k):
        """Sets the results; returns the image with the top-k labels drawn."""
        image = self.get_input(0).get_image()
        probabilities = classifier.predict([image])[0]
        ranked = classifier.top_k(probabilities, probabilities.numel())
        self.set_whole_image_results([n for n, _ in ranked], [f"{c:.8g}" for _, c in ranked])
        # The core's label is top-1 in a fixed small font; ours is top-k, sized to the image.
        self.get_output(2).set_items([])
        return draw_labels(image, [format_label(name, conf) for name, conf in ranked[:top_k]])

    def _classify_regions(self, classifier):
        regions = []
        for item in self.get_input_objects():
            crop = self.get_object_sub_image(item)
            if crop is not None and crop.size:
                regions.append((item, crop))
        if not regions:
            return
        probabilities = classifier.predict([crop for _, crop in regions])  # one batched forward
        confidences, indices = probabilities.max(dim=1)
        for (item, _), index, confidence in zip(regions, indices.tolist(), confidences.tolist()):
            self.add_object(item, index, confidence)


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
