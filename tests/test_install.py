"""Installed plugins are self-contained: each works alone in a fresh Ikomia home, and beside its sibling."""
import os

import pytest

from conftest import TORCH_HOME, run_python
from helpers import INFER, TRAIN, cache_random_weights, install_plugins, installer

ALONE_CHECK = r"""
import os, sys, numpy as np
from ikomia.dataprocess.workflow import Workflow
names = sys.argv[1:] if len(sys.argv) > 1 else %r
for name in names:
    task = Workflow().add_task(name=name, public_hub=False)
    module = sys.modules[name + ".resnext_core"]
    assert module.__file__.startswith(os.environ["HOME"]), module.__file__  # its own vendored copy
    if name == "infer_torchvision_resnext":
        task.get_input(0).set_image(np.full((64, 64, 3), 100, np.uint8))
        task.run()
        assert len(task.get_whole_image_results()) == 1000
print("RESULT OK", sorted(m for m in sys.modules if m.endswith("resnext_core")))
"""


@pytest.mark.parametrize("names", [[INFER], [TRAIN], [INFER, TRAIN]], ids=["infer-alone", "train-alone", "side-by-side"])
def test_installed_plugins_work_alone_and_together(tmp_path, names):
    names = [n for n in names if n in installer.available_plugins()]
    if not names:
        pytest.skip("plugin not in this checkout")
    cache_random_weights("resnext50")
    home = tmp_path / "home"
    install_plugins(str(home / "Ikomia" / "Plugins" / "Python"), names)
    assert sorted(os.listdir(home / "Ikomia" / "Plugins" / "Python")) == sorted(names)
    for name in names:
        folder = home / "Ikomia" / "Plugins" / "Python" / name
        assert (folder / "resnext_core" / "__init__.py").is_file() and (folder / "LICENSE").is_file()
        assert not list(folder.rglob("__pycache__"))
    # The checkout is not on sys.path: only the installed folders can be imported.
    completed = run_python(ALONE_CHECK % (names,), {"HOME": str(home), "TORCH_HOME": TORCH_HOME}, cwd=str(tmp_path))
    assert completed.returncode == 0 and "RESULT OK" in completed.stdout, completed.stdout[-2000:] + completed.stderr[-3000:]
    for name in names:
        assert f"{name}.resnext_core" in completed.stdout
