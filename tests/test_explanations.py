"""Explanations (`explain`): the top-1 class's activation map, blended over the image on image output 4.

The key test trains ResNeXt from scratch, through the training plugin, on images whose class is given only
by a small coloured square at a random, recorded place, then checks that on held-out images the map's peak
lies on the square: from the core's map, and from the plugin's output image.
"""
import math
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image

from resnext_core import load_classifier
from resnext_core.common import models
from resnext_core.common.preprocess import Preprocessing, image_to_tensor, region_box
from resnext_core.inference.engines import CPU_ENGINES
from resnext_core.inference.explain import (
    CAM_METHODS, COLORMAP, HEAT_OPACITY, UNSEEN_BRIGHTNESS, explain, map_to_image, strongest_point
)

from helpers import INFER, TRAIN, cache_random_weights, new_task, small_checkpoint, textured_image

FEATURE_STRIDE = 32  # ResNeXt's last block: one map cell per 32 x 32 pixels of the model's input (rounded up)


def _coordinate_image(height, width):
    """Float image whose channels 0 and 1 hold each pixel centre's x and y, scaled into [0, 1]."""
    scale = 4.0 * max(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return np.stack([xx / scale, yy / scale, np.zeros_like(xx)], axis=-1), scale


@pytest.mark.parametrize("height, width, preprocessing", [
    (480, 640, Preprocessing()),            # landscape: the sides are cut
    (640, 480, Preprocessing()),            # portrait
    (161, 97, Preprocessing(96, 99)),       # odd sizes, rounding of the crop's start
    (100, 37, Preprocessing(64, 73)),       # upscaled
    (20, 300, Preprocessing(32, 37)),       # beyond MAX_ASPECT: the long side is cut before resizing
    (30, 70, Preprocessing(64, 60)),        # crop larger than the resized image: padded
])
def test_crop_box_is_where_resize_crop_takes_its_pixels(height, width, preprocessing):
    """Each crop pixel of a coordinate image holds the original position crop_box() says it comes from."""
    image, scale = _coordinate_image(height, width)
    crop = preprocessing.resize_crop(image_to_tensor(image)).numpy() * scale
    left, top, right, bottom = preprocessing.crop_box(height, width)
    size = preprocessing.crop_size
    expected_x = left + (np.arange(size) + 0.5) * (right - left) / size
    expected_y = top + (np.arange(size) + 0.5) * (bottom - top) / size
    # Interpolation bends the ramp within a pixel of the image's own edges (and padding holds zeros).
    inside_x = (expected_x > 1.5) & (expected_x < width - 1.5)
    inside_y = (expected_y > 1.5) & (expected_y < height - 1.5)
    assert np.abs(crop[0][size // 2, inside_x] - expected_x[inside_x]).max() < 0.05
    assert np.abs(crop[1][inside_y, size // 2] - expected_y[inside_y]).max() < 0.05


def test_region_box_takes_every_pixel_the_rectangle_touches_inside_the_image():
    assert region_box(10.4, 20.6, 30.5, 40.2, 100, 120) == (10, 20, 41, 61)
    assert region_box(-10, 80, 50, 50, 100, 120) == (0, 80, 40, 100)
    assert region_box(130, 10, 20, 20, 100, 120) is None
    assert region_box(5, 5, 0, 10, 100, 120) is None


def test_a_hot_crop_pixel_lands_on_the_original_pixels_it_came_from():
    preprocessing = Preprocessing(64, 73)
    height, width = 90, 150
    crop_map = np.zeros((64, 64), np.float32)
    crop_map[10, 50] = 1.0
    box = preprocessing.crop_box(height, width)
    cam, seen = map_to_image(crop_map, box, height, width)
    scale = (box[2] - box[0]) / 64
    expected = (box[0] + 50.5 * scale, box[1] + 10.5 * scale)  # the hot crop pixel's centre
    row, col = np.unravel_index(np.argmax(cam), cam.shape)
    assert abs(col + 0.5 - expected[0]) <= scale / 2 + 0.5 and abs(row + 0.5 - expected[1]) <= scale / 2 + 0.5
    # Seen: the pixels whose centre lies in the crop's box, a rectangle.
    rows, columns = np.nonzero(seen.any(axis=1))[0], np.nonzero(seen.any(axis=0))[0]
    assert (rows[0], rows[-1] + 1) == (math.ceil(box[1] - 0.5), math.ceil(box[3] - 0.5))
    assert (columns[0], columns[-1] + 1) == (math.ceil(box[0] - 0.5), math.ceil(box[2] - 0.5))
    assert seen.sum() == rows.size * columns.size
    assert not cam[~seen].any(), "no heat where the model did not look"


SIZE = 72  # the marks' images and the model's input: 3 x 3 map cells of 24 pixels


MARK = 12


COLOURS = {"red": (235, 40, 40), "green": (40, 210, 40), "blue": (50, 90, 245)}


HELDOUT_WIDTH = 120  # wider than the training images: the centre crop cuts the sides off


def _background(rng, height, width):
    """Gray texture and noise: colour only in the mark."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fy, fx, phase = rng.uniform(0.5, 4, 3)
    smooth = 0.5 + 0.5 * np.sin(fy * yy / SIZE * 6 + fx * xx / SIZE * 6 + phase)
    gray = 40 + 160 * (0.6 * smooth + 0.4 * rng.uniform(0, 1, (height, width)))
    return np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)


def marked_image(rng, colour, width=SIZE, columns=(0, SIZE)):
    """A SIZE x width image with the class's square at a random place between `columns`; and that square's
    (left, top, right, bottom)."""
    image = _background(rng, SIZE, width)
    left = int(rng.integers(columns[0], columns[1] - MARK + 1))
    top = int(rng.integers(0, SIZE - MARK + 1))
    image[top : top + MARK, left : left + MARK] = COLOURS[colour]
    return image, (left, top, left + MARK, top + MARK)


def write_marks(folder, per_class, seed):
    for index, colour in enumerate(COLOURS):
        os.makedirs(os.path.join(folder, colour), exist_ok=True)
        for i in range(per_class):
            image, _ = marked_image(np.random.default_rng([seed, index, i]), colour)
            Image.fromarray(image).save(os.path.join(folder, colour, f"{i}.png"))
    return folder


def heldout_marks(per_class, seed=1):
    """[(image, colour, mark box)]: wider images, the mark within the part the model sees."""
    left, _, right, _ = Preprocessing().at_size(SIZE).crop_box(SIZE, HELDOUT_WIDTH)
    return [(*marked_image(np.random.default_rng([seed, index, i]), colour, HELDOUT_WIDTH, (math.ceil(left), int(right))), colour)
            for index, colour in enumerate(COLOURS) for i in range(per_class)]


@pytest.fixture(scope="module")
def marks_model(tmp_path_factory):
    """resnext50 trained from scratch on the marks through the training plugin: its best.pth. Whole images
    (min_crop_scale 1): a random crop could cut the mark off and leave an image without its class."""
    root = tmp_path_factory.mktemp("marks")
    _, task = new_task(TRAIN, {
        "dataset_folder": write_marks(str(root / "train"), per_class=32, seed=0), "output_folder": str(root / "runs"),
        "model_name": "resnext50", "train_mode": "scratch", "input_size": str(SIZE), "epochs": "8", "batch_size": "8",
        "optimizer": "adamw", "learning_rate": "0.002", "weight_decay": "0.05", "hflip": "False", "min_crop_scale": "1.0",
        "val_split": "0.1"})
    started = time.perf_counter()
    task.run()
    print(f"marks model trained in {time.perf_counter() - started:.0f} s (load average {os.getloadavg()[0]:.1f})")
    return os.path.join(task.get_output(0).get_path(), "best.pth")


@pytest.fixture(scope="module")
def heldout():
    return heldout_marks(per_class=20)


def _on_mark(peak, mark, tolerance):
    x, y = peak
    left, top, right, bottom = mark
    return left - tolerance <= x < right + tolerance and top - tolerance <= y < bottom + tolerance


def _tolerance(preprocessing, height, width):
    """Half a map cell, in the image's pixels: the map cannot place evidence more finely."""
    left, _, right, _ = preprocessing.crop_box(height, width)
    cell = preprocessing.crop_size / math.ceil(preprocessing.crop_size / FEATURE_STRIDE)
    return cell / 2 * (right - left) / preprocessing.crop_size


@pytest.mark.slow
def test_the_map_peaks_on_the_mark_the_model_learnt_to_look_at(marks_model, heldout):
    classifier = load_classifier(model_weight_file=marks_model, device="cpu")
    images = [image for image, _, _ in heldout]
    predicted = classifier.predict(images).argmax(1).tolist()
    accuracy = np.mean([classifier.class_names[p] == colour for p, (_, _, colour) in zip(predicted, heldout)])
    tolerance = _tolerance(classifier.preprocessing, SIZE, HELDOUT_WIDTH)
    explanations = explain(classifier, images, predicted, "gradcam")
    on_mark = np.mean([_on_mark(e.peak, mark, tolerance) for e, (_, mark, _) in zip(explanations, heldout)])
    print(f"held-out accuracy {accuracy:.3f}; gradcam peaks on the mark {on_mark:.3f} ({len(heldout)} images)")
    assert accuracy >= 0.9
    assert on_mark >= 0.8
    for explanation in explanations:
        assert explanation.cam.shape == (SIZE, HELDOUT_WIDTH), "the map covers the original image"


def _decoded_heat(image, output, seen):
    """The map the plugin's output shows, read back: heat = (output - (1 - a) image) / a, nearest colour."""
    import matplotlib

    lut = matplotlib.colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255
    heat = (output.astype(np.float32) - (1 - HEAT_OPACITY) * image) / HEAT_OPACITY
    distances = ((heat[seen][:, None, :] - lut[None, :, :]) ** 2).sum(-1)
    decoded = np.zeros(seen.shape, np.float32)
    decoded[seen] = distances.argmin(1) / 255.0
    return decoded


@pytest.mark.slow
def test_the_plugin_output_shows_the_heat_on_the_mark_and_the_rest_dimmed(marks_model, heldout, tmp_path):
    _, task = new_task(INFER, {"model_weight_file": marks_model, "explain": "gradcam"})
    preprocessing = Preprocessing().at_size(SIZE)
    tolerance = _tolerance(preprocessing, SIZE, HELDOUT_WIDTH)
    left, top, right, bottom = preprocessing.crop_box(SIZE, HELDOUT_WIDTH)
    columns = np.arange(HELDOUT_WIDTH) + 0.5
    seen = np.broadcast_to((columns >= left) & (columns < right), (SIZE, HELDOUT_WIDTH))
    hits = correct = 0
    for image, mark, colour in heldout:
        task.get_input(0).set_image(image)
        task.run()
        output = task.get_output(4).get_image()
        assert output.shape == image.shape and output.dtype == np.uint8
        assert np.array_equal(output[~seen], np.round(UNSEEN_BRIGHTNESS * image[~seen].astype(np.float32))), \
            "outside the model's crop: the image dimmed, no heat"
        assert np.abs(output[seen].astype(int) - image[seen]).mean() > 10, "heat over what the model saw"
        hits += _on_mark(strongest_point(_decoded_heat(image, output, seen), seen), mark, tolerance)
        correct += task.get_whole_image_results()[0][0] == colour
    print(f"plugin: top-1 correct {correct}/{len(heldout)}; heat peaks on the mark {hits}/{len(heldout)}")
    assert correct >= 0.9 * len(heldout) and hits >= 0.8 * len(heldout)
    path = tmp_path / "explained.png"
    Image.fromarray(output).save(path)
    rendered = np.asarray(Image.open(path))
    assert rendered.shape == image.shape and len(np.unique(rendered.reshape(-1, 3), axis=0)) > 100, "a picture, not a blank"


@pytest.mark.slow
def test_each_region_is_explained_in_its_own_box(marks_model, heldout):
    """Two marks' images pasted into a larger canvas, one region each: each region's top-1 is its mark's
    colour, its heat peaks on its mark, and outside the boxes the image is only dimmed."""
    from ikomia import core

    canvas = textured_image(260, 420, seed=3)
    placed = [(heldout[0], (20, 30)), (heldout[-1], (230, 140))]  # a red and a blue image
    rectangles, expected = [], []
    for (image, (mark_left, mark_top, mark_right, mark_bottom), colour), (x, y) in placed:
        canvas[y : y + SIZE, x : x + HELDOUT_WIDTH] = image
        rectangles.append(core.CGraphicsRectangle(x, y, HELDOUT_WIDTH, SIZE))
        expected.append((colour, (x + mark_left, y + mark_top, x + mark_right, y + mark_bottom)))
    _, task = new_task(INFER, {"model_weight_file": marks_model, "explain": "gradcam"})
    task.get_input(0).set_image(canvas)
    task.get_input(1).set_items(rectangles)
    task.run()
    objects = task.get_objects_results().get_objects()
    assert [o.label for o in objects] == [colour for colour, _ in expected]
    output = task.get_output(4).get_image()
    inside = np.zeros(canvas.shape[:2], bool)
    for _, (x, y) in placed:
        inside[y : y + SIZE, x : x + HELDOUT_WIDTH] = True
    assert np.array_equal(output[~inside], np.round(UNSEEN_BRIGHTNESS * canvas[~inside].astype(np.float32)))
    tolerance = _tolerance(Preprocessing().at_size(SIZE), SIZE, HELDOUT_WIDTH)
    classifier = load_classifier(model_weight_file=marks_model, device="cpu")
    for (colour, mark), (_, (x, y)) in zip(expected, placed):
        crop = canvas[y : y + SIZE, x : x + HELDOUT_WIDTH]
        (explanation,) = explain(classifier, [crop], [classifier.class_names.index(colour)], "gradcam",
                                 boxes=[(x, y, x + HELDOUT_WIDTH, y + SIZE)])
        assert _on_mark(explanation.peak, mark, tolerance), (colour, explanation.peak, mark)


def _plugin_cache():
    """The plugin's own (vendored) model cache."""
    return sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"].MODEL_CACHE


def test_regions_get_heat_inside_their_boxes_only(tmp_path):
    from ikomia import core

    small_checkpoint(tmp_path / "m.pth")
    image = textured_image(200, 300, seed=2)
    boxes = [(10.5, 20, 80, 60), (150, 90, 140, 100)]
    _, task = new_task(INFER, {"model_weight_file": str(tmp_path / "m.pth"), "explain": "gradcam"})
    task.get_input(0).set_image(image)
    task.get_input(1).set_items([core.CGraphicsRectangle(*box) for box in boxes])
    task.run()
    output = task.get_output(4).get_image()
    inside = np.zeros(image.shape[:2], bool)
    for box in boxes:
        left, top, right, bottom = region_box(*box, *image.shape[:2])
        inside[top:bottom, left:right] = True
    dimmed = np.round(UNSEEN_BRIGHTNESS * image.astype(np.float32)).astype(np.uint8)
    assert np.array_equal(output[~inside], dimmed[~inside])
    for box in boxes:
        left, top, right, bottom = region_box(*box, *image.shape[:2])
        differs = np.any(output[top:bottom, left:right] != dimmed[top:bottom, left:right], axis=-1)
        assert differs.mean() > 0.5, f"region {box} is heat-coloured where the model saw it"


@pytest.mark.slow
def test_either_engine_explains_alike_and_none_builds_nothing(tmp_path):
    small_checkpoint(tmp_path / "m.pth")
    image = textured_image(90, 130, seed=4)
    outputs = {}
    for engine in ("auto", "torch"):
        _, task = new_task(INFER, {"model_weight_file": str(tmp_path / "m.pth"), "engine": engine})
        assert task.get_output_count() == 5, "the explanation output is there, explain on or off"
        task.get_input(0).set_image(image)
        task.run()
        loaded = list(_plugin_cache()._entries.values())[-1]
        assert loaded.runner.engine == {"auto": next(iter(CPU_ENGINES))}.get(engine, engine)
        assert task.get_output(4).get_image() is None, "explain none: the output stays empty"
        assert not loaded.explainer.built, "explain none: no model is built for maps"
        task.set_parameters({"explain": "gradcam"})
        task.run()
        assert loaded.explainer.built
        outputs[engine] = task.get_output(4).get_image()
        assert outputs[engine].shape == image.shape
        task.set_parameters({"explain": "none"})
        task.run()
        assert task.get_output(4).get_image() is None, "turned off again: emptied"
    difference = np.abs(outputs["auto"].astype(int) - outputs["torch"]).max()
    assert difference <= 1, "the same map whichever engine classified"


@pytest.mark.parametrize("model_name, method", [(name, "gradcam") for name in models.MODEL_NAMES] +
                         [("resnext50_32x4d", method) for method in CAM_METHODS if method != "gradcam"])
@pytest.mark.slow
def test_every_model_and_method_is_explained(model_name, method):
    cache_random_weights(model_name)
    image = textured_image(70, 90, seed=5)
    _, task = new_task(INFER, {"model_name": model_name, "input_size": "64", "engine": "torch", "explain": method})
    task.get_input(0).set_image(image)
    task.run()
    output = task.get_output(4).get_image()
    assert output.shape == image.shape and len(np.unique(output.reshape(-1, 3), axis=0)) > 50


def test_unknown_method_is_refused_with_the_valid_ones():
    _, task = new_task(INFER, {"explain": "gradcamm"})
    task.get_input(0).set_image(textured_image(40, 40))
    with pytest.raises(Exception, match="explain must be one of none, gradcam, gradcam\\+\\+, xgradcam, layercam, "
                                        "hirescam, eigencam, got 'gradcamm'"):
        task.run()


CV2_ORDER = r"""
import hashlib, importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
import cv2
import numpy as np
from ikomia.dataprocess.workflow import Workflow
image = cv2.cvtColor(np.tile(np.arange(160, dtype=np.uint8), (120, 1)), cv2.COLOR_GRAY2RGB)
algo = Workflow().add_task(name="infer_torchvision_resnext")
algo.set_parameters({"model_name": "resnext50", "input_size": "64", "explain": "gradcam"})
algo.get_input(0).set_image(image)
algo.run()
import pytorch_grad_cam  # noqa: F401  (imported by the run: its cv2 is the one loaded)
print("RESULT", cv2.__version__, hashlib.sha256(algo.get_output(4).get_image().tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_grad_cam_runs_with_either_opencv_and_adds_none(tmp_path):
    """grad-cam imports cv2 when the first map is made: with opencv-python-headless (cv2 imported before
    ikomia) or ikomia's bundled OpenCV (after), the same picture; and no other OpenCV wheel came with it."""
    from importlib import metadata

    from conftest import run_python

    cache_random_weights("resnext50")
    outcomes = []
    for order in (["cv2", "ikomia"], ["ikomia"]):
        completed = run_python(f"import sys; sys.argv[1:] = {order!r}\n" + CV2_ORDER, cwd=str(tmp_path))
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
        assert completed.returncode == 0 and lines, completed.stderr[-2000:]
        outcomes.append(lines[-1].split()[1:])
    assert outcomes[0][0].startswith("5.") and outcomes[0][1] == outcomes[1][1], outcomes
    installed = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
    assert "grad-cam" in installed and not installed & {"opencv-python", "opencv-contrib-python"}
