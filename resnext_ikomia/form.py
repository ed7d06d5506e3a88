"""STUDIO parameter panels generated from a Schema: a control per parameter, its help as tooltip.

Essential parameters come first; the others sit in a collapsible "Advanced" section. PyQt6, as
ikomia 0.16 uses.
"""
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..resnext_core.common.errors import ConfigError
from ..resnext_core.common.schema import ADVANCED, AUTO_NUMBER, BOOL, CHOICE, FILE, FLOAT, FOLDER, INT, SIZE


def _auto_value(option):
    """The spin box value shown as "auto" for a SIZE or AUTO_NUMBER parameter: one step below its smallest number."""
    if option.kind == AUTO_NUMBER:
        return option.low - 10.0 ** -option.decimals
    return int(option.low) - 1


class PathEdit(QWidget):
    """A line edit with a browse button, for a file or a folder."""

    def __init__(self, option, text: str):
        super().__init__()
        self.option = option
        self.edit = QLineEdit(text)
        self.button = QPushButton("…")
        self.button.setFixedWidth(32)
        self.button.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit)
        layout.addWidget(self.button)

    def _browse(self):
        if self.option.kind == FOLDER:
            chosen = QFileDialog.getExistingDirectory(self, self.option.label, self.edit.text())
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self.option.label, self.edit.text(), self.option.file_filter)
        if chosen:
            self.edit.setText(chosen)

    def text(self) -> str:
        return self.edit.text().strip()


def _number_or_default(text: str, option):
    """A stored string for a spin box; a bad one shows the default (the run will explain it)."""
    try:
        value = option.parse(text)
    except ConfigError:
        value = option.default
    return _auto_value(option) if value is None else value


def _select(combo: QComboBox, text: str) -> None:
    """Show `text`; one the list does not know (typed by hand) is kept, and the run will explain it."""
    index = combo.findText(text, Qt.MatchFlag.MatchFixedString)  # case-insensitive
    if index < 0:
        combo.addItem(text)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


def _canonical(option, text: str) -> str:
    try:
        return str(option.parse(text))
    except ConfigError:
        return text


class ParameterForm(QWidget):
    """Controls for every parameter of `schema`, showing `values` (stored strings); values() reads them back."""

    def __init__(self, schema, values: dict):
        super().__init__()
        self.schema = schema
        self.controls = {}
        grid = QGridLayout(self)  # one grid: labels of every section share a column
        grid.setContentsMargins(6, 6, 6, 6)
        grid.setColumnStretch(1, 1)
        for group, options in schema.groups().items():
            collapsible = []
            if group == ADVANCED:
                grid.addWidget(self._toggle_for(collapsible, group), grid.rowCount(), 0, 1, 2, Qt.AlignmentFlag.AlignLeft)
            for option in options:
                row = grid.rowCount()
                label, control = QLabel(option.label), self._control(option, values)
                for widget in (label, control):
                    widget.setToolTip(option.help)
                control.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
                grid.addWidget(label, row, 0)
                grid.addWidget(control, row, 1)
                self.controls[option.name] = control
                collapsible += [label, control] if group == ADVANCED else []
            for widget in collapsible:
                widget.setVisible(False)
        grid.setRowStretch(grid.rowCount(), 1)
        self._connect_dependencies()

    @staticmethod
    def _toggle_for(widgets: list, title: str) -> QToolButton:
        """A button that shows or hides `widgets` (filled in by the caller)."""
        toggle = QToolButton()
        toggle.setText(title)
        toggle.setCheckable(True)
        toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toggle.setArrowType(Qt.ArrowType.RightArrow)

        def show(expanded: bool):
            for widget in widgets:
                widget.setVisible(expanded)
            toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)

        toggle.toggled.connect(show)
        return toggle

    def _control(self, option, values: dict) -> QWidget:
        text = values.get(option.name, option.format(option.default))
        if option.kind == BOOL:
            box = QCheckBox()
            box.setChecked(bool(_number_or_default(text, option)))
            return box
        if option.kind in (INT, SIZE):
            spin = QSpinBox()
            spin.setRange(_auto_value(option) if option.kind == SIZE else int(option.low), int(option.high))
            if option.kind == SIZE:
                spin.setSpecialValueText("auto")
            spin.setValue(int(_number_or_default(text, option)))
            return spin
        if option.kind in (FLOAT, AUTO_NUMBER):
            spin = QDoubleSpinBox()
            spin.setDecimals(option.decimals)
            spin.setRange(_auto_value(option) if option.kind == AUTO_NUMBER else option.low, option.high)
            if option.kind == AUTO_NUMBER:
                spin.setSpecialValueText("auto")
            spin.setSingleStep(10.0 ** -min(option.decimals, 2))
            spin.setValue(float(_number_or_default(text, option)))
            return spin
        if option.kind == CHOICE:
            combo = QComboBox()
            combo.addItems([str(c) for c in option.choices_for(values)])
            _select(combo, _canonical(option, text))
            return combo
        if option.kind in (FILE, FOLDER):
            return PathEdit(option, text)
        return QLineEdit(text)

    def _connect_dependencies(self) -> None:
        """A choice list that follows another parameter (weights follow the model) is refilled when it changes."""
        for option in self.schema:
            if option.depends_on:
                source = self.controls[option.depends_on]
                source.currentTextChanged.connect(lambda _, option=option: self._refill(option))

    def _refill(self, option) -> None:
        combo = self.controls[option.name]
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems([str(c) for c in option.choices_for(self.values())])
        combo.setCurrentIndex(max(combo.findText(current), 0))
        combo.blockSignals(False)

    def values(self) -> dict:
        """{name: stored string} as the controls show them."""
        return {name: self._text_of(self.schema[name], control) for name, control in self.controls.items()}

    @staticmethod
    def _text_of(option, control) -> str:
        if option.kind == BOOL:
            return str(control.isChecked())
        if option.kind == SIZE:
            return "auto" if control.value() == _auto_value(option) else str(control.value())
        if option.kind == INT:
            return str(control.value())
        if option.kind == AUTO_NUMBER:
            return "auto" if control.value() <= _auto_value(option) else repr(round(control.value(), option.decimals))
        if option.kind == FLOAT:
            return repr(control.value())
        if option.kind == CHOICE:
            return control.currentText()
        return control.text().strip()
