"""infer_torchvision_resnext: Param, task and factory, thin adapters over resnext_core.inference.

Its parameters are declared once, in resnext_core.inference.config.InferConfig (with the public plugin's names).
"""
import copy
import logging

import numpy as np

from ikomia import core, dataprocess

from .resnext_core.common.errors import ResNeXtError
from .resnext_core.common.preprocess import region_box
from .resnext_core.inference.classifier import HeldClassifier
from .resnext_core.inference.config import INFER_SCHEMA
from .resnext_core.inference.drawing import draw_labels, format_label
from .resnext_core.inference.explain import NO_EXPLANATION, explain, render
from .resnext_ikomia.metadata import KEYWORDS, fill_info
from .resnext_ikomia.param import SchemaParam

# CClassificationTask's outputs are 0 the labelled image, 1 the region results, 2 graphics, 3 the result
# table; ours comes after them, present even when empty: a workflow's connections do not move with `explain`.
EXPLANATION_OUTPUT = 4
LOGGER = logging.getLogger("ikomia.infer_torchvision_resnext")  # a child of Ikomia's: STUDIO's log


class InferResNeXtParam(SchemaParam):
    schema = INFER_SCHEMA


class InferResNeXt(dataprocess.CClassificationTask):
    def __init__(self, name, param):
        dataprocess.CClassificationTask.__init__(self, name)
        self.set_param_object(InferResNeXtParam() if param is None else copy.deepcopy(param))
        self.add_output(dataprocess.CImageIO(core.IODataType.IMAGE, "Explanation (top-1 class heatmap)"))
        self._names = None  # the class names last given to Ikomia (a cached model keeps its list object)
        self._classifier = HeldClassifier()

    def get_progress_steps(self):
        return 1

    def init_long_process(self):
        """STUDIO calls it as the task is added to a workflow: the model loads (its engine compiled or read from the
        cache) then, instead of at the first image. Parameters not usable yet (a weight file still to choose) leave
        it to the first run, which reports them."""
        try:
            self._classifier.get(self.get_param_object().config())
        except ResNeXtError as exc:
            LOGGER.info(f"infer_torchvision_resnext: the model loads at the first run ({exc})")
        super().init_long_process()

    def run(self):
        self.begin_task_run()
        # Results accumulate across direct run() calls otherwise (a second "Confidence" series...).
        for index in range(1, self.get_output_count()):
            self.get_output(index).clear_data()
        config = self.get_param_object().config()
        # Saved only when it holds a map: with outputs saved (run_on(folder=...)), the video writer fails on an
        # empty image output and stopped a video after its first frame.
        self.get_output(EXPLANATION_OUTPUT).auto_save = config.explain != NO_EXPLANATION
        # A parameter changed, or a file rewritten, takes effect at once; unchanged, the last run's classifier serves.
        classifier = self._classifier.get(config)
        if classifier.class_names is not self._names:  # 1000 names cross into C++ only when they change
            self.set_names(classifier.class_names)
            self._names = classifier.class_names
        image = self.get_input(0).get_image()  # a copy out of Ikomia: taken once
        if self.is_whole_image_classification():
            labelled, explained = self._classify_whole_image(classifier, config, image)
        else:
            labelled, explained = self._classify_regions(classifier, config, image)
        self.emit_step_progress()
        self._make_input_forwardable(image)
        self.end_task_run()
        if labelled is not None:
            # end_task_run() forwards the input image to output 0: the labelled copy goes in after it.
            self.get_output(0).set_image(labelled)
        if explained is not None:
            self.get_output(EXPLANATION_OUTPUT).set_image(explained)

    def _make_input_forwardable(self, image):
        """end_task_run() forwards the input image through OpenCV, which has no float16 kernels."""
        if image.dtype == np.float16:
            self.get_input(0).set_image(image.astype(np.float32))

    def _classify_whole_image(self, classifier, config, image):
        """Sets the results; returns the image with the top-k labels drawn, and the explanation image or None."""
        probabilities = classifier.predict([image])[0]
        confidences, order = probabilities.sort(descending=True, stable=True)  # every class, best first: its table
        names = classifier.class_names
        self.set_whole_image_results([names[i] for i in order.tolist()], list(map("{:.8g}".format, confidences.tolist())))
        # The core's label is top-1 in a fixed small font; ours is the image's labels (its top-k, or a multi-label
        # model's classes above their thresholds, top_k at most), sized to the image.
        self.get_output(2).set_items([])
        labels = classifier.labels(probabilities, config.top_k) if config.top_k else []
        labelled = draw_labels(image, [format_label(name, conf) for name, conf in labels])
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

    def _classify_regions(self, classifier, config, image):
        """Adds each region's top-1 (Ikomia keeps one class a region); returns the image with a multi-label model's
        labels of each region drawn in it (or None: Ikomia draws the regions' classes), and the explanation image
        or None."""
        regions = self._regions(image)
        if not regions:
            return None, None if config.explain == NO_EXPLANATION else render(image, [])
        probabilities = classifier.predict([crop for _, _, crop in regions])  # one batched forward
        confidences, indices = probabilities.max(dim=1)
        for (item, _, _), index, confidence in zip(regions, indices.tolist(), confidences.tolist()):
            self.add_object(item, index, confidence)
        labelled = None
        if classifier.multi_label and config.top_k:  # every label of each region, inside its box
            lines = [[format_label(name, conf) for name, conf in classifier.labels(row, config.top_k)] for row in probabilities]
            labelled = draw_labels(image, lines, boxes=[box for _, box, _ in regions])
        if config.explain == NO_EXPLANATION:
            return labelled, None
        explanations = explain(classifier, [crop for _, _, crop in regions], indices.tolist(), config.explain,
                               boxes=[box for _, box, _ in regions])
        return labelled, render(image, explanations)


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
