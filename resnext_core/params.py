"""String parameters as Ikomia stores them: defaults, accepted aliases, unknown names refused."""
from __future__ import annotations

from .errors import ConfigError


def alias(canonical: str):
    """A legacy name that is only another name for `canonical`."""
    return (lambda values: values[canonical], lambda value: {canonical: value})


class ParamValues:
    """Current values (all strings) of a task's parameters.

    legacy maps names other plugins used to (read, write): read(values) -> the legacy value derived
    from ours, write(value) -> {our_name: value, ...}. Legacy names appear in as_dict() because
    Ikomia's set_parameters() forwards only keys that get_values() lists.
    """

    def __init__(self, defaults: dict, legacy: dict | None = None):
        self.defaults = dict(defaults)
        self.legacy = dict(legacy or {})
        self.values = dict(defaults)

    def update(self, incoming: dict) -> None:
        incoming = {name: str(value) for name, value in dict(incoming).items()}
        unknown = sorted(set(incoming) - set(self.defaults) - set(self.legacy))
        if unknown:
            valid = ", ".join(sorted(self.defaults) + sorted(self.legacy))
            raise ConfigError(f"Unknown parameter '{unknown[0]}': expected one of {valid}")
        current = self.as_dict()
        updated = dict(self.values)
        updated.update({k: v for k, v in incoming.items() if k in self.defaults})
        # Ikomia passes every listed key back: a legacy value counts only where the caller changed it.
        for name, (_, write) in self.legacy.items():
            if name in incoming and incoming[name] != current[name]:
                updated.update(write(incoming[name]))
        self.values = updated

    def as_dict(self) -> dict:
        values = dict(self.values)
        values.update({name: read(self.values) for name, (read, _) in self.legacy.items()})
        return values

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def _parse_number(params: ParamValues, name: str, cast, kind: str, low, high):
    value = params[name]
    try:
        number = cast(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got '{value}'") from None
    if not low <= number <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return number


def parse_int(params: ParamValues, name: str, low: int, high: int) -> int:
    return _parse_number(params, name, int, "an integer", low, high)


def parse_float(params: ParamValues, name: str, low: float, high: float) -> float:
    return _parse_number(params, name, float, "a number", low, high)


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
