"""resnext_core.onnx_engine: the default CPU engine, its on-disk cache, and its agreement with torch."""
import json
import os

import numpy as np
import pytest
import torch

from helpers import INFER, cache_random_weights, new_task, small_checkpoint, textured_image
from resnext_core import onnx_engine
from resnext_core.errors import ConfigError
from resnext_core.inference import fold_batch_norms, load_classifier
from resnext_core.models import build_model
from resnext_core.onnx_engine import OnnxCache

IMAGES = [textured_image(90 + 11 * i, 140 - 9 * i, seed=i) for i in range(5)]


def _probabilities(engine, **source):
    classifier = load_classifier(device="cpu", engine=engine, **source)
    return classifier.engine, classifier.predict(IMAGES[:1]), classifier.predict(IMAGES)


@pytest.mark.parametrize("source", ["checkpoint", "imagenet"])
def test_onnxruntime_is_the_cpu_default_and_agrees_with_torch(tmp_path, source):
    if source == "checkpoint":
        small_checkpoint(tmp_path / "m.pth")
        spec = {"weight_file": str(tmp_path / "m.pth")}
    else:
        cache_random_weights("resnext50")
        spec = {"model_name": "resnext50", "input_size": 64}
    engine, single, batch = _probabilities("auto", **spec)
    _, torch_single, torch_batch = _probabilities("torch", **spec)
    assert engine == "onnxruntime"
    assert batch.shape == torch_batch.shape and single.shape[0] == 1  # dynamic batch: 1 and 5 in one graph
    assert (batch - torch_batch).abs().max() < 1e-4 and (single - torch_single).abs().max() < 1e-4
    assert torch.equal(batch.argmax(1), torch_batch.argmax(1))
    assert (batch.max(1).values - batch.min(1).values).min() > 1e-3, "outputs must depend on the input to compare"


class CountingBuild:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        torch.manual_seed(0)
        return fold_batch_norms(build_model("resnext50", num_classes=4).eval())


def _logits(runner):
    return runner(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))


def test_cache_entry_is_built_once_and_reused_by_a_new_process(tmp_path):
    build = CountingBuild()
    first = OnnxCache(str(tmp_path)).runner("w:1", 32, build)
    again = OnnxCache(str(tmp_path)).runner("w:1", 32, build)  # a fresh cache object: nothing in memory
    assert build.calls == 1
    assert torch.equal(_logits(first), _logits(again))
    OnnxCache(str(tmp_path)).runner("w:1", 48, build)  # another input size is another graph
    OnnxCache(str(tmp_path)).runner("w:2", 32, build)  # other weights too
    assert build.calls == 3 and len(os.listdir(tmp_path)) == 6


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "record garbage", "record missing", "valid hash, not ONNX"])
def test_corrupt_cache_entry_is_rebuilt_never_trusted(tmp_path, damage):
    build = CountingBuild()
    cache = OnnxCache(str(tmp_path))
    expected = _logits(cache.runner("w:1", 32, build))
    onnx_path, record_path = cache.paths(cache.key("w:1", 32))
    data = bytearray(open(onnx_path, "rb").read())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF  # inside the weights: ONNX Runtime would load it and answer wrongly
        open(onnx_path, "wb").write(bytes(data))
    elif damage == "truncated":
        open(onnx_path, "wb").write(bytes(data[: len(data) // 3]))
    elif damage == "record garbage":
        open(record_path, "w").write("{not json")
    elif damage == "record missing":
        os.remove(record_path)
    else:
        open(onnx_path, "wb").write(b"not an onnx model")
        record = json.load(open(record_path))
        record["sha256"] = onnx_engine.file_sha256(onnx_path)
        open(record_path, "w").write(json.dumps(record))
    rebuilt = OnnxCache(str(tmp_path)).runner("w:1", 32, build)
    assert build.calls == 2
    assert torch.allclose(_logits(rebuilt), expected, atol=1e-5)


def test_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_engine, "CACHE_ENTRIES", 2)
    build, cache = CountingBuild(), OnnxCache(str(tmp_path))
    for name in ("w:a", "w:b"):
        OnnxCache(str(tmp_path)).runner(name, 32, build)
    os.utime(cache.paths(cache.key("w:b", 32))[1], (1, 1))  # b: long unused
    OnnxCache(str(tmp_path)).runner("w:a", 32, build)  # a: used now
    OnnxCache(str(tmp_path)).runner("w:c", 32, build)  # c: new, b goes
    kept = sorted(json.load(open(os.path.join(tmp_path, n)))["weights"] for n in os.listdir(tmp_path) if n.endswith(".json"))
    assert kept == ["w:a", "w:c"] and len(os.listdir(tmp_path)) == 4 and build.calls == 3


def test_engine_errors_name_the_parameter_and_choices(tmp_path):
    with pytest.raises(ConfigError, match="engine must be one of auto, torch, onnxruntime, got 'tensorrt'"):
        load_classifier(engine="tensorrt", device="cpu")
    with pytest.raises(ConfigError, match="engine 'onnxruntime' runs fp32 on the CPU.*bf16"):
        load_classifier(engine="onnxruntime", device="cpu", precision="bf16")


def test_plugin_runs_onnxruntime_by_default_and_torch_on_request(tmp_path):
    import sys

    small_checkpoint(tmp_path / "m.pth")
    confidences = {}
    for engine in ("auto", "torch"):
        _, task = new_task(INFER, {"model_weight_file": str(tmp_path / "m.pth"), "engine": engine})
        task.get_input(0).set_image(IMAGES[0])
        task.run()
        inference = sys.modules["infer_torchvision_resnext.resnext_core.inference"]
        assert list(inference.MODEL_CACHE._entries.values())[-1].runner.engine == {"auto": "onnxruntime"}.get(engine, engine)
        confidences[engine] = dict((n, float(c)) for n, c in task.get_whole_image_results())
    assert confidences["auto"].keys() == confidences["torch"].keys()
    assert max(abs(confidences["auto"][n] - confidences["torch"][n]) for n in confidences["auto"]) < 1e-4
