"""resnext_core on its own: model table, weights, preprocessing parity, checkpoints, cache."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import FileCreatingPayload, cache_random_weights, small_checkpoint, textured_image
from resnext_core import checkpoint, models
from resnext_core.errors import CheckpointError, ConfigError, ImageError, WeightsUnavailableError
from resnext_core.inference import MODEL_CACHE, ModelCache, load_classifier
from resnext_core.preprocess import Preprocessing, image_to_tensor


def test_core_imports_neither_ikomia_nor_qt():
    code = (
        "import importlib, pkgutil, sys, resnext_core;"
        "[importlib.import_module('resnext_core.' + m.name) for m in pkgutil.iter_modules(resnext_core.__path__)];"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ikomia', 'PyQt6', 'PyQt5', 'cv2')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    from conftest import run_python

    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "name, canonical",
    [("resnext50", "resnext50_32x4d"), ("ResNeXt101", "resnext101_32x8d"), (" resnext101_64x4d ", "resnext101_64x4d")],
)
def test_aliases_resolve(name, canonical):
    assert models.resolve_model_name(name) == canonical


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        models.resolve_model_name("resnet101")
    for valid in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "resnext50", "resnext101"):
        assert valid in str(info.value)


def test_best_weights_by_default_and_v1_selectable():
    assert models.resolve_weights("resnext50", "DEFAULT").name == "IMAGENET1K_V2"
    assert models.resolve_weights("resnext101", "").name == "IMAGENET1K_V2"
    assert models.resolve_weights("resnext101_64x4d", "DEFAULT").name == "IMAGENET1K_V1"
    assert models.resolve_weights("resnext50", "imagenet1k_v1").meta["_metrics"]["ImageNet-1K"]["acc@1"] == 77.618
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        models.resolve_weights("resnext101_64x4d", "IMAGENET1K_V2")


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


def test_missing_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    entry = models.resolve_weights("resnext50", "IMAGENET1K_V1")
    with pytest.raises(WeightsUnavailableError) as info:
        models.load_pretrained_state_dict(entry)
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", "resnext50_32x4d-7cdf4587.pth")
    assert expected in str(info.value) and entry.url in str(info.value)


def test_pretrained_weights_load_from_torch_cache():
    path = cache_random_weights("resnext50", "IMAGENET1K_V1")
    model, entry = models.pretrained_model("resnext50", "IMAGENET1K_V1")
    assert torch.equal(model.fc.weight, torch.load(path, weights_only=True)["fc.weight"])


def test_checkpoint_round_trip(tmp_path):
    model = small_checkpoint(tmp_path / "best.pth", epoch=3)
    spec = checkpoint.load_checkpoint(str(tmp_path / "best.pth"))
    assert spec.model_name == "resnext50_32x4d" and spec.class_names == ["cat", "dog", "bird"]
    assert spec.preprocessing == Preprocessing(64, 73)
    assert torch.equal(spec.state_dict["fc.bias"], model.state_dict()["fc.bias"])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_plain_state_dict_with_class_file(tmp_path):
    model = models.build_model("resnext50", num_classes=2)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "plain.pth")
    (tmp_path / "classes.txt").write_text("ok\n\nnot ok\n")
    spec = checkpoint.load_checkpoint(str(tmp_path / "plain.pth"), str(tmp_path / "classes.txt"))
    assert spec.class_names == ["ok", "not ok"] and spec.model_name == "resnext50_32x4d"
    with pytest.raises(CheckpointError, match="class_file"):
        checkpoint.load_checkpoint(str(tmp_path / "plain.pth"))


def test_architecture_is_read_from_the_weights(tmp_path):
    with torch.device("meta"):
        for name in models.MODEL_NAMES:
            assert checkpoint.detect_architecture(models.build_model(name).state_dict()) == name


def test_class_count_mismatch_names_both_numbers(tmp_path):
    small_checkpoint(tmp_path / "best.pth")
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(CheckpointError, match=r"5 classes.*3 outputs"):
        checkpoint.load_checkpoint(str(tmp_path / "best.pth"), str(tmp_path / "five.txt"))


def test_class_file_duplicates_refused(tmp_path):
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(CheckpointError, match="repeats class names: a"):
        checkpoint.read_class_file(str(tmp_path / "dup.txt"))


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), (b"", "empty"), (b"hello, not a checkpoint\n", "corrupt"), ("truncate", "corrupt")],
    ids=["missing", "empty", "text", "truncated"],
)
def test_bad_weight_files_name_the_path(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content == "truncate":
        small_checkpoint(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.load_checkpoint(str(path))
    assert str(path) in str(info.value)


def test_model_cache_is_shared_and_bounded(tmp_path):
    cache = ModelCache(capacity=2)
    loads = []
    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, lambda key=key: loads.append((key, len(cache))) or key)
    # Room is made before each load: a new model never sits beside the one it evicts.
    assert loads == [("a", 0), ("b", 1), ("c", 1), ("b", 1)] and len(cache) == 2
    small_checkpoint(tmp_path / "m.pth")
    first = load_classifier(weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch")
    second = load_classifier(weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch", input_size=96)
    assert first.runner is second.runner and second.input_size == 96 and first.input_size == 64
    small_checkpoint(tmp_path / "m.pth", classes=("x", "y"))  # a retrained file is reloaded
    third = load_classifier(weight_file=str(tmp_path / "m.pth"), device="cpu", engine="torch")
    assert third.runner is not first.runner and third.class_names == ["x", "y"]
    assert len(MODEL_CACHE) <= MODEL_CACHE.capacity


def test_weights_are_assigned_as_a_fresh_model_holds_them():
    """Training saves channels_last weights, users may save half ones: the model gets fp32, contiguous."""
    trained = models.build_model("resnext50", num_classes=3).to(memory_format=torch.channels_last)
    state = {k: v.half() if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    model = models.model_with_weights("resnext50", state, num_classes=3)
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    assert torch.equal(model.conv1.weight, state["conv1.weight"].float())
    with pytest.raises(RuntimeError, match="fc.weight"):
        models.model_with_weights("resnext50", {k: v for k, v in state.items() if k != "fc.weight"}, num_classes=3)


def test_folded_batch_norms_compute_the_same_function():
    from resnext_core.inference import fold_batch_norms

    torch.manual_seed(0)
    model = models.build_model("resnext50", num_classes=10).eval()
    for module in model.modules():  # statistics away from the identity, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    images = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        expected = model(images)
        folded = fold_batch_norms(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(images), expected, atol=1e-4, rtol=1e-4)


def test_auto_precision_keeps_small_cuda_batches_in_fp32():
    """Measured on an H100: bf16 autocast is 2x slower than fp32 at batch 1, 1.7x faster at 256."""
    from torch import nn

    from resnext_core.explain import Explainer
    from resnext_core.inference import CUDA_HALF_MIN_BATCH, Classifier, LoadedModel, TorchRunner

    loaded = LoadedModel(TorchRunner(nn.Identity(), torch.device("cpu")), ["a"], Preprocessing(), "test", None,
                         Explainer(nn.Identity, torch.device("cpu")))
    auto = Classifier(loaded, torch.device("cuda"), torch.bfloat16, None, auto_precision=True)
    assert auto.dtype_for(1) == torch.float32 and auto.dtype_for(CUDA_HALF_MIN_BATCH) == torch.bfloat16
    chosen = Classifier(loaded, torch.device("cuda"), torch.bfloat16, None, auto_precision=False)
    assert chosen.dtype_for(1) == torch.bfloat16, "an explicit bf16 is honoured at any batch size"
    cpu = Classifier(loaded, torch.device("cpu"), torch.bfloat16, None, auto_precision=True)
    assert cpu.dtype_for(1) == torch.bfloat16, "native CPU bf16 has no launch overhead to avoid"


def test_device_and_precision_errors():
    with pytest.raises(ConfigError, match="Unknown device 'tpu'"):
        load_classifier(device="tpu")
    with pytest.raises(ConfigError, match="Unknown precision"):
        load_classifier(precision="int3")
    with pytest.raises(ConfigError, match="int8.*calibration_folder"):
        load_classifier(precision="int8", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_classifier(device="cuda")


def test_read_image_keeps_depth_and_channels(tmp_path):
    from resnext_core.data import read_image

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


def test_unsafe_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "payload": FileCreatingPayload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load_checkpoint(str(path))
    assert not marker.exists()
