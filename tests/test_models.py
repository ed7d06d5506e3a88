"""Models and their weights: names and aliases, torchvision's weights API and cache, building and folding."""
import os

import pytest
import torch

from resnext_core.common import models
from resnext_core.common.errors import ConfigError, WeightsUnavailableError

from helpers import cache_random_weights


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
    from resnext_core.common.anatomy import fold_batch_norms

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
