"""Command lines built from a Schema: a flag per parameter (the name the plugin shows), and --config, a JSON object
of those parameters (e.g. a saved workflow's task parameters); the flags override the file, the file the defaults.
Every flag takes both spellings, --batch_size and --batch-size; the help shows the parameters' own, underscores."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import ResNeXtError
from .schema import Schema


class OneSpellingFormatter(argparse.RawDescriptionHelpFormatter):
    """The help lists a long flag under its first spelling alone (add_flag gives each two)."""

    def _format_action_invocation(self, action) -> str:
        spellings = {option[2:].replace("-", "_"): option for option in reversed(action.option_strings)
                     if option.startswith("--")}
        kept = [option for option in action.option_strings if not option.startswith("--") or option in spellings.values()]
        shown = argparse.Action(kept, action.dest, action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(shown)


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser: its module's docstring as the description, each flag in one spelling in the help."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=OneSpellingFormatter)


def add_flag(container, name: str, **options) -> None:
    """--name, also accepted as --name-with-dashes (or with underscores, where `name` has dashes)."""
    underscores = name.replace("-", "_")
    spellings = list(dict.fromkeys([f"--{underscores}", f"--{underscores.replace('_', '-')}"]))
    container.add_argument(*spellings, dest=underscores, **options)


def add_parameter_flags(parser: argparse.ArgumentParser, schema: Schema, title: str) -> None:
    add_flag(parser, "config", help="JSON file of parameters; the flags below override it")
    group = parser.add_argument_group(title)
    for option in schema:
        add_flag(group, option.name, metavar="VALUE", help=f"{option.help} (default {option.format(option.default) or 'empty'})")


def parsed_config(args: argparse.Namespace, schema: Schema):
    """The typed config: defaults, then the --config file, then the flags; a bad value is a ConfigError."""
    return schema.parse(stored_values(args, schema))


def stored_values(args: argparse.Namespace, schema: Schema) -> dict:
    """{parameter: stored string}: defaults, then the --config file, then the flags."""
    values = schema.defaults()
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                from_file = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ResNeXtError(f"--config {args.config}: cannot read a JSON object of parameters ({exc})") from None
        if not isinstance(from_file, dict):
            raise ResNeXtError(f"--config {args.config}: expected a JSON object of parameters, got {type(from_file).__name__}")
        values = schema.update(values, from_file)
    flags = {option.name: getattr(args, option.name) for option in schema if getattr(args, option.name) is not None}
    return schema.update(values, flags)


def run_command(main) -> None:
    """A command line's end: its exit status, or a ResNeXtError's message (which names the problem) and status 2
    instead of a traceback."""
    try:
        sys.exit(main())
    except ResNeXtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
