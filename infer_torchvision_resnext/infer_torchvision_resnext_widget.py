"""STUDIO widget of infer_torchvision_resnext: every parameter editable (PyQt6, as ikomia 0.16 uses)."""
import torch
from ikomia import core, dataprocess
from ikomia.utils import pyqtutils, qtconversion
from PyQt6.QtWidgets import QFileDialog, QGridLayout

from .infer_torchvision_resnext_process import DATASETS, MAX_TOP_K, InferResNeXtParam
from .resnext_core.models import MODEL_NAMES, weight_names
from .resnext_core.preprocess import MAX_INPUT_SIZE
from .resnext_core.widget_helpers import number_or, refill, select, select_model
from .resnext_core.runtime import DEVICES, PRECISIONS

AUTO_SIZE = 0  # spin box value shown as "auto": the weights' or checkpoint's own input size






class InferResNeXtWidget(core.CWorkflowTaskWidget):
    def __init__(self, param, parent):
        core.CWorkflowTaskWidget.__init__(self, parent)
        self.parameters = InferResNeXtParam() if param is None else param
        values = self.parameters.get_values()
        grid = QGridLayout()

        self.combo_model = pyqtutils.append_combo(grid, "Model")
        self.combo_model.addItems(MODEL_NAMES)
        select_model(self.combo_model, values["model_name"])
        self.combo_weights = pyqtutils.append_combo(grid, "ImageNet weights")
        self._fill_weights(values["weights"])
        self.combo_model.currentTextChanged.connect(lambda _: self._fill_weights(self.combo_weights.currentText()))

        self.spin_size = pyqtutils.append_spin(grid, "Input size", number_or(values["input_size"], int, AUTO_SIZE), AUTO_SIZE, MAX_INPUT_SIZE)
        self.spin_size.setSpecialValueText("auto")

        self.combo_dataset = pyqtutils.append_combo(grid, "Trained on")
        self.combo_dataset.addItems(DATASETS)
        select(self.combo_dataset, values["dataset"])
        self.browse_weights = pyqtutils.append_browse_file(
            grid, "Custom weight file", values["model_weight_file"], "PyTorch checkpoint (*.pth *.pt)"
        )
        self.browse_classes = pyqtutils.append_browse_file(
            grid, "Class file (optional)", values["class_file"], "Text file (*.txt)"
        )
        self.spin_top_k = pyqtutils.append_spin(grid, "Labels drawn (top-k)", number_or(values["top_k"], int, 5), 0, MAX_TOP_K)

        self.combo_device = pyqtutils.append_combo(grid, "Device")
        self.combo_device.addItems(list(DEVICES) + [f"cuda:{i}" for i in range(torch.cuda.device_count())])
        select(self.combo_device, values["device"])
        self.combo_precision = pyqtutils.append_combo(grid, "Precision")
        self.combo_precision.addItems(PRECISIONS)
        select(self.combo_precision, values["precision"])
        self.browse_calibration = pyqtutils.append_browse_file(
            grid, "int8 calibration images", values["calibration_folder"], mode=QFileDialog.FileMode.Directory
        )

        self.set_layout(qtconversion.PyQtToQt(grid))

    def _fill_weights(self, current):
        refill(self.combo_weights, weight_names(self.combo_model.currentText()), current)

    def current_values(self) -> dict:
        size = self.spin_size.value()
        return {
            "model_name": self.combo_model.currentText(),
            "weights": self.combo_weights.currentText(),
            "input_size": "auto" if size == AUTO_SIZE else str(size),
            "dataset": self.combo_dataset.currentText(),
            "model_weight_file": self.browse_weights.qedit_file.text().strip(),
            "class_file": self.browse_classes.qedit_file.text().strip(),
            "top_k": str(self.spin_top_k.value()),
            "device": self.combo_device.currentText(),
            "precision": self.combo_precision.currentText(),
            "calibration_folder": self.browse_calibration.qedit_file.text().strip(),
        }

    def on_apply(self):
        self.parameters.set_values(self.current_values())
        self.emit_apply(self.parameters)


class InferResNeXtWidgetFactory(dataprocess.CWidgetFactory):
    def __init__(self):
        dataprocess.CWidgetFactory.__init__(self)
        self.name = "infer_torchvision_resnext"

    def create(self, param):
        return InferResNeXtWidget(param, None)
