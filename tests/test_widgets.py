"""STUDIO widgets, headless (QT_QPA_PLATFORM=offscreen) in a subprocess: a Qt abort cannot kill pytest."""
import json

import pytest

from conftest import run_python

INFER_WIDGET = r"""
import json, sys
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from ikomia.dataprocess.workflow import Workflow
wf = Workflow()
task = wf.add_task(name="infer_torchvision_resnext")
task.set_parameters({"model_name": "resnext101", "top_k": "3", "input_size": "256"})
from infer_torchvision_resnext.infer_torchvision_resnext_widget import InferResNeXtWidgetFactory
widget = InferResNeXtWidgetFactory().create(task.get_param_object())
out = {"restored": [widget.combo_model.currentText(), widget.spin_top_k.value(), widget.spin_size.value()],
       "models": [widget.combo_model.itemText(i) for i in range(widget.combo_model.count())]}
widget.combo_model.setCurrentText("resnext101_64x4d")
out["weights_64x4d"] = [widget.combo_weights.itemText(i) for i in range(widget.combo_weights.count())]
widget.combo_model.setCurrentText("resnext50_32x4d")
widget.combo_weights.setCurrentText("IMAGENET1K_V1")
widget.spin_size.setValue(0)
widget.spin_top_k.setValue(7)
widget.combo_device.setCurrentText("cpu")
widget.combo_precision.setCurrentText("fp32")
widget.combo_dataset.setCurrentText("Custom")
widget.browse_weights.qedit_file.setText("/data/best.pth")
widget.browse_classes.qedit_file.setText("/data/classes.txt")
widget.browse_calibration.qedit_file.setText("/data/calibration")
out["controls"] = sorted(widget.current_values())
out["defaults"] = sorted(sys.modules["infer_torchvision_resnext.infer_torchvision_resnext_process"].DEFAULTS)
widget.on_apply()
out["size_text"] = widget.spin_size.text()
out["applied"] = task.get_parameters()
print("RESULT" + json.dumps(out))
"""


def _result(code):
    completed = run_python(code)
    lines = [l for l in completed.stdout.splitlines() if l.startswith("RESULT")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def test_infer_widget_restores_edits_and_applies():
    out = _result(INFER_WIDGET)
    assert out["controls"] == out["defaults"], "every parameter has a control"
    assert out["restored"] == ["resnext101_32x8d", 3, 256]
    assert out["models"] == ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]
    assert out["weights_64x4d"] == ["DEFAULT", "IMAGENET1K_V1"]
    assert out["size_text"] == "auto"
    applied = out["applied"]
    assert applied["model_name"] == "resnext50_32x4d" and applied["weights"] == "IMAGENET1K_V1"
    assert applied["input_size"] == "auto" and applied["top_k"] == "7"
    assert applied["device"] == "cpu" and applied["precision"] == "fp32" and applied["dataset"] == "Custom"
    assert applied["model_weight_file"] == "/data/best.pth" and applied["model_path"] == "/data/best.pth"
    assert applied["class_file"] == "/data/classes.txt" and applied["calibration_folder"] == "/data/calibration"


TRAIN_WIDGET = r"""
import json
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from ikomia.dataprocess.workflow import Workflow
task = Workflow().add_task(name="train_torchvision_resnext")
task.set_parameters({"model_name": "resnext101_64x4d", "epochs": "3", "learning_rate": "0.02", "amp": "False", "hflip": "False"})
from train_torchvision_resnext.train_torchvision_resnext_widget import TrainResNeXtWidgetFactory
widget = TrainResNeXtWidgetFactory().create(task.get_param_object())
out = {"restored": [widget.combo_model.currentText(), widget.spin_epochs.value(), widget.spin_lr.value(),
                    widget.check_amp.isChecked(), widget.check_hflip.isChecked()],
       "weights": [widget.combo_weights.itemText(i) for i in range(widget.combo_weights.count())]}
widget.combo_model.setCurrentText("resnext50_32x4d")
widget.combo_weights.setCurrentText("none")
widget.combo_mode.setCurrentText("scratch")
widget.combo_optimizer.setCurrentText("adamw")
widget.spin_size.setValue(64)
widget.spin_batch.setValue(16)
widget.spin_decay.setValue(0.05)
widget.spin_crop_scale.setValue(0.6)
widget.spin_patience.setValue(2)
widget.check_onnx.setChecked(True)
widget.browse_dataset.qedit_file.setText("/data/digits")
widget.browse_output.qedit_file.setText("/data/runs")
widget.edit_run_name.setText("exp1")
out["controls"] = sorted(widget.current_values())
import sys
out["defaults"] = sorted(sys.modules["train_torchvision_resnext.train_torchvision_resnext_process"].DEFAULTS)
widget.on_apply()
out["applied"] = task.get_parameters()
print("RESULT" + json.dumps(out))
"""


def test_train_widget_restores_edits_and_applies():
    out = _result(TRAIN_WIDGET)
    assert out["controls"] == out["defaults"], "every parameter has a control"
    assert out["restored"] == ["resnext101_64x4d", 3, pytest.approx(0.02), False, False]
    assert out["weights"] == ["DEFAULT", "IMAGENET1K_V1", "none"]
    applied = out["applied"]
    expected = {"model_name": "resnext50_32x4d", "weights": "none", "train_mode": "scratch", "optimizer": "adamw",
                "input_size": "64", "batch_size": "16", "patience": "2", "export_onnx": "True",
                "dataset_folder": "/data/digits", "output_folder": "/data/runs", "run_name": "exp1",
                "use_pretrained": "False", "feature_extract": "False", "amp": "False", "hflip": "False"}
    assert {k: applied[k] for k in expected} == expected
    assert float(applied["weight_decay"]) == pytest.approx(0.05) and float(applied["min_crop_scale"]) == pytest.approx(0.6)
