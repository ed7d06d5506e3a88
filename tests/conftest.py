"""Test isolation: a temporary HOME (Ikomia's folders, plugins, logs), TORCH_HOME and no network.

The environment is set at import, before any test imports ikomia, which reads HOME on import.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSION_DIR = tempfile.mkdtemp(prefix="resnext-tests-")
HOME = os.path.join(SESSION_DIR, "home")
TORCH_HOME = os.path.join(SESSION_DIR, "torch")
os.makedirs(HOME)
os.makedirs(os.path.join(TORCH_HOME, "hub", "checkpoints"))
ISOLATED_ENV = {
    "HOME": HOME,
    "TORCH_HOME": TORCH_HOME,
    "IKOMIA_AUTO_COMPLETION": "0",
    "QT_QPA_PLATFORM": "offscreen",
    # Any download attempt fails at once instead of hanging: the suite never uses the network.
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "",
}
os.environ.update(ISOLATED_ENV)
from helpers import PLUGIN_DIR, install_plugins  # noqa: E402

install_plugins(PLUGIN_DIR)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as an image-folder dataset: train/<class>/*.png and heldout/<class>/*.png."""
    from digits_dataset import write_digits_dataset

    folder = os.path.join(SESSION_DIR, "digits")
    write_digits_dataset(folder)
    return folder


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits):
    """DIGITS_RECIPE through the training plugin, on one process: the run's best.pth."""
    from helpers import DIGITS_RECIPE, TRAIN, new_task

    _, task = new_task(TRAIN, {**DIGITS_RECIPE, "dataset_folder": os.path.join(digits, "train"),
                               "output_folder": str(tmp_path_factory.mktemp("digits-run"))})
    task.run()
    return os.path.join(task.get_output(0).get_path(), "best.pth")


@pytest.fixture(scope="session")
def heldout(digits):
    """The digits' held-out images as [(RGB array, class name), ...]."""
    import numpy as np
    from PIL import Image

    from digits_dataset import heldout_items

    return [(np.asarray(Image.open(path).convert("RGB")), truth) for path, truth in heldout_items(digits)]


@pytest.fixture(scope="session")
def session_dir():
    return SESSION_DIR


def run_python(code: str, env_extra=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter with the isolated environment (for Qt, and installed-alone cases)."""
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT
    )
