"""Ikomia plugin entry point: Ikomia imports this module and instantiates IkomiaPlugin."""
from ikomia import dataprocess


class IkomiaPlugin(dataprocess.CPluginProcessInterface):
    def __init__(self):
        dataprocess.CPluginProcessInterface.__init__(self)

    def get_process_factory(self):
        from .train_torchvision_resnext_process import TrainResNeXtFactory

        return TrainResNeXtFactory()

    def get_widget_factory(self):
        from .train_torchvision_resnext_widget import TrainResNeXtWidgetFactory

        return TrainResNeXtWidgetFactory()
