"""Ikomia plugin entry point: Ikomia imports this module and instantiates IkomiaPlugin."""
from ikomia import dataprocess


class IkomiaPlugin(dataprocess.CPluginProcessInterface):
    def __init__(self):
        dataprocess.CPluginProcessInterface.__init__(self)

    def get_process_factory(self):
        from .infer_torchvision_resnext_process import InferResNeXtFactory

        return InferResNeXtFactory()

    def get_widget_factory(self):
        from .infer_torchvision_resnext_widget import InferResNeXtWidgetFactory

        return InferResNeXtWidgetFactory()
