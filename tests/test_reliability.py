"""Crash safety, memory bounds, threads and streaming, each in a process of its own where it kills or measures."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_python
from helpers import INFER, TRAIN, cache_random_weights, new_task, results, small_checkpoint, textured_image, tiny_dataset
from resnext_core import models
from resnext_core.checkpoint import load_checkpoint, safe_load

# The process's own peak in MiB. Not ru_maxrss: Linux carries it across fork and exec, so a child would report
# pytest's size at the fork and a growth measured with it could read 0.
PEAK_RSS = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"


def _json_tail(completed: subprocess.CompletedProcess) -> dict:
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_huge_image_is_classified_without_a_float_copy():
    """10000 x 10000 RGB (286 MiB): uint8 all the way to the 232 px resize; one float copy alone would be 4x."""
    cache_random_weights("resnext50")
    code = f"""
import json
import numpy as np
from ikomia.dataprocess.workflow import Workflow
task = Workflow().add_task(name="{INFER}")
task.get_input(0).set_image(np.zeros((64, 64, 3), np.uint8)); task.run()  # model loaded and warm
image = np.random.default_rng(0).integers(0, 256, (10000, 10000, 3), dtype=np.uint8)
before = {PEAK_RSS}
task.get_input(0).set_image(image); task.run()
labelled = task.get_image_with_graphics()
print(json.dumps({{"growth": {PEAK_RSS} - before, "image": image.nbytes / 2**20, "shape": labelled.shape,
                  "results": len(task.get_whole_image_results())}}))
"""
    report = _json_tail(run_python(code))
    assert report["shape"] == [10000, 10000, 3] and report["results"] == 1000
    # Ikomia's own copies in and out (input, output, image with graphics) are ~3x.
    assert report["growth"] < 3.6 * report["image"], report


TRAIN_SCRIPT = """
import sys
from ikomia.dataprocess.workflow import Workflow
task = Workflow().add_task(name="{train}")
task.set_parameters({params})
task.run()
"""


def _temp_checkpoints(folder):
    return [e.path for e in os.scandir(folder) if e.name.startswith(".tmp-") and e.name.endswith(".pth")] if os.path.isdir(folder) else []


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path, digits):
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=6)
    out = tmp_path / "out"
    params = {"dataset_folder": data, "output_folder": str(out), "run_name": "killed", "model_name": "resnext50",
              "train_mode": "scratch", "input_size": "32", "epochs": "1000", "batch_size": "6", "optimizer": "adamw",
              "hflip": "False", "val_split": "0.25", "export_pth": "False"}
    run = out / "killed"
    process = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT.format(train=TRAIN, params=repr(params))],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    caught = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            # Wait for a rewrite of last.pth: the previous one exists and a new one is half written.
            if (run / "last.pth").exists():
                partial = _temp_checkpoints(run)
                if partial and os.path.getsize(partial[0]) > 0:
                    process.send_signal(signal.SIGKILL)
                    caught = partial[0]
                    break
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert caught, f"never saw a checkpoint being written: {process.stderr.read()[-2000:]}"
    assert process.returncode == -signal.SIGKILL
    assert os.path.exists(caught), "killed before the rename: the write really was interrupted"
    last = safe_load(str(run / "last.pth"))
    assert last["epoch"] >= 1 and load_checkpoint(str(run / "last.pth")).class_names == ["0", "1", "7"]
    # ...and training goes on from it.
    _, task = new_task(TRAIN, {**params, "epochs": str(last["epoch"] + 1), "run_name": "resumed",
                               "resume": str(run / "last.pth")})
    task.run()
    resumed = safe_load(os.path.join(task.get_output(0).get_path(), "last.pth"))
    assert resumed["epoch"] == last["epoch"] + 1


def test_two_workflows_in_two_threads_share_the_cache_and_agree(tmp_path):
    cache_random_weights("resnext50")
    weight_file = str(tmp_path / "custom.pth")
    small_checkpoint(weight_file)
    images = [textured_image(90 + 7 * i, 120 - 5 * i, seed=i) for i in range(6)]
    setups = [{}, {"model_weight_file": weight_file}]

    def classify_all(params, sink):
        _, task = new_task(INFER, params)
        for image in images:
            task.get_input(0).set_image(image)
            task.run()
            sink.append(results(task)[:5])

    alone = []
    for params in setups:
        classify_all(params, alone)
    together = [[], []]
    errors = []

    def worker(index):
        try:
            for _ in range(3):
                classify_all(setups[index], together[index])
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    expected = [alone[: len(images)], alone[len(images):]]
    for index in range(2):
        assert len(together[index]) == 3 * len(images)
        for got, want in zip(together[index], expected[index] * 3):
            assert [n for n, _ in got] == [n for n, _ in want]
            assert np.allclose([c for _, c in got], [c for _, c in want], atol=1e-5)
    inference = sys.modules["infer_torchvision_resnext.resnext_core.inference"]
    assert len(inference.MODEL_CACHE) <= inference.MODEL_CACHE.capacity


@pytest.mark.slow
def test_500_inferences_switching_models_keep_memory_bounded(tmp_path):
    """Mixed image sizes, three models through a cache of two: RSS stops growing after the first cycle."""
    for name in models.MODEL_NAMES:
        cache_random_weights(name)
    small_checkpoint(tmp_path / "custom.pth")
    code = f"""
import json, sys
import numpy as np
from ikomia.dataprocess.workflow import Workflow
def rss():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024
task = Workflow().add_task(name="{INFER}")
sources = [{{"model_name": "resnext50_32x4d"}}, {{"model_name": "resnext101_32x8d"}},
           {{"model_weight_file": "{tmp_path / 'custom.pth'}"}}, {{"model_name": "resnext101_64x4d"}}]
rng = np.random.default_rng(0)
samples, done = [], 0
for cycle in range(5):
    for source in sources:
        task.set_parameters({{"model_name": "resnext50_32x4d", "model_weight_file": "", "input_size": "32", **source}})
        for _ in range(25):
            h, w = rng.integers(16, 500, 2)
            task.get_input(0).set_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            task.run()
            done += 1
    samples.append(rss())
cache = sys.modules["infer_torchvision_resnext.resnext_core.inference"].MODEL_CACHE
print(json.dumps({{"done": done, "rss": samples, "peak": {PEAK_RSS}, "cached": len(cache)}}))
"""
    report = _json_tail(run_python(code, env_extra={"RESNEXT_MODEL_CACHE_SIZE": "2"}, timeout=1200))
    assert report["done"] == 500
    print(f"RSS after each cycle of 100 inferences (MiB): {[round(x) for x in report['rss']]}; peak {report['peak']:.0f}")
    steady = report["rss"][1:]  # the first cycle fills the cache and the allocator's pools
    assert max(steady) - steady[0] < 150, report  # no growth with the number of inferences
    assert report["cached"] == 2, report
    # Two cached models (~0.35 GB each at most) + one being loaded and folded + torch and ikomia (~1.5 GB);
    # the flat RSS above is what shows the bound is honoured, this only catches a blow-up.
    assert report["peak"] < 5000, report


LARGE_SET = (24, 2000)  # images, side: 275 MiB once decoded


def _image_dataset(root, size, count):
    bases = [Image.fromarray(textured_image(size, size, seed=seed)) for seed in range(4)]
    for index in range(count):
        folder = os.path.join(root, "ab"[index % 2])
        os.makedirs(folder, exist_ok=True)
        # Smooth content compresses well: the files are small, the decoded images are not.
        bases[index % 4].save(os.path.join(folder, f"{index}.jpg"), quality=90)
    return root


def test_training_streams_images_instead_of_preloading(tmp_path):
    """Large photos train in about the memory of thumbnails: images are decoded a batch at a time."""
    count, side = LARGE_SET
    peaks = {}
    for label, size in (("small", 64), ("large", side)):
        data = _image_dataset(str(tmp_path / label), size, count)
        params = {"dataset_folder": data, "output_folder": str(tmp_path / f"out-{label}"), "model_name": "resnext50",
                  "train_mode": "scratch", "input_size": "32", "epochs": "1", "batch_size": "4", "val_split": "0.2",
                  "export_pth": "False"}
        code = "import json\n" + TRAIN_SCRIPT.format(train=TRAIN, params=repr(params)) + f"print(json.dumps({PEAK_RSS}))"
        peaks[label] = _json_tail(run_python(code))
    decoded = count * side * side * 3 / 2**20
    print(f"peak RSS small {peaks['small']:.0f} MiB, large {peaks['large']:.0f} MiB; the large set decodes to {decoded:.0f} MiB")
    assert peaks["large"] - peaks["small"] < 0.35 * decoded, peaks
