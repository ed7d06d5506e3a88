"""The project's shape: the core imports neither ikomia nor Qt, its two sides do not import each other, nothing
edits sys.path, every version is pinned once (pyproject.toml) and the plugins' requirements repeat those pins."""
import ast
import os
import re
import tomllib

import pytest

from conftest import ROOT, run_python

CORE = os.path.join(ROOT, "resnext_core")
PLUGINS = ("infer_torchvision_resnext", "train_torchvision_resnext")


def _python_files(*folders):
    for folder in folders:
        for root, dirs, names in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "resnext_core", "resnext_ikomia")]
            yield from (os.path.join(root, name) for name in names if name.endswith(".py"))


def _imported(path) -> set:
    """The resnext_core subpackages a core module imports (its relative imports resolved)."""
    package = os.path.relpath(os.path.dirname(path), ROOT).split(os.sep)
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = package[: len(package) - node.level + 1] + (node.module or "").split(".")
            found.add(target[1] if len(target) > 1 and target[1] else "")
    return found


def test_core_imports_neither_ikomia_nor_qt():
    code = (
        "import importlib, pkgutil, sys, resnext_core;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(resnext_core.__path__, 'resnext_core.')];"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ikomia', 'PyQt6', 'PyQt5', 'cv2')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("side, forbidden", [("common", {"data", "reports", "inference", "training"}),
                                             ("data", {"reports", "inference", "training"}),
                                             ("reports", {"inference", "training"}),
                                             ("inference", {"training"}), ("training", {"inference"})])
def test_the_cores_sides_do_not_import_each_other(side, forbidden):
    """The core's layers point one way: common/ <- data/ <- reports/ <- inference/ and training/, which share them
    and never import each other."""
    offenders = {os.path.relpath(path, ROOT): sorted(_imported(path) & forbidden)
                 for path in _python_files(os.path.join("resnext_core", side))}
    assert not {path: names for path, names in offenders.items() if names}


def _edits_sys_path(node) -> bool:
    """sys.path.insert/append/extend(...) or an assignment to sys.path or a slice of it."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return ast.unparse(node.func) in ("sys.path.insert", "sys.path.append", "sys.path.extend")
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(ast.unparse(t).startswith("sys.path") for t in targets)
    return False


def test_nothing_edits_sys_path():
    """The core and the tools are an installed package (`pip install -e .`): code imports it as it is. (The
    training workers' bootstrap, a string launch.py hands to a new interpreter, puts the plugin's own copy first.)"""
    edits = [f"{os.path.relpath(path, ROOT)}:{node.lineno}"
             for path in _python_files("resnext_core", "resnext_ikomia", "resnext_tools", "benchmarks", "tests", *PLUGINS)
             for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())) if _edits_sys_path(node)]
    assert not edits
    with open(os.path.join(ROOT, "pytest.ini"), encoding="utf-8") as handle:
        assert "pythonpath" not in handle.read()


def _requirement_name(line: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0]).lower()


def test_every_pin_is_stated_once_and_the_plugins_repeat_it():
    """pyproject.toml states each dependency once; a plugin's requirements.txt (what HUB installs) lists the same
    requirement, character for character, for every package it names."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    names = [_requirement_name(line) for line in lines]
    assert len(names) == len(set(names)), "a package named twice in pyproject.toml"
    declared = dict(zip(names, lines))
    for plugin in PLUGINS:
        with open(os.path.join(ROOT, plugin, "requirements.txt"), encoding="utf-8") as handle:
            wanted = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        assert wanted, plugin
        for line in wanted:
            assert declared.get(_requirement_name(line)) == line, f"{plugin}/requirements.txt: {line} is not pyproject's"
