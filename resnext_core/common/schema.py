"""Parameters declared once, as fields of a typed config dataclass; everything else is derived.

    @dataclass
    class Config:
        epochs: int = option(15, "Epochs", "Passes over the training images.", low=1, high=100_000)

From the declaration come: the defaults and the parsing of the strings Ikomia stores (done once, at the
boundary, into the typed config the core receives), the widget rows, `get_values()`, the plugin READMEs'
tables and the command-line flags. Legacy names of the public plugins parse with the same rules.
No ikomia and no Qt here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")

# What a parameter holds, which decides its parsing and its widget control.
INT, FLOAT, BOOL, CHOICE, TEXT, FILE, FOLDER, SIZE = "int", "float", "bool", "choice", "text", "file", "folder", "size"
AUTO_NUMBER = "auto_number"  # "auto" (None) or a number in range: SIZE's float twin
MAIN, ADVANCED = "Essentials", "Advanced"


@dataclass(frozen=True)
class Option:
    """One parameter: everything that is known about it, stated once."""

    default: Any
    label: str
    help: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple | Callable | None = None  # a tuple, or f(values) -> list for choices that depend on others
    depends_on: str = ""  # the parameter whose value the choices follow
    parse_with: Callable | None = None  # canonicalises a choice or a text (e.g. model aliases); raises ConfigError
    group: str = MAIN
    decimals: int = 3  # float widgets
    file_filter: str = ""
    accepted: str = ""  # the manual's words for the accepted values, where the choices vary by machine
    defines_model: bool = False  # inference: another value is another model (a field of the model cache's key)
    name: str = ""  # filled in by Schema

    def parse(self, text) -> Any:
        """The typed value of a stored string; a ConfigError names the parameter, expected and got."""
        value = str(text).strip()
        return _PARSERS[self.kind](self, value)

    def format(self, value) -> str:
        """The string Ikomia stores for a typed value."""
        if value is None:
            return "auto"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    def static_choices(self) -> tuple:
        return tuple(self.choices) if isinstance(self.choices, (tuple, list)) else ()

    def choices_for(self, values: dict) -> list:
        """Choices to offer given the other parameters' current strings."""
        if callable(self.choices):
            return list(self.choices(values))
        return list(self.static_choices())

    def describe_range(self, defaults: dict) -> str:
        """What the plugin README says of the accepted values."""
        if self.accepted:
            return self.accepted
        if callable(self.choices):
            listed = ", ".join(f"`{c}`" for c in self.choices_for(defaults))
            return listed + (f" (follows `{self.depends_on}`)" if self.depends_on else "")
        if self.kind in (INT, FLOAT):
            return f"{_number(self.low)} .. {_number(self.high)}"
        if self.kind in (SIZE, AUTO_NUMBER):
            return f"`auto` or {_number(self.low)} .. {_number(self.high)}"
        if self.kind == BOOL:
            return "`True`, `False`"
        if self.static_choices():
            return ", ".join(f"`{c}`" for c in self.static_choices())
        return {FILE: "a file path", FOLDER: "a folder path", TEXT: "text"}[self.kind]


def option(default, label: str, help: str, **spec) -> Any:
    """A dataclass field carrying its Option; the kind follows the default's type unless given."""
    kind = spec.pop("kind", None) or _kind_of(default, spec)
    return field(default=default, metadata={"option": Option(default, label, help, kind, **spec)})


def _kind_of(default, spec) -> str:
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, int):
        return INT
    if isinstance(default, float):
        return FLOAT
    return CHOICE if "choices" in spec else TEXT


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_range(option: Option, number, text: str):
    if not option.low <= number <= option.high:  # also refuses NaN
        raise ConfigError(f"{option.name} must be between {_number(option.low)} and {_number(option.high)}, got {text}")
    return number


def _parse_int(option: Option, text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"{option.name} must be an integer, got '{text}'") from None
    return _check_range(option, number, text)


def _parse_float(option: Option, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{option.name} must be a number, got '{text}'") from None
    if math.isnan(number):
        raise ConfigError(f"{option.name} must be between {_number(option.low)} and {_number(option.high)}, got {text}")
    return _check_range(option, number, text)


def _parse_bool(option: Option, text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise ConfigError(f"{option.name} must be true or false, got '{text}'")


def _parse_choice(option: Option, text: str) -> str:
    if option.parse_with is not None:
        return option.parse_with(text)
    for choice in option.static_choices():
        if text.lower() == str(choice).lower():
            return choice
    if not option.static_choices():  # dynamic choices: the core validates them with their context
        return text
    raise ConfigError(f"{option.name} must be one of {', '.join(option.static_choices())}, got '{text}'")


def _auto_or(convert, expected: str):
    """The parser of a parameter that is "auto" (None) or a number in range."""
    def parse(option: Option, text: str):
        if text.lower() in ("auto", ""):
            return None
        try:
            number = convert(text)
        except ValueError:
            raise ConfigError(f"{option.name} must be {expected} or 'auto', got '{text}'") from None
        if not option.low <= number <= option.high:  # also refuses NaN
            raise ConfigError(f"{option.name} must be between {_number(option.low)} and {_number(option.high)} (or auto), "
                              f"got {text}")
        return number
    return parse


_PARSERS = {
    INT: _parse_int,
    FLOAT: _parse_float,
    BOOL: _parse_bool,
    CHOICE: _parse_choice,
    SIZE: _auto_or(int, "an integer"),
    AUTO_NUMBER: _auto_or(float, "a number"),
    TEXT: lambda option, text: option.parse_with(text) if option.parse_with else text,
    FILE: lambda option, text: text,
    FOLDER: lambda option, text: text,
}


@dataclass(frozen=True)
class Legacy:
    """A parameter name of the public plugins, mapped onto ours.

    kind: how its value parses (the same rules as ours); read(config) -> its value derived from ours;
    write(value) -> {our_name: typed value, ...}.
    """

    name: str
    kind: str
    read: Callable
    write: Callable
    help: str

    def parse(self, text):
        return Option(None, self.name, self.help, self.kind, name=self.name).parse(text)


def alias(name: str, target: str) -> Legacy:
    """A legacy name that is only another name for `target`."""
    return Legacy(name, TEXT, lambda config: getattr(config, target), lambda value: {target: value}, f"alias of `{target}`")


class Schema:
    """The options of a config dataclass, in declaration order, plus legacy names."""

    def __init__(self, config_class, legacy=()):
        self.config_class = config_class
        self.options = {}
        for item in dataclasses.fields(config_class):
            if "option" not in item.metadata:
                raise TypeError(f"{config_class.__name__}.{item.name} is not declared with option()")
            self.options[item.name] = dataclasses.replace(item.metadata["option"], name=item.name)
        self.legacy = {entry.name: entry for entry in legacy}

    def __iter__(self):
        return iter(self.options.values())

    def __getitem__(self, name: str) -> Option:
        return self.options[name]

    def defaults(self) -> dict:
        """{name: stored string} of every parameter's default."""
        return {name: option.format(option.default) for name, option in self.options.items()}

    def groups(self) -> dict:
        """{group: [Option, ...]} in declaration order, essentials first."""
        grouped = {}
        for option in self:
            grouped.setdefault(option.group, []).append(option)
        return dict(sorted(grouped.items(), key=lambda item: item[0] != MAIN))

    def parse(self, values: dict):
        """The typed config from stored strings (missing ones take their default)."""
        typed = {name: option.parse(values.get(name, option.format(option.default))) for name, option in self.options.items()}
        return self.config_class(**typed)

    def stored(self, config) -> dict:
        """{name: stored string} of a typed config: what parse() reads back into the same config."""
        return {name: option.format(getattr(config, name)) for name, option in self.options.items()}

    def update(self, current: dict, incoming: dict) -> dict:
        """New stored strings after set_parameters(incoming); unknown names refused, legacy ones mapped."""
        incoming = {name: str(value) for name, value in dict(incoming).items()}
        unknown = sorted(set(incoming) - set(self.options) - set(self.legacy))
        if unknown:
            valid = ", ".join(list(self.options) + list(self.legacy))
            raise ConfigError(f"Unknown parameter '{unknown[0]}': expected one of {valid}")
        before = self.with_legacy(current)
        updated = dict(current)
        updated.update({k: v for k, v in incoming.items() if k in self.options})
        # Ikomia passes every listed key back: a legacy value counts only where the caller changed it.
        for name, entry in self.legacy.items():
            if name in incoming and incoming[name] != before[name]:
                mapped = entry.write(entry.parse(incoming[name]))
                updated.update({k: self.options[k].format(v) for k, v in mapped.items()})
        return updated

    def with_legacy(self, current: dict) -> dict:
        """Our stored strings plus the legacy names' values (Ikomia forwards only the keys listed here)."""
        values = dict(current)
        try:
            config = self.parse(current)
        except ConfigError:  # a bad value is reported when the task runs; its legacy view stays empty
            config = None
        for name, entry in self.legacy.items():
            values[name] = str(entry.read(config)) if config is not None else ""
        return values

    def markdown_table(self) -> str:
        """The plugin README's table of parameters: name, default, accepted values, help."""
        defaults = self.defaults()
        rows = ["| parameter | default | accepted | what it does |", "|---|---|---|---|"]
        for option in self:
            default = option.format(option.default)
            rows.append(f"| `{option.name}` | {f'`{default}`' if default else 'empty'} | {option.describe_range(defaults)} | {option.help} |")
        for entry in self.legacy.values():
            rows.append(f"| `{entry.name}` (legacy) | | | {entry.help} |")
        return "\n".join(rows)
