"""STUDIO widget of infer_torchvision_resnext: generated from its parameters' declarations."""
from ikomia import dataprocess

from .infer_torchvision_resnext_process import InferResNeXtParam
from .resnext_ikomia.widget import SchemaWidget


class InferResNeXtWidget(SchemaWidget):
    param_class = InferResNeXtParam


class InferResNeXtWidgetFactory(dataprocess.CWidgetFactory):
    def __init__(self):
        dataprocess.CWidgetFactory.__init__(self)
        self.name = "infer_torchvision_resnext"

    def create(self, param):
        return InferResNeXtWidget(param, None)
