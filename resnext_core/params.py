"""String parameters as Ikomia stores them: defaults, accepted aliases, unknown names refused."""
from __future__ import annotations

from .errors import ConfigError


class ParamValues:
    """Current values (all strings) of a task's parameters.

    aliases maps names other plugins used to ours; translate(name, value) may turn a legacy
    parameter into {our_name: value, ...} for ones that changed meaning, not just name.
    """

    def __init__(self, defaults: dict, aliases: dict | None = None, translate=None):
        self.defaults = dict(defaults)
        self.aliases = dict(aliases or {})
        self.translate = translate
        self.values = dict(defaults)

    def update(self, values: dict) -> None:
        updates = {}
        for name, value in dict(values).items():
            name = self.aliases.get(name, name)
            if self.translate is not None and name not in self.defaults:
                translated = self.translate(name, str(value))
                if translated is not None:
                    updates.update(translated)
                    continue
            if name not in self.defaults:
                valid = ", ".join(sorted(self.defaults) + sorted(self.aliases))
                raise ConfigError(f"Unknown parameter '{name}': expected one of {valid}")
            updates[name] = str(value)
        self.values.update(updates)

    def as_dict(self) -> dict:
        return dict(self.values)

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def parse_int(params: ParamValues, name: str, low: int, high: int) -> int:
    value = params[name]
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got '{value}'") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_float(params: ParamValues, name: str, low: float, high: float) -> float:
    value = params[name]
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got '{value}'") from None
    if not low <= number <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return number


def parse_bool(params: ParamValues, name: str) -> bool:
    value = str(params[name]).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got '{params[name]}'")


def parse_choice(params: ParamValues, name: str, choices) -> str:
    value = str(params[name]).strip()
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
