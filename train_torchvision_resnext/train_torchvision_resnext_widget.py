"""STUDIO widget of train_torchvision_resnext: every parameter editable (PyQt6, as ikomia 0.16 uses)."""
import torch
from ikomia import core, dataprocess
from ikomia.utils import pyqtutils, qtconversion
from PyQt6.QtWidgets import QFileDialog, QGridLayout

from .resnext_core.models import MODEL_NAMES, weight_names
from .resnext_core.params import parse_bool
from .resnext_core.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from .resnext_core.widget_helpers import number_or, refill, select, select_model
from .resnext_core.runtime import DEVICES
from .resnext_core.training import OPTIMIZERS, TRAIN_MODES
from .train_torchvision_resnext_process import TrainResNeXtParam

NO_WEIGHTS_ITEM = "none"






class TrainResNeXtWidget(core.CWorkflowTaskWidget):
    def __init__(self, param, parent):
        core.CWorkflowTaskWidget.__init__(self, parent)
        self.parameters = TrainResNeXtParam() if param is None else param
        v = self.parameters.values
        grid = QGridLayout()
        folder = QFileDialog.FileMode.Directory

        self.browse_dataset = pyqtutils.append_browse_file(grid, "Dataset folder (if no input)", v["dataset_folder"], mode=folder)
        self.combo_model = pyqtutils.append_combo(grid, "Model")
        self.combo_model.addItems(MODEL_NAMES)
        select_model(self.combo_model, v["model_name"])
        self.combo_weights = pyqtutils.append_combo(grid, "Pretrained weights")
        self._fill_weights(v["weights"])
        self.combo_model.currentTextChanged.connect(lambda _: self._fill_weights(self.combo_weights.currentText()))
        self.combo_mode = pyqtutils.append_combo(grid, "Train mode")
        self.combo_mode.addItems(TRAIN_MODES)
        select(self.combo_mode, v["train_mode"])

        self.spin_size = pyqtutils.append_spin(grid, "Input size", number_or(v["input_size"], int, 224), MIN_INPUT_SIZE, MAX_INPUT_SIZE)
        self.spin_epochs = pyqtutils.append_spin(grid, "Epochs", number_or(v["epochs"], int, 15), 1, 100000)
        self.spin_batch = pyqtutils.append_spin(grid, "Batch size", number_or(v["batch_size"], int, 8), 1, 65536)
        self.combo_optimizer = pyqtutils.append_combo(grid, "Optimizer")
        self.combo_optimizer.addItems(OPTIMIZERS)
        select(self.combo_optimizer, v["optimizer"])
        self.spin_lr = pyqtutils.append_double_spin(grid, "Learning rate", number_or(v["learning_rate"], float, 1e-3), 1e-8, 10.0, 1e-4, 6)
        self.spin_momentum = pyqtutils.append_double_spin(grid, "Momentum", number_or(v["momentum"], float, 0.9), 0.0, 0.999, 0.01, 3)
        self.spin_decay = pyqtutils.append_double_spin(grid, "Weight decay", number_or(v["weight_decay"], float, 1e-4), 0.0, 1.0, 1e-5, 6)
        self.spin_warmup = pyqtutils.append_double_spin(grid, "Warmup epochs", number_or(v["warmup_epochs"], float, 1.0), 0.0, 1000.0, 0.5, 2)
        self.spin_smoothing = pyqtutils.append_double_spin(grid, "Label smoothing", number_or(v["label_smoothing"], float, 0.1), 0.0, 0.99, 0.05, 2)
        self.spin_crop_scale = pyqtutils.append_double_spin(grid, "Smallest random crop (area)", number_or(v["min_crop_scale"], float, 0.25), 0.01, 1.0, 0.05, 2)
        self.check_hflip = pyqtutils.append_check(grid, "Random horizontal flip", self._flag("hflip"))
        self.spin_val_split = pyqtutils.append_double_spin(grid, "Validation split (flat folders)", number_or(v["val_split"], float, 0.2), 0.0, 0.9, 0.05, 2)
        self.spin_seed = pyqtutils.append_spin(grid, "Seed", number_or(v["seed"], int, 0), 0, 2**31 - 1)
        self.spin_workers = pyqtutils.append_spin(grid, "Data workers", number_or(v["num_workers"], int, 0), 0, 64)
        self.spin_patience = pyqtutils.append_spin(grid, "Early-stop patience (0 = off)", number_or(v["patience"], int, 0), 0, 100000)
        self.combo_device = pyqtutils.append_combo(grid, "Device")
        self.combo_device.addItems(list(DEVICES) + [f"cuda:{i}" for i in range(torch.cuda.device_count())])
        select(self.combo_device, v["device"])
        self.check_amp = pyqtutils.append_check(grid, "Mixed precision (AMP / bf16)", self._flag("amp"))
        self.check_pth = pyqtutils.append_check(grid, "Export best.pth", self._flag("export_pth"))
        self.check_onnx = pyqtutils.append_check(grid, "Export ONNX", self._flag("export_onnx"))
        self.browse_output = pyqtutils.append_browse_file(grid, "Output folder (empty = Ikomia data)", v["output_folder"], mode=folder)
        self.browse_resume = pyqtutils.append_browse_file(grid, "Resume from checkpoint", v["resume"], "PyTorch checkpoint (*.pth)")
        self.edit_run_name = pyqtutils.append_edit(grid, "Run name (empty = date)", v["run_name"])
        self.set_layout(qtconversion.PyQtToQt(grid))

    def _flag(self, name):
        try:
            return parse_bool(self.parameters.values, name)
        except ValueError:
            return False

    def _fill_weights(self, current):
        refill(self.combo_weights, weight_names(self.combo_model.currentText()) + [NO_WEIGHTS_ITEM], current)

    def current_values(self) -> dict:
        return {
            "dataset_folder": self.browse_dataset.qedit_file.text().strip(),
            "model_name": self.combo_model.currentText(),
            "weights": self.combo_weights.currentText(),
            "train_mode": self.combo_mode.currentText(),
            "input_size": str(self.spin_size.value()),
            "epochs": str(self.spin_epochs.value()),
            "batch_size": str(self.spin_batch.value()),
            "optimizer": self.combo_optimizer.currentText(),
            "learning_rate": repr(self.spin_lr.value()),
            "momentum": repr(self.spin_momentum.value()),
            "weight_decay": repr(self.spin_decay.value()),
            "warmup_epochs": repr(self.spin_warmup.value()),
            "label_smoothing": repr(self.spin_smoothing.value()),
            "min_crop_scale": repr(self.spin_crop_scale.value()),
            "hflip": str(self.check_hflip.isChecked()),
            "val_split": repr(self.spin_val_split.value()),
            "seed": str(self.spin_seed.value()),
            "num_workers": str(self.spin_workers.value()),
            "patience": str(self.spin_patience.value()),
            "device": self.combo_device.currentText(),
            "amp": str(self.check_amp.isChecked()),
            "export_pth": str(self.check_pth.isChecked()),
            "export_onnx": str(self.check_onnx.isChecked()),
            "output_folder": self.browse_output.qedit_file.text().strip(),
            "resume": self.browse_resume.qedit_file.text().strip(),
            "run_name": self.edit_run_name.text().strip(),
        }

    def on_apply(self):
        self.parameters.set_values(self.current_values())
        self.emit_apply(self.parameters)


class TrainResNeXtWidgetFactory(dataprocess.CWidgetFactory):
    def __init__(self):
        dataprocess.CWidgetFactory.__init__(self)
        self.name = "train_torchvision_resnext"

    def create(self, param):
        return TrainResNeXtWidget(param, None)
