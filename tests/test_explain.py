"""Explanations: the top-1 class's activation map, placed on the original image's pixels.

The key test trains ResNeXt from scratch, through the training plugin, on images whose class is given only
by a small coloured square at a random, recorded place, then checks that on held-out images the map's peak
lies on the square.
"""
import math
import os
import time

import numpy as np
import pytest
from PIL import Image

from helpers import TRAIN, new_task
from resnext_core import load_classifier
from resnext_core.explain import explain, map_to_image
from resnext_core.preprocess import Preprocessing, image_to_tensor, region_box

FEATURE_STRIDE = 32  # ResNeXt's last block: one map cell per 32 x 32 pixels of the model's input (rounded up)


# --- geometry: the model's crop, placed on the original pixels ---------------------------------------------

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


# --- the key test: a model trained to look at a mark, and where its map says it looked ---------------------

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
    classifier = load_classifier(weight_file=marks_model, device="cpu")
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
