"""Copy the plugins, each with its own copy of the shared packages, where Ikomia (or HUB packaging) expects them.

In the repository each plugin folder links to the one resnext_core and resnext_ikomia (symbolic links),
so a checkout's plugin folder imports as it is. Installing copies the links' contents: each installed
folder is self-contained, as Ikomia HUB installs a plugin, and works alone or beside its sibling.

  python -m resnext_tools.plugins                    # into the current user's Ikomia plugin folder
  python -m resnext_tools.plugins --dest DIR         # into DIR (tests)
  python -m resnext_tools.plugins --dest dist --zip  # HUB packages: dist/<name>/ and dist/<name>.zip
  python -m resnext_tools.plugins --link             # development: link the checkout's folders instead
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = ("infer_torchvision_resnext", "train_torchvision_resnext")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
# Files every plugin folder carries besides its own sources.
COMMON_FILES = ("LICENSE",)


def ikomia_plugin_dir() -> str:
    """Ikomia's Python plugin folder (its config may move it; default ~/Ikomia/Plugins/Python)."""
    os.environ.setdefault("IKOMIA_AUTO_COMPLETION", "0")
    from ikomia.core import config

    return os.path.join(config.main_cfg["registry"]["path"], "Python")


def available_plugins() -> list:
    return [name for name in PLUGINS if os.path.isdir(os.path.join(ROOT, name))]


def remove_installed(target: str) -> None:
    """Remove an installed plugin: a copied folder, or `make develop`'s link (the checkout it points to untouched)."""
    if os.path.islink(target):
        os.unlink(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)


def install_plugin(name: str, dest: str) -> str:
    """Write dest/name as a complete plugin folder, replacing any older one."""
    os.makedirs(dest, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=dest)
    try:
        folder = os.path.join(staging, name)
        shutil.copytree(os.path.join(ROOT, name), folder, ignore=IGNORE)  # follows the links to the shared packages
        for filename in COMMON_FILES:
            shutil.copy2(os.path.join(ROOT, filename), folder)
        target = os.path.join(dest, name)
        remove_installed(target)
        os.replace(folder, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def link_plugin(name: str, dest: str) -> str:
    """dest/name -> the checkout's folder: an edit takes effect on the next run, nothing to reinstall."""
    os.makedirs(dest, exist_ok=True)
    target = os.path.join(dest, name)
    remove_installed(target)
    os.symlink(os.path.join(ROOT, name), target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", help="destination folder (default: Ikomia's Plugins/Python)")
    parser.add_argument("--zip", action="store_true", help="also write <dest>/<name>.zip of each folder")
    parser.add_argument("--link", action="store_true", help="link the checkout's folders instead of copying (development)")
    parser.add_argument("plugins", nargs="*", help=f"plugins to install (default: all of {', '.join(PLUGINS)})")
    args = parser.parse_args(argv)
    dest = args.dest or ikomia_plugin_dir()
    names = args.plugins or available_plugins()
    unknown = sorted(set(names) - set(PLUGINS))
    if unknown:
        parser.error(f"unknown plugin(s) {', '.join(unknown)}: expected {', '.join(PLUGINS)}")
    for name in names:
        if args.link:
            print(f"linked {link_plugin(name, dest)} -> {os.path.join(ROOT, name)}")
            continue
        folder = install_plugin(name, dest)
        print(f"installed {folder}")
        if args.zip:
            print(f"packaged {shutil.make_archive(folder, 'zip', root_dir=dest, base_dir=name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
