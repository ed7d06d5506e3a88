"""Write each plugin README's parameter table from the plugin's schema (the one declaration of its parameters).

  python -m resnext_tools.parameter_tables          # rewrite the tables in place
  python -m resnext_tools.parameter_tables --check  # exit 1 if a README's table differs from its schema
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from resnext_core.inference.config import INFER_SCHEMA
from resnext_core.training.config import TRAIN_SCHEMA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = {"infer_torchvision_resnext": INFER_SCHEMA, "train_torchvision_resnext": TRAIN_SCHEMA}
START, END = "<!-- parameters: generated from the schema by resnext_tools/parameter_tables.py -->", "<!-- parameters: end -->"


def readme_path(plugin: str) -> str:
    return os.path.join(ROOT, plugin, "README.md")


def with_table(text: str, table: str, path: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no parameter table markers ({START} ... {END})")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for plugin, schema in SCHEMAS.items():
        path = readme_path(plugin)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        updated = with_table(text, schema.markdown_table(), path)
        if updated != text:
            stale.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(updated)
    for path in stale:
        print(f"{'differs from its schema' if args.check else 'updated'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
