"""infer_torchvision_resnext as users call it: Workflow().add_task(name=...), real ikomia, real torchvision."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_python
from helpers import INFER, cache_random_weights, new_task, results, run_on_array, small_checkpoint, textured_image
from resnext_core import models
from resnext_core.inference import load_classifier

SNIPPET = """
from ikomia.dataprocess.workflow import Workflow
wf = Workflow()
algo = wf.add_task(name="infer_torchvision_resnext", auto_connect=True)
algo.set_parameters({"model_name": "%s", "input_size": "224"})
wf.run_on(path="photo.jpg")
img = algo.get_image_with_graphics()
"""


@pytest.fixture(scope="module")
def imagenet_weights():
    for name in models.MODEL_NAMES:
        cache_random_weights(name)


@pytest.fixture
def photo(tmp_path, monkeypatch):
    image = textured_image(240, 320)
    Image.fromarray(image).save(tmp_path / "photo.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    return np.asarray(Image.open(tmp_path / "photo.jpg").convert("RGB"))


def assert_ranked(pairs, count):
    assert len(pairs) == count
    confidences = [c for _, c in pairs]
    assert confidences == sorted(confidences, reverse=True)
    assert abs(sum(confidences) - 1.0) < 1e-3
    assert len({n for n, _ in pairs}) == count


def changed_box(before, after):
    rows, cols = np.nonzero(np.any(before != after, axis=-1))
    return (rows.min(), rows.max(), cols.min(), cols.max()) if rows.size else None


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
    both = load_classifier(device="cpu", engine="torch", mirror=True).predict([image, image])
    assert torch.allclose(both, expected.expand(2, -1), atol=1e-5)
    _, task = new_task(INFER, {"tta": "True", "engine": "torch", "top_k": "3"})
    run_on_array(task, image)
    assert [c for _, c in results(task)[:3]] == pytest.approx(expected[0].sort(descending=True).values[:3].tolist(), abs=1e-4)


def test_imagenet_weights_take_a_given_temperature(imagenet_weights):
    image = textured_image(240, 320)
    raw = load_classifier(device="cpu", engine="torch", calibrate=False).predict([image])
    assert torch.allclose(load_classifier(device="cpu", engine="torch").predict([image]), raw)  # T = 1 by default
    hotter = load_classifier(device="cpu", engine="torch", temperature=2.0).predict([image])
    assert torch.allclose(hotter, (raw.log() / 2).softmax(1), atol=1e-5)
    assert torch.equal(hotter.argmax(1), raw.argmax(1))
    assert torch.allclose(load_classifier(device="cpu", engine="torch", temperature=2.0, calibrate=False).predict([image]), raw)


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
    inference = sys.modules["infer_torchvision_resnext.resnext_core.inference"]
    task.run()  # loads the model into the plugin's cache
    loaded = list(inference.MODEL_CACHE._entries.values())[-1]  # most recently used
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
    classifier = load_classifier(weight_file=weight_file)
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
