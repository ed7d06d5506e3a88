"""Shared test helpers (the fixtures are in conftest.py): plugin installation, cached 'pretrained' weights, images,
checkpoints and datasets, tasks created as users create them."""
import glob
import json
import os

import numpy as np
import torch
from PIL import Image

from resnext_core.common import checkpoint, models
from resnext_core.common.preprocess import Preprocessing
from resnext_tools import plugins as installer
from resnext_tools.digits import DIGITS_RECIPE as FULL_DIGITS_RECIPE

PLUGIN_DIR = os.path.join(os.environ["HOME"], "Ikomia", "Plugins", "Python")
INFER = "infer_torchvision_resnext"
TRAIN = "train_torchvision_resnext"


def install_plugins(dest, names=None):
    for name in names or installer.available_plugins():
        installer.install_plugin(name, dest)


def cache_random_weights(model_name: str, weights: str = "DEFAULT") -> str:
    """A randomly initialised state dict saved under torchvision's cache file name.

    The plugins then load it through torchvision's real weights API and torch.hub cache.
    """
    entry = models.resolve_weights(model_name, weights)
    path = models.cached_weights_path(entry)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.manual_seed(0)
        state = models.build_model(model_name).state_dict()
        # Random features are weak; a larger classifier makes outputs depend visibly on the input.
        state["fc.weight"] *= 100
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)
    return path


class FileCreatingPayload:
    """Unpickling this would create a file: a checkpoint holding it tests that such code never runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def textured_image(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth random image (gradients + blobs): stable under resizing, unlike white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for _ in range(channels):
        fy, fx, phase = rng.uniform(0.5, 4, 3)
        planes.append(0.5 + 0.5 * np.sin(fy * yy / max(height, 1) * 6 + fx * xx / max(width, 1) * 6 + phase))
    image = np.stack(planes, axis=-1)
    if np.issubdtype(dtype, np.integer):
        image = image * np.iinfo(dtype).max
    return image.astype(dtype)


def new_task(name: str = INFER, params=None):
    """A task as users create it: through a Workflow and Ikomia's plugin registry."""
    from ikomia.dataprocess.workflow import Workflow

    workflow = Workflow()
    task = workflow.add_task(name=name)
    if params:
        task.set_parameters(params)
    return workflow, task


def train_through_plugin(params: dict, output_folder: str) -> str:
    """A training run through the training plugin, as users run one: its run folder."""
    _, task = new_task(TRAIN, {**params, "output_folder": output_folder})
    task.run()
    return task.get_output(0).get_path()


def run_on_array(task, image: np.ndarray):
    task.get_input(0).set_image(image)
    task.run()
    return task


def results(task):
    return [(name, float(conf)) for name, conf in task.get_whole_image_results()]


def small_checkpoint(path, classes=("cat", "dog", "bird"), **extra):
    """A trained-format checkpoint (random resnext50, 64 px) for the given class names; returns the model."""
    torch.manual_seed(0)
    model = models.build_model("resnext50", num_classes=len(classes))
    checkpoint.save_checkpoint(str(path), "resnext50", model.state_dict(), classes, Preprocessing(64, 73), **extra)
    return model


def tiny_dataset(root, classes=("0", "1", "7"), per_class=8, digits_folder=None, split=False, source="train"):
    """A few real digit images per class (from the digits dataset's `source` split), in mixed formats: gray,
    RGBA, 16-bit, other sizes."""
    root = str(root)
    sources = {c: sorted(glob.glob(os.path.join(digits_folder, source, c, "*.png")))[:per_class] for c in classes}
    for c, paths in sources.items():
        for i, path in enumerate(paths):
            sub = ("val" if i % 4 == 0 else "train") if split else ""
            target = os.path.join(root, sub, c)
            os.makedirs(target, exist_ok=True)
            image = Image.open(path)
            if i % 4 == 1:
                image = image.convert("RGBA").resize((40, 36))
            elif i % 4 == 2:
                image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
            elif i % 4 == 3:
                image = image.convert("RGB").resize((48, 48))
            image.save(os.path.join(target, f"{i}.png"))
    return root


# The demo's recipe, three epochs instead of eight: the digits_model fixture's (conftest.py).
DIGITS_RECIPE = {**FULL_DIGITS_RECIPE, "epochs": "3"}


def heldout_accuracy(checkpoint_path: str, heldout: list) -> float:
    """Top-1 of the inference plugin, loading `checkpoint_path`, on [(image, truth), ...]."""
    _, infer = new_task(INFER, {"model_weight_file": checkpoint_path})
    correct = 0
    for image, truth in heldout:
        infer.get_input(0).set_image(image)
        infer.run()
        correct += infer.get_whole_image_results()[0][0] == truth
    return correct / len(heldout)


# A peak RSS in MiB, as code for a script run by run_python (VmHWM: ru_maxrss would survive exec).
PEAK_RSS = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"
# A script that trains through the plugin: TRAIN_SCRIPT.format(train=TRAIN, params=repr(parameters)).
TRAIN_SCRIPT = """
import sys
from ikomia.dataprocess.workflow import Workflow
task = Workflow().add_task(name="{train}")
task.set_parameters({params})
task.run()
"""


def json_tail(completed) -> dict:
    """The JSON object a run_python script printed last; its stderr where it failed."""
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def printed_result(completed):
    """The JSON a run_python script printed last after "RESULT"; its output's end where it failed or printed none."""
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def largest_difference(one: dict, other: dict) -> float:
    """The largest absolute difference between two {name: tensor} of the same names (state dicts, parameters)."""
    assert one.keys() == other.keys()
    return max((one[name] - other[name]).abs().max().item() for name in one)
