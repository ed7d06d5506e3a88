"""Inference as users run it: the plugin through Workflow, its parameters, regions, ImageNet and trained weights,
the model cache shared by tasks and threads."""
import dataclasses
import os
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from resnext_core import InferConfig, load_classifier
from resnext_core.common import models
from resnext_core.common.errors import ConfigError
from resnext_core.common.runtime import resolve_precision
from resnext_core.common.schema import Schema, option
from resnext_core.inference.classifier import model_request
from resnext_core.inference.config import INFER_SCHEMA
from resnext_core.inference.drawing import format_label
from resnext_core.inference.model_cache import MODEL_CACHE, ModelCache

from conftest import run_python
from helpers import (
    INFER, PEAK_RSS, cache_random_weights, json_tail, new_task, printed_result, results, run_on_array, small_checkpoint,
    textured_image
)

SNIPPET = """
from ikomia.dataprocess.workflow import Workflow
wf = Workflow()
algo = wf.add_task(name="infer_torchvision_resnext", auto_connect=True)
algo.set_parameters({"model_name": "%s", "input_size": "224"})
wf.run_on(path="photo.jpg")
img = algo.get_image_with_graphics()
"""


def assert_ranked(pairs, count):
    assert len(pairs) == count
    confidences = [c for _, c in pairs]
    assert confidences == sorted(confidences, reverse=True)
    assert abs(sum(confidences) - 1.0) < 1e-3
    assert len({n for n, _ in pairs}) == count


def changed_box(before, after):
    rows, cols = np.nonzero(np.any(before != after, axis=-1))
    return (rows.min(), rows.max(), cols.min(), cols.max()) if rows.size else None


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["resnext50", "resnext101", *models.MODEL_NAMES])
def test_readme_snippet_runs_for_every_model(imagenet_weights, photo, model_name):
    scope = {}
    exec(SNIPPET % model_name, scope)
    algo, img = scope["algo"], scope["img"]
    pairs = results(algo)
    assert_ranked(pairs, 1000)
    assert pairs[0][0] in models.resolve_weights(model_name).meta["categories"]
    assert img.shape == photo.shape
    box = changed_box(photo, img)
    assert box is not None and box[0] < 10 and box[2] < 10, "labels are drawn top-left"
    assert np.array_equal(img[-50:, -50:], photo[-50:, -50:]), "the rest of the image is untouched"


def test_labels_legible_on_thumbnails_and_large_photos(imagenet_weights):
    _, task = new_task(params={"top_k": "3"})
    small = textured_image(64, 64)
    run_on_array(task, small)
    top, bottom, _, right = changed_box(small, task.get_image_with_graphics())
    assert bottom - top >= 3 * 9, "three lines of at least 9 px on a 64 px thumbnail"
    large = textured_image(3000, 4000)
    run_on_array(task, large)
    top, bottom, _, right = changed_box(large, task.get_image_with_graphics())
    assert bottom - top >= 3 * 90 and right >= 400, "text grows with the image (about 1/30 of its side)"
    assert right < 4000 // 2


def test_labels_are_drawn_as_pillow_draws_them_from_cached_pieces():
    """The labels are composed of pieces rendered once (a name, a confidence): the same pixels as Pillow drawing
    each whole line, on images of every size."""
    from PIL import ImageDraw

    from resnext_core.inference.drawing import BOX_COLOR, BOX_OPACITY, TEXT_COLOR, _font, draw_labels, font_size_for

    lines = [format_label(name, confidence) for name, confidence in
             (("tabby, tabby cat", 0.93), ("tiger cat", 0.041), ("Egyptian cat", 0.012), ("lynx, catamount", 0.0))]
    for height, width in ((64, 64), (480, 640), (3000, 4000)):
        image = textured_image(height, width)
        font = _font(font_size_for(height, width))
        margin = max(1, font.size // 4)
        line_height = max(font.getbbox(line)[3] for line in lines) + margin
        box_width = max(font.getbbox(line)[2] for line in lines) + 2 * margin
        box_height = line_height * len(lines) + margin
        expected = image.copy()
        region = expected[:box_height, :box_width].astype(np.float32) * (1 - BOX_OPACITY) + BOX_OPACITY * np.array(BOX_COLOR)
        box = Image.fromarray(region[: height, : width].round().astype(np.uint8))
        for row, line in enumerate(lines):
            ImageDraw.Draw(box).text((margin, margin + row * line_height), line, font=font, fill=TEXT_COLOR)
        expected[:box_height, :box_width] = np.asarray(box)
        drawn = draw_labels(image, lines)
        assert np.abs(drawn.astype(int) - expected.astype(int)).max() <= 1, (height, width)


def test_studios_init_long_process_loads_the_model_before_the_first_run(imagenet_weights):
    import sys

    _, task = new_task()
    cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"].MODEL_CACHE
    cache.clear()
    task.init_long_process()
    assert len(cache) == 1, "loaded as the task is added, as STUDIO adds it"
    run_on_array(task, textured_image(60, 80))
    assert len(cache) == 1 and len(results(task)) == 1000
    _, unset = new_task(params={"dataset": "Custom"})
    unset.init_long_process()  # no weight file yet: the first run says so, adding the task does not fail


def test_top_k_and_other_parameter_changes_take_effect(imagenet_weights):
    _, task = new_task(params={"top_k": "1"})
    image = textured_image(200, 200)
    run_on_array(task, image)
    one_line = changed_box(image, task.get_image_with_graphics())
    first = results(task)
    task.set_parameters({"top_k": "4"})
    run_on_array(task, image)
    four_lines = changed_box(image, task.get_image_with_graphics())
    assert four_lines[1] - four_lines[0] > 3 * (one_line[1] - one_line[0])
    task.set_parameters({"input_size": "128"})
    run_on_array(task, image)
    assert results(task) != first
    task.set_parameters({"top_k": "0"})
    run_on_array(task, image)
    assert changed_box(image, task.get_image_with_graphics()) is None
    assert_ranked(results(task), 1000)


def test_tta_averages_the_image_and_its_mirror(imagenet_weights):
    # 300 px resizes to 232 and crops 224 from the centre: the crop of the mirror is the mirror of the crop.
    image = textured_image(300, 300)
    plain = load_classifier(device="cpu", engine="torch").predict
    expected = (plain([image]) + plain([np.ascontiguousarray(image[:, ::-1])])) / 2
    assert not torch.allclose(plain([image]), expected, atol=1e-3)  # the mirror changes the answer
    both = load_classifier(device="cpu", engine="torch", tta=True).predict([image, image])
    assert torch.allclose(both, expected.expand(2, -1), atol=1e-5)
    _, task = new_task(INFER, {"tta": "True", "engine": "torch", "top_k": "3"})
    run_on_array(task, image)
    assert [c for _, c in results(task)[:3]] == pytest.approx(expected[0].sort(descending=True).values[:3].tolist(), abs=1e-4)


def test_imagenet_weights_take_a_given_temperature(imagenet_weights):
    image = textured_image(240, 320)
    raw = load_classifier(device="cpu", engine="torch", calibrated_confidence=False).predict([image])
    assert torch.allclose(load_classifier(device="cpu", engine="torch").predict([image]), raw)  # T = 1 by default
    hotter = load_classifier(device="cpu", engine="torch", temperature=2.0).predict([image])
    assert torch.allclose(hotter, (raw.log() / 2).softmax(1), atol=1e-5)
    assert torch.equal(hotter.argmax(1), raw.argmax(1))
    assert torch.allclose(load_classifier(device="cpu", engine="torch", temperature=2.0, calibrated_confidence=False).predict([image]), raw)


@pytest.mark.slow
def test_model_and_weights_changes_take_effect(imagenet_weights):
    cache_random_weights("resnext50", "IMAGENET1K_V1")
    _, task = new_task(params={"model_name": "resnext50"})
    image = textured_image(200, 200)
    run_on_array(task, image)
    v2 = results(task)
    task.set_parameters({"weights": "IMAGENET1K_V1"})
    run_on_array(task, image)
    v1 = results(task)
    task.set_parameters({"model_name": "resnext101_64x4d", "weights": "DEFAULT"})
    run_on_array(task, image)
    assert len({tuple(v2[:5]), tuple(v1[:5]), tuple(results(task)[:5])}) == 3


def test_trained_checkpoint_needs_only_its_path(tmp_path, imagenet_weights):
    _, task = new_task()
    run_on_array(task, textured_image(100, 100))
    weight_file = str(tmp_path / "best.pth")
    small_checkpoint(weight_file)
    task.set_parameters({"model_weight_file": weight_file})
    run_on_array(task, textured_image(100, 100))
    assert_ranked(results(task), 3)
    assert {n for n, _ in results(task)} == {"cat", "dog", "bird"}


def test_public_plugin_parameters_still_work(tmp_path):
    model = models.build_model("resnext50", num_classes=2)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    (tmp_path / "classes.txt").write_text("good\nbad\n")
    _, task = new_task(params={
        "model_name": "resnext50", "dataset": "Custom", "input_size": "224",
        "model_path": str(tmp_path / "plain.pth"), "class_file": str(tmp_path / "classes.txt"),
    })
    run_on_array(task, textured_image(100, 100))
    assert {n for n, _ in results(task)} == {"good", "bad"}
    assert task.get_parameters()["model_weight_file"] == str(tmp_path / "plain.pth")


@pytest.mark.parametrize(
    "image",
    [
        textured_image(50, 70, 1)[:, :, 0],
        textured_image(50, 70, 1),
        textured_image(50, 70, 4),
        textured_image(50, 70, 3, np.uint16),
        textured_image(50, 70, 1, np.uint16),
        textured_image(50, 70, 3, np.float32),
        np.full((1, 1, 3), 200, np.uint8),
        textured_image(2000, 3000),
    ],
    ids=["gray2d", "gray3d", "rgba", "rgb16", "gray16", "float", "1x1", "large"],
)
def test_any_image(imagenet_weights, image):
    _, task = new_task(params={"top_k": "2"})
    run_on_array(task, image)
    assert_ranked(results(task), 1000)
    drawn = task.get_image_with_graphics()
    assert drawn.shape[:2] == image.shape[:2]


def test_regions_classified_in_one_batched_forward(tmp_path):
    from ikomia import core

    weight_file = str(tmp_path / "regions.pth")
    small_checkpoint(weight_file)
    _, task = new_task(params={"model_weight_file": weight_file})
    image = textured_image(400, 400)
    boxes = [core.CGraphicsRectangle(20 + 90 * (i % 4), 20 + 90 * (i // 4), 60, 50) for i in range(16)]
    task.get_input(0).set_image(image)
    task.get_input(1).set_items(boxes)
    plugin_cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"]
    task.run()  # loads the model into the plugin's cache
    loaded = list(plugin_cache.MODEL_CACHE._entries.values())[-1]  # most recently used
    batches, runner = [], loaded.runner
    loaded.runner = lambda batch, dtype: batches.append(batch.shape[0]) or runner(batch, dtype)
    try:
        task.run()
    finally:
        loaded.runner = runner
    assert batches == [16]
    objects = task.get_objects_results().get_objects()
    assert len(objects) == 16
    assert {o.label for o in objects} <= {"cat", "dog", "bird"}
    assert all(0.0 < o.confidence <= 1.0 for o in objects)


def test_each_region_is_classified_on_its_own_pixels(tmp_path):
    """ikomia 0.16.1's get_object_sub_image() hands back the whole image: the task cuts the regions itself."""
    from ikomia import core

    from resnext_core import load_classifier

    weight_file = str(tmp_path / "regions.pth")
    small_checkpoint(weight_file)
    image = textured_image(300, 400, seed=1)
    image[20:120, 30:150] = 255
    rectangles = [(30, 20, 120, 100), (200.5, 150.2, 150, 120), (-20, 250, 90, 80)]
    _, task = new_task(params={"model_weight_file": weight_file})
    task.get_input(0).set_image(image)
    task.get_input(1).set_items([core.CGraphicsRectangle(*r) for r in rectangles])
    task.run()
    classifier = load_classifier(model_weight_file=weight_file)
    crops = [image[20:120, 30:150], image[150:271, 200:351], image[250:300, 0:70]]
    expected = classifier.predict(crops).max(dim=1)
    objects = task.get_objects_results().get_objects()
    assert [o.label for o in objects] == [classifier.class_names[i] for i in expected.indices.tolist()]
    assert [o.confidence for o in objects] == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert len({round(o.confidence, 6) for o in objects}) == 3, "three regions, three different inputs"


def _run_error(params, image=None):
    _, task = new_task(params=params)
    task.get_input(0).set_image(textured_image(60, 60) if image is None else image)
    with pytest.raises(Exception) as info:
        task.run()
    return str(info.value)


def test_error_custom_without_class_file(tmp_path):
    torch.save(models.build_model("resnext50", num_classes=7).state_dict(), tmp_path / "plain7.pth")
    message = _run_error({"dataset": "Custom", "model_weight_file": str(tmp_path / "plain7.pth")})
    assert "class_file" in message and "7" in message
    assert "no model_weight_file" in _run_error({"dataset": "Custom"})


def test_error_weights_not_cached_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    message = _run_error({"model_name": "resnext101_64x4d"})
    assert os.path.join(str(tmp_path), "hub", "checkpoints", "resnext101_64x4d-173b62eb.pth") in message
    assert "$TORCH_HOME/hub/checkpoints/resnext101_64x4d-173b62eb.pth" in message


def test_misspelt_parameter_is_refused_by_name():
    # Ikomia's set_parameters() drops names get_values() does not list; a direct set_values() refuses them.
    _, task = new_task()
    with pytest.raises(Exception, match="Unknown parameter 'modle_name'"):
        task.get_param_object().set_values({"modle_name": "resnext50"})


def test_info_is_complete():
    from ikomia import core
    _, task = new_task()
    factory = sys.modules["infer_torchvision_resnext.infer_torchvision_resnext_process"].InferResNeXtFactory()
    info = factory.info
    assert info.name == INFER and info.algo_type == core.AlgoType.INFER and info.algo_tasks == "CLASSIFICATION"
    assert info.year == 2017 and "Xie" in info.authors and "Aggregated Residual" in info.article
    assert info.license and info.version and info.keywords and info.min_ikomia_version == "0.16.1"
    plugin_dir = os.path.dirname(sys.modules["infer_torchvision_resnext.infer_torchvision_resnext_process"].__file__)
    assert os.path.isfile(os.path.join(plugin_dir, info.icon_path))


CV2_ORDER = r"""
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
import cv2
import numpy as np
from ikomia.dataprocess.workflow import Workflow
image = np.zeros((120, 160, 3), np.uint8)
image[30:90, 40:120] = cv2.cvtColor(np.full((60, 80, 3), (200, 40, 10), np.uint8), cv2.COLOR_RGB2BGR)
cv2.imwrite("photo.png", image)
wf = Workflow()
algo = wf.add_task(name="infer_torchvision_resnext", auto_connect=True)
wf.run_on(path="photo.png")
print("RESULT", cv2.__version__, algo.get_whole_image_results()[0][0])
"""


@pytest.mark.slow
def test_cv2_imports_in_either_order_and_the_plugin_runs(imagenet_weights, tmp_path):
    """opencv-python-headless beside ikomia's bundled OpenCV: cv2 before or after ikomia, the plugin classifies alike."""
    outcomes = []
    for order in (["cv2", "ikomia"], ["ikomia", "cv2"]):
        completed = run_python(f"import sys; sys.argv[1:] = {order!r}\n" + CV2_ORDER, cwd=str(tmp_path))
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
        assert completed.returncode == 0 and lines, completed.stderr[-2000:]
        outcomes.append(lines[-1].split()[1:])
    assert outcomes[0][0].startswith("5."), "cv2 first: the opencv-python-headless wheel"
    assert outcomes[0][1] == outcomes[1][1], "the same top-1 whichever OpenCV is loaded"


def _other_precision() -> str:
    """A precision that is not auto's choice on this machine's CPU (fp32, or bf16 where auto is fp32)."""
    return "fp32" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "bf16"


def test_every_config_field_reaches_the_classifier_under_its_own_name(tmp_path, imagenet_weights):
    """load_classifier takes the InferConfig as it is: each field reaches the classifier under its name, and
    exactly the fields declared with defines_model name another model (another cache entry). A new field fails
    here until it says which it is."""
    small_checkpoint(tmp_path / "m.pth")
    (tmp_path / "classes.txt").write_text("\n".join(f"class {i}" for i in range(1000)))
    (tmp_path / "calibration").mkdir()
    Image.fromarray(textured_image(64, 64)).save(tmp_path / "calibration" / "a.png")
    base = InferConfig(device="cpu")
    # name: (what makes the field matter, another value)
    model_fields = {
        "model_name": ({}, "resnext101_32x8d"),
        "weights": ({}, "IMAGENET1K_V1"),
        "model_weight_file": ({}, str(tmp_path / "m.pth")),
        "class_file": ({}, str(tmp_path / "classes.txt")),
        "input_size": ({}, 288),  # on the default CPU engine, whose graph has a fixed size
        "device": ({}, "cuda" if torch.cuda.is_available() else "cpu"),
        "precision": ({}, _other_precision()),
        "engine": ({}, "torch"),
        "quantization_folder": ({"precision": "int8"}, str(tmp_path / "calibration")),
    }
    output_fields = {
        "top_k": ({}, 3), "threshold": ({}, 0.3), "explain": ({}, "gradcam"), "calibrated_confidence": ({}, False),
        "temperature": ({}, 2.0),
        "tta": ({}, True), "dataset": ({"model_weight_file": str(tmp_path / "m.pth")}, "Custom"),
    }
    assert set(model_fields) | set(output_fields) == set(INFER_SCHEMA.options), "say which kind a new field is"
    for field in INFER_SCHEMA:
        overrides, other = {**model_fields, **output_fields}[field.name]
        before = dataclasses.replace(base, **overrides)
        after = dataclasses.replace(before, **{field.name: other})
        same_here = field.name == "device" and not torch.cuda.is_available()  # auto is the CPU here
        assert (model_request(after).key != model_request(before).key) == (field.defines_model and not same_here), field.name
        assert field.defines_model == (field.name in model_fields), field.name
    changed = dataclasses.replace(base, **{name: other for name, (overrides, other) in output_fields.items()
                                            if not overrides})
    first, second = load_classifier(base), load_classifier(changed)
    assert second.runner is first.runner, "another use of the same model"
    assert all(getattr(second.config, name) == getattr(changed, name) for name in INFER_SCHEMA.options)
    assert (first.temperature, second.temperature) == (1.0, 1.0) and second.config.tta and not first.config.tta
    assert load_classifier(model_weight_file=str(tmp_path / "m.pth"), device="cpu").class_names == ["cat", "dog", "bird"]


def test_a_new_parameter_is_one_option(tmp_path):
    """One option() field: parsed from the strings Ikomia stores, listed in the README table, received by the
    classifier under its name, and part of the model's identity where it defines the model."""
    @dataclasses.dataclass(frozen=True)
    class WithNewParameters(InferConfig):
        digits_shown: int = option(2, "Digits shown", "Decimals of the confidences drawn.", low=0, high=8)
        pruned: bool = option(False, "Pruned", "A hypothetical pruned variant of the model.", defines_model=True)

    schema = Schema(WithNewParameters, legacy=INFER_SCHEMA.legacy.values())
    config = schema.parse({**schema.defaults(), "digits_shown": "4", "model_weight_file": str(small_checkpoint_path(tmp_path))})
    assert config.digits_shown == 4 and "| `digits_shown` | `2` | 0 .. 8 |" in schema.markdown_table()
    with pytest.raises(ConfigError, match="digits_shown must be between 0 and 8, got 9"):
        schema.parse({"digits_shown": "9"})
    classifier = load_classifier(dataclasses.replace(config, device="cpu", engine="torch"))
    assert classifier.config.digits_shown == 4
    assert model_request(dataclasses.replace(config, pruned=True)).key != model_request(config).key
    assert model_request(dataclasses.replace(config, digits_shown=0)).key == model_request(config).key


def small_checkpoint_path(folder) -> str:
    path = os.path.join(str(folder), "m.pth")
    small_checkpoint(path)
    return path


def test_model_cache_is_shared_and_bounded(tmp_path):
    cache = ModelCache(capacity=2)
    loads = []
    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, lambda key=key: loads.append((key, len(cache))) or key)
    # Room is made before each load: a new model never sits beside the one it evicts.
    assert loads == [("a", 0), ("b", 1), ("c", 1), ("b", 1)] and len(cache) == 2
    small_checkpoint(tmp_path / "m.pth")
    first = load_classifier(model_weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch")
    second = load_classifier(model_weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch", input_size=96)
    assert first.runner is second.runner and second.input_size == 96 and first.input_size == 64
    small_checkpoint(tmp_path / "m.pth", classes=("x", "y"))  # a retrained file is reloaded
    third = load_classifier(model_weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch")
    assert third.runner is not first.runner and third.class_names == ["x", "y"]
    assert len(MODEL_CACHE) <= MODEL_CACHE.capacity


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
    plugin_cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"]
    assert len(plugin_cache.MODEL_CACHE) <= plugin_cache.MODEL_CACHE.capacity


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
cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"].MODEL_CACHE
print(json.dumps({{"done": done, "rss": samples, "peak": {PEAK_RSS}, "cached": len(cache)}}))
"""
    report = json_tail(run_python(code, env_extra={"RESNEXT_MODEL_CACHE_SIZE": "2"}, timeout=1200))
    assert report["done"] == 500
    print(f"RSS after each cycle of 100 inferences (MiB): {[round(x) for x in report['rss']]}; peak {report['peak']:.0f}")
    steady = report["rss"][1:]  # the first cycle fills the cache and the allocator's pools
    assert max(steady) - steady[0] < 150, report  # no growth with the number of inferences
    assert report["cached"] == 2, report
    # Two cached models (~0.35 GB each at most) + one being loaded and folded + torch and ikomia (~1.5 GB);
    # the flat RSS above is what shows the bound is honoured, this only catches a blow-up.
    assert report["peak"] < 5000, report


IK_AND_SAVED_WORKFLOW = r"""
import json, sys
from ikomia.dataprocess.workflow import Workflow
from ikomia.utils import ik
wf = Workflow()
algo = wf.add_task(ik.infer_torchvision_resnext(model_name="resnext50", top_k="2", input_size="160"), auto_connect=True)
wf.run_on(path="photo.jpg")
wf.save("saved_workflow.json")
first = algo.get_whole_image_results()[:3]
again = Workflow()
again.load("saved_workflow.json")
again.run_on(path="photo.jpg")
task = again.get_task(again.get_task_ids()[-1])
print("RESULT" + json.dumps({"first": first, "again": task.get_whole_image_results()[:3], "params": task.get_parameters()}))
"""


@pytest.mark.slow
def test_the_ik_namespace_and_a_saved_workflow_reloaded(imagenet_weights, photo, tmp_path):
    """ik.infer_torchvision_resnext(...) (Ikomia's auto-completion, on), then the workflow saved to JSON and loaded
    in the same fresh state gives the same results with the same parameters."""
    out = printed_result(run_python(IK_AND_SAVED_WORKFLOW, env_extra={"IKOMIA_AUTO_COMPLETION": "1"}, cwd=str(tmp_path)))
    assert out["first"] == out["again"] and len(out["first"]) == 3
    assert (out["params"]["top_k"], out["params"]["input_size"], out["params"]["model_name"]) == ("2", "160", "resnext50")
