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
CORES = len(os.sched_getaffinity(0))
# pytest-xdist's workers (pytest.ini: -n auto) share the cores: each worker's torch, and the processes it
# starts, get the worker's share of threads. Set before torch is imported: with every worker taking every
# core, their thread pools fight over the cores and the suite runs no faster than one worker.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, CORES // WORKERS)))
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


GIB_PER_WORKER = 6  # a worker's peak: its models plus a subprocess of up to 5 GB (the 500-inference test)


def pytest_xdist_auto_num_workers(config):
    """-n auto: one worker per core, as many as memory holds; none under -s, whose prints the workers would
    swallow (the README's figure-printing commands use -s)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    if config.getoption("capture") == "no":
        return 0
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(CORES, int(memory_gib // GIB_PER_WORKER)))


# Session and module fixtures that train a model for a minute: the tests using one run on one worker
# (--dist loadgroup), which trains it once.
TRAINED_FIXTURES = ("digits_model", "marks_model", "grid_model")


def _trained_fixture(item):
    return next((name for name in TRAINED_FIXTURES if name in item.fixturenames), None)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(items):
    for item in items:
        name = _trained_fixture(item)
        if name:
            item.add_marker(pytest.mark.xdist_group(name))
            item.add_marker(pytest.mark.slow)  # make test-fast trains nothing


def pytest_runtest_setup(item):
    """On a loadgroup worker, a grouped test's id ends in @group. pytest 9.2 ignores the id xdist 3.8 writes
    (pytest-xdist issue 1386): the groups would be silently lost and every worker train the models."""
    if getattr(item.config.option, "loadgroup", False) and _trained_fixture(item) and "@" not in item.nodeid:
        pytest.fail("--dist loadgroup lost this test's group: the installed pytest and pytest-xdist do not "
                    "work together (pyproject.toml's [dev] pins a pytest that does)", pytrace=False)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as an image-folder dataset: train/<class>/*.png and heldout/<class>/*.png."""
    from resnext_tools.digits import write_digits_dataset

    folder = os.path.join(SESSION_DIR, "digits")
    write_digits_dataset(folder)
    return folder


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits):
    """DIGITS_RECIPE through the training plugin, on one process: the run's best.pth."""
    from helpers import DIGITS_RECIPE, train_through_plugin

    run_folder = train_through_plugin({**DIGITS_RECIPE, "dataset_folder": os.path.join(digits, "train")},
                                      str(tmp_path_factory.mktemp("digits-run")))
    return os.path.join(run_folder, "best.pth")


@pytest.fixture(scope="session")
def heldout(digits):
    """The digits' held-out images as [(RGB array, class name), ...]."""
    import numpy as np
    from PIL import Image

    from resnext_tools.digits import heldout_items

    return [(np.asarray(Image.open(path).convert("RGB")), truth) for path, truth in heldout_items(digits)]


@pytest.fixture(scope="session")
def digits_model_accuracy(digits_model, heldout):
    """digits_model's held-out top-1 through the inference plugin, measured once for the tests that read it."""
    from helpers import heldout_accuracy

    return heldout_accuracy(digits_model, heldout)


@pytest.fixture(scope="session")
def session_dir():
    return SESSION_DIR


@pytest.fixture(scope="session")
def imagenet_weights():
    """Random "ImageNet" weights under every model's torchvision file name: the real weights API loads them."""
    from resnext_core.common import models

    from helpers import cache_random_weights

    for name in models.MODEL_NAMES:
        cache_random_weights(name)


@pytest.fixture
def photo(tmp_path, monkeypatch):
    """photo.jpg in the current folder (tmp_path), as the README's examples expect it; returns its pixels."""
    import numpy as np
    from PIL import Image

    from helpers import textured_image

    image = textured_image(240, 320)
    Image.fromarray(image).save(tmp_path / "photo.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    return np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"))


def run_python(code: str, env_extra=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter with the isolated environment (for Qt, and installed-alone cases)."""
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT
    )
