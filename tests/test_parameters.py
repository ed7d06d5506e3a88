"""Parameters: declared once (the schema), parsed with errors naming parameter, expected and got; legacy names."""
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnext_core.common.errors import ConfigError
from resnext_core.common.models import resolve_model_name, resolve_weights
from resnext_core.common.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from resnext_core.common.runtime import resolve_device, resolve_precision
from resnext_core.common.schema import BOOL, CHOICE, FALSE_WORDS, FLOAT, INT, SIZE, TRUE_WORDS, Option, Schema, option
from resnext_core.training.config import TrainConfig
from resnext_tools.parameter_tables import SCHEMAS, readme_path

from helpers import INFER, TRAIN, new_task

PLUGINS = (INFER, TRAIN)


@pytest.mark.parametrize("plugin", PLUGINS)
def test_param_defaults_and_values_are_the_schema(plugin):
    schema = SCHEMAS[plugin]
    _, task = new_task(plugin)
    values = task.get_parameters()
    assert {k: values[k] for k in schema.options} == schema.defaults()
    assert set(values) == set(schema.options) | set(schema.legacy), "get_values lists ours and the legacy names, nothing else"
    assert dataclasses.asdict(task.get_param_object().config()) == dataclasses.asdict(schema.parse(schema.defaults()))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_readme_table_is_the_schema(plugin):
    schema = SCHEMAS[plugin]
    with open(readme_path(plugin), encoding="utf-8") as handle:
        readme = handle.read()
    assert schema.markdown_table() in readme, "run python -m resnext_tools.parameter_tables"
    for name in list(schema.options) + list(schema.legacy):
        assert f"| `{name}`" in readme


@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_parameter_is_documented_for_a_person(plugin):
    for item in SCHEMAS[plugin]:
        assert item.label and item.help.endswith((".", ")")) and len(item.help) > 15, item.name
        if item.kind in ("int", "float", "size"):
            assert item.low is not None and item.high is not None, item.name


@pytest.mark.parametrize("word", [w for w in TRUE_WORDS + FALSE_WORDS if w] + ["TRUE", "Off", " yes "])
def test_legacy_booleans_accept_every_spelling_ours_do(word):
    on = word.strip().lower() in TRUE_WORDS
    _, task = new_task(TRAIN)
    task.set_parameters({"use_pretrained": word})
    values = task.get_parameters()
    assert values["train_mode"] == ("fine_tune" if on else "scratch") and values["use_pretrained"] == str(on)
    task.set_parameters({"feature_extract": word})
    assert task.get_parameters()["train_mode"] == ("feature_extract" if on else "fine_tune")
    task.set_parameters({"hflip": word})
    assert task.get_param_object().config().hflip is on, "our own booleans parse the same words"


def test_legacy_value_counts_only_where_the_caller_changed_it():
    _, task = new_task(TRAIN)
    task.set_parameters({"train_mode": "scratch"})
    values = task.get_parameters()  # Ikomia passes every listed key back, use_pretrained included
    values["epochs"] = "3"
    task.set_parameters(values)
    assert task.get_parameters()["train_mode"] == "scratch" and task.get_parameters()["epochs"] == "3"


@pytest.mark.parametrize("value", ["0", "-5", "5000", "abc", "12.5"])
def test_bad_input_size(value):
    size = Option(None, "Input size", "", SIZE, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, name="input_size")
    with pytest.raises(ConfigError, match="input_size"):
        size.parse(value)


@pytest.mark.parametrize("values, message", [
    ({"epochs": "0"}, "epochs must be between 1 and 100000, got 0"),
    ({"learning_rate": "nan"}, "learning_rate must be between"),
    ({"batch_size": "eight"}, "batch_size must be an integer, got 'eight'"),
    ({"optimizer": "lion"}, "optimizer must be one of sgd, adamw, got 'lion'"),
    ({"hflip": "maybe"}, "hflip must be true or false, got 'maybe'"),
    ({"model_name": "resnet50"}, "Unknown model_name 'resnet50'"),
])
def test_parse_errors_name_parameter_expected_and_got(values, message):
    schema = Schema(TrainConfig)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        schema.parse(values)


def test_typed_values_round_trip_through_strings():
    schema = Schema(TrainConfig)
    config = schema.parse({"learning_rate": "0.0123", "warmup_epochs": "0.5", "hflip": "off", "model_name": "resnext101"})
    assert (config.learning_rate, config.warmup_epochs, config.hflip, config.model_name) == (0.0123, 0.5, False, "resnext101_32x8d")
    strings = {item.name: item.format(getattr(config, item.name)) for item in schema}
    assert schema.parse(strings) == config


def test_a_field_without_option_is_refused():
    @dataclasses.dataclass
    class Half:
        declared: int = option(1, "Declared", "A declared parameter.", low=0, high=2)
        forgotten: int = 3

    with pytest.raises(TypeError, match="forgotten"):
        Schema(Half)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=20))
def test_any_parameter_string_gives_a_value_or_a_config_error(text):
    options = (Option(1, "n", "", INT, low=0, high=100, name="n"), Option(0.5, "x", "", FLOAT, low=0.0, high=1.0, name="x"),
               Option(True, "flag", "", BOOL, name="flag"), Option("a", "pick", "", CHOICE, choices=("a", "B"), name="pick"),
               Option(None, "size", "", SIZE, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, name="size"))
    for parse in [lambda option=option: option.parse(text) for option in options] + [
                  lambda: resolve_model_name(text), lambda: resolve_weights("resnext50", text),
                  lambda: resolve_device(text), lambda: resolve_precision(text, torch.device("cpu"))]:
        try:
            parse()
        except ConfigError as error:
            assert str(error)


@pytest.mark.parametrize("module", ["resnext_core.predict", "resnext_core.evaluate", "resnext_core.train"])
def test_every_command_flag_takes_both_spellings_and_the_help_shows_one(module):
    import importlib

    parser = importlib.import_module(module).parser()
    help_text = parser.format_help()
    flags = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    names = {flag[2:].replace("-", "_") for flag in flags} - {"help"}
    assert len(names) > 10
    for name in names:
        assert {f"--{name}", f"--{name.replace('_', '-')}"} <= set(flags), name
        if "_" in name and name != "launch_file":
            assert f"--{name}" in help_text and f"--{name.replace('_', '-')} " not in help_text, name
    spelt = {"batch-size": "4", "batch_size": "4"} if module != "resnext_core.train" else {"node-rank": "0", "node_rank": "0"}
    positional = {"resnext_core.predict": ["photos", "--output", "p.csv"], "resnext_core.evaluate": ["test", "--output", "e"],
                  "resnext_core.train": []}[module]
    for flag, value in spelt.items():
        parsed = parser.parse_args(positional + [f"--{flag}", value, "--top-k" if module != "resnext_core.train" else "--epochs", "3"])
        assert vars(parsed)[flag.replace("-", "_")] == int(value)
