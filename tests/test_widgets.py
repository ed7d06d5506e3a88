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
    assert out["restored"] == ["resnext101_32x8d", 3, 256]
    assert out["models"] == ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]
    assert out["weights_64x4d"] == ["DEFAULT", "IMAGENET1K_V1"]
    assert out["size_text"] == "auto"
    applied = out["applied"]
    assert applied["model_name"] == "resnext50_32x4d" and applied["weights"] == "IMAGENET1K_V1"
    assert applied["input_size"] == "auto" and applied["top_k"] == "7"
    assert applied["device"] == "cpu" and applied["precision"] == "fp32" and applied["dataset"] == "Custom"
    assert applied["model_weight_file"] == "/data/best.pth" and applied["model_path"] == "/data/best.pth"
    assert applied["class_file"] == "/data/classes.txt"
