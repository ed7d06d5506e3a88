"""Any image in: preprocessing as the weights were trained, every array numpy holds, image files, huge images."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from resnext_core.common import models
from resnext_core.common.errors import ImageError
from resnext_core.common.preprocess import Preprocessing, image_to_tensor

from conftest import run_python
from helpers import INFER, PEAK_RSS, cache_random_weights, json_tail, textured_image

# The largest confidence difference between a JPEG decoded whole and at 1/8 on the digits model (docs/performance.md).
REDUCED_DECODING_TOLERANCE = 0.05


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "IMAGENET1K_V2"])
@pytest.mark.parametrize("shape", [(300, 451), (500, 240), (224, 224), (40, 60)])
def test_preprocessing_matches_weights_transforms(weights, shape):
    entry = models.resolve_weights("resnext50", weights)
    image = (np.random.default_rng(1).random(shape + (3,)) * 255).astype(np.uint8)
    ours = Preprocessing.from_weights(entry)(image)
    reference = entry.transforms()(torch.from_numpy(image).permute(2, 0, 1))
    assert ours.shape == reference.shape == (3, 224, 224)
    # Ours resizes uint8 in torch's uint8 kernel (no float copy of the whole photo), rounding in
    # fixed point: at most one 1/255 level from the float path of the reference (a quarter level on average).
    one_level = 1 / 255 / min(entry.transforms().std)
    assert (ours - reference).abs().max() < one_level + 1e-4
    assert (ours - reference).abs().mean() < 0.25 * one_level
    # torchvision's own transform on a PIL image differs only by PIL's resampling (a few 1/255 steps).
    assert (ours - entry.transforms()(Image.fromarray(image))).abs().mean() < 0.02


def test_preprocessing_scales_resize_with_input_size():
    v2 = Preprocessing.from_weights(models.resolve_weights("resnext50", "IMAGENET1K_V2"), 320)
    v1 = Preprocessing.from_weights(models.resolve_weights("resnext50", "IMAGENET1K_V1"), 112)
    assert (v2.crop_size, v2.resize_size) == (320, 331)
    assert (v1.crop_size, v1.resize_size) == (112, 128)
    assert v2(textured_image(100, 150)).shape == (3, 320, 320)


@pytest.mark.parametrize(
    "image",
    [
        textured_image(30, 40, 1)[:, :, 0],
        textured_image(30, 40, 1),
        textured_image(30, 40, 2),
        textured_image(30, 40, 4),
        textured_image(30, 40, 3, np.uint16),
        textured_image(30, 40, 3, np.float32),
        textured_image(30, 40, 3, np.float32) * 255,
        np.ones((1, 1, 3), np.uint8),
        np.ones((1, 5000), np.uint8),
    ],
    ids=["gray2d", "gray3d", "gray_alpha", "rgba", "uint16", "float01", "float255", "1x1", "strip"],
)
def test_any_image_becomes_model_input(image):
    tensor = Preprocessing()(image)
    assert tensor.shape == (3, 224, 224) and torch.isfinite(tensor).all()


def test_equivalent_images_give_equal_tensors():
    rgb = textured_image(60, 80, 3)
    pre = Preprocessing()
    rgba = np.concatenate([rgb, np.full((60, 80, 1), 7, np.uint8)], axis=2)
    assert torch.equal(pre(rgb), pre(rgba))
    as16 = rgb.astype(np.uint16) * 257  # same intensities on the 16-bit scale
    assert (pre(rgb) - pre(as16)).abs().max() < 0.02
    gray = rgb[:, :, 0]
    assert torch.equal(pre(gray), pre(np.stack([gray] * 3, axis=-1)))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 5), np.uint8), "got 5"),
        (np.zeros((5,), np.uint8), "shape"),
        (np.full((5, 5, 3), np.nan, np.float32), "NaN"),
        (np.full((5, 5, 3), -3, np.int64), "-3"),
    ],
)
def test_bad_images_get_clear_errors(image, message):
    with pytest.raises(ImageError, match=message):
        image_to_tensor(image)


def test_read_image_keeps_depth_and_channels(tmp_path):
    from resnext_core.data.decode import read_image

    gray16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    Image.fromarray(textured_image(12, 10, 4)).save(tmp_path / "rgba.png")
    Image.fromarray(textured_image(12, 10)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(textured_image(12, 10)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert read_image(str(tmp_path / "g16.png")).dtype == np.uint16
    assert np.array_equal(read_image(str(tmp_path / "g16.png")), gray16)
    assert read_image(str(tmp_path / "rgba.png")).shape == (12, 10, 4)
    assert read_image(str(tmp_path / "palette.png")).shape == (12, 10, 4)
    assert read_image(str(tmp_path / "cmyk.jpg")).shape == (12, 10, 3)
    with pytest.raises(ImageError, match="broken.png"):
        read_image(str(tmp_path / "broken.png"))
    for name in ("g16.png", "rgba.png", "palette.png", "cmyk.jpg"):
        assert Preprocessing(32, 36)(read_image(str(tmp_path / name))).shape == (3, 32, 32)


DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_])


SHAPES = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 6)),
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES, shape=SHAPES)
def test_any_array_gives_a_tensor_or_a_clear_image_error(data, dtype, shape):
    # No subnormal floats: ikomia's libraries turn on flush-to-zero, and hypothesis refuses to draw them then.
    elements = None
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_subnormal=False)
    image = data.draw(hnp.arrays(dtype, shape, elements=elements))
    try:
        tensor = Preprocessing(32, 36)(image)
    except ImageError as error:
        assert str(error)  # a message that names the problem
        return
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32 and torch.isfinite(tensor).all()


# The process's own peak in MiB. Not ru_maxrss: Linux carries it across fork and exec, so a child would report
# pytest's size at the fork and a growth measured with it could read 0.
@pytest.mark.slow
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
    report = json_tail(run_python(code))
    assert report["shape"] == [10000, 10000, 3] and report["results"] == 1000
    # Ikomia's own copies in and out (input, output, image with graphics) are ~3x.
    assert report["growth"] < 3.6 * report["image"], report


def _jpeg(path, height, width, seed=0, **options) -> str:
    Image.fromarray(textured_image(height, width, seed=seed)).save(path, quality=92, **options)
    return str(path)


def test_a_jpeg_is_decoded_at_the_smallest_scale_that_gives_the_pixels_needed(tmp_path):
    """libjpeg's 1/2, 1/4 and 1/8 scales: the inference resize needs the shorter side, the training crop an area
    its smallest crop still covers crop_size in; other formats, and what is already small, decode whole."""
    from resnext_core.data.decode import PixelsNeeded, read_image

    phone = _jpeg(tmp_path / "phone.jpg", 3000, 4000)
    assert read_image(phone).shape == (3000, 4000, 3)
    assert read_image(phone, PixelsNeeded.for_resize(232)).shape == (375, 500, 3)
    assert read_image(phone, PixelsNeeded.for_resize(400)).shape == (750, 1000, 3)
    training = PixelsNeeded.for_random_crop(224, 0.25)
    assert training.area == 267606 and read_image(phone, training).shape == (750, 1000, 3)
    assert read_image(phone, PixelsNeeded.for_random_crop(224, 0.08)).shape == (1500, 2000, 3)
    assert read_image(_jpeg(tmp_path / "small.jpg", 300, 400), PixelsNeeded.for_resize(232)).shape == (300, 400, 3)
    odd = _jpeg(tmp_path / "odd.jpg", 2001, 3007)  # libjpeg rounds a reduced side up: never fewer pixels than asked
    assert read_image(odd, PixelsNeeded.for_resize(250)).shape == (251, 376, 3)
    Image.fromarray(textured_image(1200, 1600)).save(tmp_path / "scan.png", compress_level=1)
    assert read_image(str(tmp_path / "scan.png"), PixelsNeeded.for_resize(232)).shape == (1200, 1600, 3)


def test_a_photo_is_turned_upright_by_its_exif_orientation_as_ikomia_reads_it(tmp_path):
    """A phone photo stored sideways with an orientation tag: read as OpenCV's imread (Ikomia's) reads it."""
    from ikomia import dataprocess
    from ikomia.core import IODataType

    from resnext_core.data.decode import PixelsNeeded, read_image

    image = np.zeros((400, 800, 3), np.uint8)
    image[:, :400] = 255  # stored: the left half white
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the top half white
    Image.fromarray(image).save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=95)
    ikomia = dataprocess.CImageIO(IODataType.IMAGE, "photo", str(tmp_path / "sideways.jpg")).get_image()
    for ours in (read_image(str(tmp_path / "sideways.jpg")), read_image(str(tmp_path / "sideways.jpg"), PixelsNeeded.for_resize(100))):
        scale = ikomia.shape[0] // ours.shape[0]
        assert ours.shape[:2] == (800 // scale, 400 // scale) == (ikomia.shape[0] // scale, ikomia.shape[1] // scale)
        assert ours[: ours.shape[0] // 2 - 2].min() > 240 and ours[ours.shape[0] // 2 + 2 :].max() < 15


def test_reduced_decoding_classifies_as_whole_decoding_within_the_measured_tolerance(tmp_path, digits_model, heldout):
    """Held-out digits as 1600 x 1600 JPEGs, read whole (what the plugin gets from Ikomia) and at 1/8 (what the bulk
    commands and the trainer read): the same top-1, confidences close (docs/performance.md: at 12 MP on 200
    digits, top-1 agreement 100%)."""
    from resnext_core import load_classifier
    from resnext_core.data.decode import PixelsNeeded, read_image

    classifier = load_classifier(model_weight_file=digits_model, device="cpu", precision="fp32", engine="torch")
    needed = PixelsNeeded.for_resize(classifier.preprocessing.resize_size)
    whole, reduced = [], []
    for index, (image, _) in enumerate(heldout[::18]):
        path = str(tmp_path / f"{index}.jpg")
        Image.fromarray(image).resize((1600, 1600), Image.BILINEAR).save(path, quality=92)
        whole.append(read_image(path))
        reduced.append(read_image(path, needed))
    assert reduced[0].shape == (200, 200, 3)
    whole, reduced = classifier.predict(whole), classifier.predict(reduced)
    assert torch.equal(whole.argmax(1), reduced.argmax(1))
    assert (whole - reduced).abs().max() < REDUCED_DECODING_TOLERANCE
