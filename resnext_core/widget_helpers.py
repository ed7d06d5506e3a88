"""Helpers both STUDIO widgets share. Duck-typed on QComboBox's methods: this module imports no Qt."""
from .errors import ConfigError
from .models import resolve_model_name


def select(combo, value) -> None:
    """Show `value`; one the list does not know (typed by hand) is kept, and the run will explain it."""
    index = combo.findText(str(value))
    if index < 0:
        combo.addItem(str(value))
        index = combo.count() - 1
    combo.setCurrentIndex(index)


def refill(combo, items, current) -> None:
    """Replace the items, keeping `current` if still offered (else the first), without emitting signals."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(items))
    combo.setCurrentIndex(max(combo.findText(current), 0))
    combo.blockSignals(False)


def number_or(value, cast, fallback):
    """A stored string as a number for a spin box; a bad one shows the default (the run explains it)."""
    try:
        return cast(str(value))
    except ValueError:
        return fallback


def select_model(combo, name) -> None:
    """Show a model name or alias as its canonical name."""
    try:
        select(combo, resolve_model_name(name))
    except ConfigError:
        select(combo, name)
