"""The STUDIO widget both plugins use: a ParameterForm inside Ikomia's CWorkflowTaskWidget."""
from ikomia import core
from ikomia.utils import qtconversion
from PyQt6 import sip
from PyQt6.QtWidgets import QGridLayout

from .form import ParameterForm


class SchemaWidget(core.CWorkflowTaskWidget):
    """Every parameter of the task's Param (a SchemaParam) editable; Apply sends them to the task."""

    param_class = None  # set by each plugin

    def __init__(self, param, parent):
        core.CWorkflowTaskWidget.__init__(self, parent)
        self.parameters = self.param_class() if param is None else param
        self.form = ParameterForm(self.parameters.schema, self.parameters.values)
        layout = QGridLayout()
        layout.addWidget(self.form, 0, 0)
        self.set_layout(qtconversion.PyQtToQt(layout))
        # set_layout() takes a bare pointer: PyQt still owns the layout and deletes it when __init__
        # returns, which drops every control to the panel's top-left corner, on top of each other.
        sip.transferto(layout, None)

    def panel(self):
        """The PyQt handle of the whole panel (Ikomia's C++ widget: scroll area, Apply button)."""
        widget = self.form
        while widget is not None and not widget.inherits("CWorkflowTaskWidget"):
            widget = widget.parentWidget()
        return widget

    def current_values(self) -> dict:
        return self.form.values()

    def on_apply(self):
        self.parameters.set_values(self.current_values())
        self.emit_apply(self.parameters)
