"""STUDIO widget of train_torchvision_resnext: generated from its parameters' declarations."""
from ikomia import dataprocess

from .train_torchvision_resnext_process import TrainResNeXtParam
from .resnext_ikomia.widget import SchemaWidget


class TrainResNeXtWidget(SchemaWidget):
    param_class = TrainResNeXtParam


class TrainResNeXtWidgetFactory(dataprocess.CWidgetFactory):
    def __init__(self):
        dataprocess.CWidgetFactory.__init__(self)
        self.name = "train_torchvision_resnext"

    def create(self, param):
        return TrainResNeXtWidget(param, None)
