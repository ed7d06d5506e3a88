"""Publishing to Ikomia HUB with Ikomia's own client, ikomia-cli, kept apart from the project's packages.

ikomia-cli 0.9.1 pins rich<13, and nncf (int8) asks for rich>=13.5.2: installed into .venv, the client would
downgrade what the plugins run on. So the client lives in a folder of its own holding only what it needs beyond
.venv (pip's own resolution against .venv), put first on PYTHONPATH by the commands that use it:

  python -m resnext_tools.publish install [--folder .ikcli]   # the client, pinned in pyproject.toml's [publish]
  PYTHONPATH=.ikcli .ikcli/bin/ikcli login                    # then ikcli algo add / update / publish (README)
  PYTHONPATH=.ikcli python -m resnext_tools.publish check NAME --out DIR
      # offline, what `ikcli algo add NAMESPACE NAME` would send: the info fields, the zip, the demo workflow
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_FOLDER = os.path.join(ROOT, ".ikcli")


def client_requirements() -> list:
    """ikomia-cli and what it imports, as pyproject.toml pins them (its optional [publish] dependencies)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["project"]["optional-dependencies"]["publish"]


def install_client(folder: str = CLIENT_FOLDER) -> list:
    """The client and the packages it needs that this environment lacks or has at versions it refuses, into
    `folder` (replaced); returns them as name==version."""
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "report.json")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--report", report,
                        *client_requirements()], check=True)
        with open(report, encoding="utf-8") as handle:
            needed = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in json.load(handle)["install"]]
        staging = os.path.join(scratch, "client")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", staging, *needed],
                       check=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(staging, folder)
    return needed


def check(name: str, out: str) -> dict:
    """What ikomia-cli's `algo add` (and `update`) reads of the installed plugin `name`, done with its own code but
    nothing sent: Algo(name).info (the icon as its path), the zip of local.Package, and for an INFER algorithm the
    demo workflow of Algo.create_workflow(); the zip and the workflow are copied into `out`."""
    from ikcli.algos import local

    algo = local.Algo(name)
    info = {key: str(value) if key == "icon" else value for key, value in algo.info.items()}
    os.makedirs(out, exist_ok=True)
    with local.Package(algo) as archive:
        shutil.copy(archive, os.path.join(out, f"{name}.zip"))
    if info["algo_type"] == "INFER":
        shutil.copy(algo.create_workflow(), os.path.join(out, f"{name}_demo_workflow.json"))
    with open(os.path.join(out, f"{name}_info.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnext_tools.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install ikomia-cli apart from .venv's packages")
    install.add_argument("--folder", default=CLIENT_FOLDER)
    checking = commands.add_parser("check", help="what ikcli algo add would send, offline")
    checking.add_argument("name")
    checking.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"installed into {args.folder}: {' '.join(install_client(args.folder))}")
    else:
        info = check(args.name, args.out)
        print(json.dumps({key: value for key, value in info.items() if key != "description"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
