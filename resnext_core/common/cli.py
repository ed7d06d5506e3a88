"""Command lines built from a Schema: a flag per parameter (the name the plugin shows), and --config, a JSON object
of those parameters (e.g. a saved workflow's task parameters); the flags override the file, the file the defaults."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import ResNeXtError
from .schema import Schema


def add_parameter_flags(parser: argparse.ArgumentParser, schema: Schema, title: str) -> None:
    parser.add_argument("--config", help="JSON file of parameters; the flags below override it")
    group = parser.add_argument_group(title)
    for option in schema:
        group.add_argument(f"--{option.name}", metavar="VALUE",
                           help=f"{option.help} (default {option.format(option.default) or 'empty'})")


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
