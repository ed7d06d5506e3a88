"""Engines and precisions: OpenVINO (the CPU default), ONNX Runtime and torch agree; their disk cache never trusts
a corrupt entry; bf16 and int8 where the hardware runs them; device and precision choices and errors."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from resnext_core import load_classifier
from resnext_core.common import runtime
from resnext_core.common.errors import ConfigError
from resnext_core.common.files import file_sha256
from resnext_core.common.models import build_model
from resnext_core.common.onnx_export import INPUT_NAME, ONNX, export_onnx_model, new_session
from resnext_core.common.preprocess import Preprocessing
from resnext_core.common.runtime import cpu_has_native_bf16
from resnext_core.inference import engine_cache, engines
from resnext_core.common.anatomy import fold_batch_norms
from resnext_core.inference.engine_cache import RECORD, EngineCache
from resnext_core.inference.engines import CPU_ENGINES
from resnext_core.inference.onnxruntime_engine import onnx_facts, onnxruntime_runner
from resnext_core.inference.openvino_engine import BIN, XML, inference_precision_for, openvino_facts, openvino_runner

from helpers import INFER, cache_random_weights, new_task, small_checkpoint, textured_image

IMAGES = [textured_image(90 + 11 * i, 140 - 9 * i, seed=i) for i in range(5)]


def _probabilities(engine, precision="fp32", **source):
    classifier = load_classifier(device="cpu", engine=engine, precision=precision, **source)
    return classifier.engine, classifier.predict(IMAGES[:1]), classifier.predict(IMAGES)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["checkpoint", "imagenet"])
def test_cpu_engines_agree_with_torch_and_auto_picks_openvino(tmp_path, source):
    if source == "checkpoint":
        small_checkpoint(tmp_path / "m.pth")
        spec = {"model_weight_file": str(tmp_path / "m.pth")}
    else:
        cache_random_weights("resnext50")
        spec = {"model_name": "resnext50", "input_size": 64}
    _, torch_single, torch_batch = _probabilities("torch", **spec)
    assert _probabilities("auto", "auto", **spec)[0] == next(iter(CPU_ENGINES)) == "openvino"
    for engine in CPU_ENGINES:
        used, single, batch = _probabilities(engine, **spec)
        assert used == engine
        assert batch.shape == torch_batch.shape and single.shape[0] == 1  # dynamic batch: 1 and 5 in one graph
        assert (batch - torch_batch).abs().max() < 1e-4 and (single - torch_single).abs().max() < 1e-4, engine
        assert torch.equal(batch.argmax(1), torch_batch.argmax(1))
    assert (batch.max(1).values - batch.min(1).values).min() > 1e-3, "outputs must depend on the input to compare"


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="OpenVINO runs bf16 only on CPUs with AVX512-BF16 or AMX")
def test_openvino_bf16_computes_in_bf16_where_the_cpu_has_it(tmp_path):
    """OpenVINO's own default on such CPUs is bf16 for every model: fp32 must be asked for (the test above), and
    bf16 then gives what torch's bf16 autocast gives, within bf16's rounding."""
    small_checkpoint(tmp_path / "m.pth")
    spec = {"model_weight_file": str(tmp_path / "m.pth")}
    _, _, exact = _probabilities("torch", **spec)
    _, _, torch_bf16 = _probabilities("torch", "bf16", **spec)
    used, _, openvino_bf16 = _probabilities("openvino", "bf16", **spec)
    assert used == "openvino"
    assert 1e-6 < (openvino_bf16 - exact).abs().max() < 1e-2, "bf16's rounding, no more"
    assert (openvino_bf16 - torch_bf16).abs().max() < 1e-2


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_runs_the_cpus_precision_on_openvino(monkeypatch, native_bf16):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native_bf16)
    cpu = torch.device("cpu")
    dtype = runtime.resolve_precision("auto", cpu)
    assert dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    assert engines.resolve_engine("auto", cpu, dtype) == "openvino"
    assert engines.resolve_engine("auto", cpu, torch.bfloat16) == ("openvino" if native_bf16 else "torch"), \
        "bf16 where the CPU lacks it: emulated by torch"
    assert engines.resolve_engine("auto", torch.device("cuda"), dtype) == "torch"


@pytest.mark.parametrize("native_bf16", [True, False])
def test_openvino_float_layers_compute_in_the_precision_asked(monkeypatch, native_bf16):
    """int8's float layers take bf16 where the CPU computes it natively (no larger error than int8's own)."""
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native_bf16)
    assert inference_precision_for(torch.float32) == "f32"
    assert inference_precision_for(torch.bfloat16) == "bf16"
    assert inference_precision_for(torch.int8) == ("bf16" if native_bf16 else "f32")


class CountingBuild:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        torch.manual_seed(0)
        return fold_batch_norms(build_model("resnext50", num_classes=4).eval())


def _logits(runner):
    return runner(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))


@pytest.mark.slow
def test_cache_entry_is_built_once_and_reused_by_a_new_process(tmp_path):
    build = CountingBuild()
    first = onnxruntime_runner("w:1", 32, build, EngineCache(str(tmp_path)))
    again = onnxruntime_runner("w:1", 32, build, EngineCache(str(tmp_path)))  # a fresh cache object: nothing in memory
    assert build.calls == 1
    assert torch.equal(_logits(first), _logits(again))
    onnxruntime_runner("w:1", 48, build, EngineCache(str(tmp_path)))  # another input size is another graph
    onnxruntime_runner("w:2", 32, build, EngineCache(str(tmp_path)))  # other weights too
    assert build.calls == 3 and len(os.listdir(tmp_path)) == 6
    openvino_runner("w:1", 32, build, cache=EngineCache(str(tmp_path)))  # converted from the ONNX entry
    assert build.calls == 3 and len(os.listdir(tmp_path)) == 9


def _damage(paths, damage, file_suffix):
    path, record_path = paths[file_suffix], paths[RECORD]
    data = bytearray(open(path, "rb").read())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF  # inside the weights: the engine would load it and answer wrongly
        open(path, "wb").write(bytes(data))
    elif damage == "truncated":
        open(path, "wb").write(bytes(data[: len(data) // 3]))
    elif damage == "record garbage":
        open(record_path, "w").write("{not json")
    elif damage == "record missing":
        os.remove(record_path)
    else:  # a matching hash: only the engine can tell
        open(path, "wb").write(b"not a model")
        record = json.load(open(record_path))
        record["sha256"][file_suffix] = file_sha256(path)
        open(record_path, "w").write(json.dumps(record))


DAMAGES = ["flipped byte", "truncated", "record garbage", "record missing", "valid hash, not a model"]


@pytest.fixture(scope="module")
def onnx_entry(tmp_path_factory):
    """A cache folder holding the ONNX entry of CountingBuild's model at 32 px: exported once for the module."""
    folder = tmp_path_factory.mktemp("onnx-entry")
    onnxruntime_runner("w:1", 32, CountingBuild(), EngineCache(str(folder)))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_onnx_entry_is_rebuilt_never_trusted(tmp_path, onnx_entry, damage):
    shutil.copytree(onnx_entry, tmp_path, dirs_exist_ok=True)
    build = CountingBuild()
    cache = EngineCache(str(tmp_path))
    expected = _logits(onnxruntime_runner("w:1", 32, build, cache))
    assert build.calls == 0, "the intact entry is used as it is"
    _damage(cache.paths(onnx_facts("w:1", 32), (ONNX,)), damage, ONNX)
    rebuilt = onnxruntime_runner("w:1", 32, build, EngineCache(str(tmp_path)))
    assert build.calls == 1
    assert torch.allclose(_logits(rebuilt), expected, atol=1e-5)


@pytest.mark.slow
def test_onnx_export_falls_back_to_the_torch_export_based_exporter(tmp_path, monkeypatch):
    """torch deprecates the TorchScript-based exporter that export_onnx_model tries first: without it (simulated by
    refusing dynamo=False), the file still comes, from the torch.export-based one, and agrees with torch."""
    real_export, used = torch.onnx.export, []

    def without_torchscript(*args, dynamo=True, **kwargs):
        used.append(dynamo)
        if not dynamo:
            raise RuntimeError("the TorchScript-based exporter is gone")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_torchscript)
    model = CountingBuild()()
    export_onnx_model(model, torch.zeros(1, 3, 32, 32), str(tmp_path / "m.onnx"))
    assert used == [False, True]
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = new_session(str(tmp_path / "m.onnx")).run(None, {INPUT_NAME: batch.numpy()})[0]
    assert np.abs(logits - model(batch).detach().numpy()).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("damage,file_suffix", [(d, BIN) for d in DAMAGES] + [("truncated", XML), ("valid hash, not a model", XML)])
def test_corrupt_openvino_entry_is_rebuilt_never_trusted(tmp_path, onnx_entry, damage, file_suffix):
    shutil.copytree(onnx_entry, tmp_path, dirs_exist_ok=True)
    build = CountingBuild()
    cache = EngineCache(str(tmp_path))
    expected = _logits(openvino_runner("w:1", 32, build, cache=cache))
    paths = cache.paths(openvino_facts("w:1", 32, None), (XML, BIN))
    _damage(paths, damage, file_suffix)
    rebuilt = openvino_runner("w:1", 32, build, cache=EngineCache(str(tmp_path)))
    assert build.calls == 0  # converted (twice) from the intact ONNX entry, never exported again
    record = json.load(open(paths[RECORD]))
    assert record["sha256"] == {XML: file_sha256(paths[XML]), BIN: file_sha256(paths[BIN])}
    assert torch.allclose(_logits(rebuilt), expected, atol=1e-5)


@pytest.mark.slow
def test_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_cache, "CACHE_ENTRIES", 2)
    build, cache = CountingBuild(), EngineCache(str(tmp_path))
    for name in ("w:a", "w:b"):
        onnxruntime_runner(name, 32, build, EngineCache(str(tmp_path)))
    os.utime(cache.paths(onnx_facts("w:b", 32), (ONNX,))[RECORD], (1, 1))  # b: long unused
    onnxruntime_runner("w:a", 32, build, EngineCache(str(tmp_path)))  # a: used now
    onnxruntime_runner("w:c", 32, build, EngineCache(str(tmp_path)))  # c: new, b goes
    kept = sorted(json.load(open(os.path.join(tmp_path, n)))["weights"] for n in os.listdir(tmp_path) if n.endswith(RECORD))
    assert kept == ["w:a", "w:c"] and len(os.listdir(tmp_path)) == 4 and build.calls == 3


def test_engine_errors_name_the_parameter_and_choices(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="engine must be one of auto, torch, onnxruntime, openvino, got 'tensorrt'"):
        load_classifier(engine="tensorrt", device="cpu")
    with pytest.raises(ConfigError, match="engine 'onnxruntime' runs fp32 on the CPU; got device cpu, precision bf16"):
        load_classifier(engine="onnxruntime", device="cpu", precision="bf16")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"engine 'openvino' runs fp32 or bf16 on the CPU \(bf16 where the CPU computes "
                                          "it natively: AVX512-BF16 or AMX\); got device cpu, precision bf16"):
        load_classifier(engine="openvino", device="cpu", precision="bf16")
    with pytest.raises(ConfigError, match="precision 'int8' runs on engine openvino.*'torch'"):
        load_classifier(engine="torch", device="cpu", precision="int8")


def test_int8_needs_quantization_images_or_a_runs_sample(tmp_path):
    cache_random_weights("resnext50")
    with pytest.raises(ConfigError, match="precision 'int8' needs quantization_folder.*quantization_sample.npy"):
        load_classifier(model_name="resnext50", device="cpu", precision="int8")  # ImageNet weights: no run, no sample
    small_checkpoint(tmp_path / "copied.pth")  # a checkpoint outside its run folder
    with pytest.raises(ConfigError, match=f"needs quantization_folder.*none lies beside {tmp_path / 'copied.pth'}"):
        load_classifier(model_weight_file=str(tmp_path / "copied.pth"), device="cpu", precision="int8")
    np.save(tmp_path / "quantization_sample.npy", np.zeros((2, 64, 64), np.float32))
    with pytest.raises(ConfigError, match="quantization sample .* is not N x 3 x S x S.*quantization_folder"):
        load_classifier(model_weight_file=str(tmp_path / "copied.pth"), device="cpu", precision="int8")


@pytest.mark.slow
def test_plugin_runs_openvino_by_default_and_torch_on_request(tmp_path):
    import sys

    small_checkpoint(tmp_path / "m.pth")
    confidences = {}
    for engine in ("auto", "torch"):
        _, task = new_task(INFER, {"model_weight_file": str(tmp_path / "m.pth"), "engine": engine})
        task.get_input(0).set_image(IMAGES[0])
        task.run()
        plugin_cache = sys.modules["infer_torchvision_resnext.resnext_core.inference.model_cache"]
        assert list(plugin_cache.MODEL_CACHE._entries.values())[-1].runner.engine == {"auto": "openvino"}.get(engine, engine)
        confidences[engine] = dict((n, float(c)) for n, c in task.get_whole_image_results())
    assert confidences["auto"].keys() == confidences["torch"].keys()
    assert max(abs(confidences["auto"][n] - confidences["torch"][n]) for n in confidences["auto"]) < 1e-4


def test_auto_precision_keeps_small_cuda_batches_in_fp32():
    """Measured on an H100: bf16 autocast is 2x slower than fp32 at batch 1, 1.7x faster at 256."""
    from torch import nn

    from resnext_core import Classifier, InferConfig
    from resnext_core.inference.classifier import CUDA_HALF_MIN_BATCH, LoadedModel, OutputHead, TorchRunner
    from resnext_core.inference.explain import Explainer

    loaded = LoadedModel(TorchRunner(nn.Identity(), torch.device("cpu")), ["a"], Preprocessing(), "test", OutputHead(),
                         Explainer(nn.Identity, torch.device("cpu")))
    auto = Classifier(loaded, InferConfig(precision="auto"), torch.device("cuda"), torch.bfloat16)
    assert auto.dtype_for(1) == torch.float32 and auto.dtype_for(CUDA_HALF_MIN_BATCH) == torch.bfloat16
    chosen = Classifier(loaded, InferConfig(precision="bf16"), torch.device("cuda"), torch.bfloat16)
    assert chosen.dtype_for(1) == torch.bfloat16, "an explicit bf16 is honoured at any batch size"
    cpu = Classifier(loaded, InferConfig(precision="auto"), torch.device("cpu"), torch.bfloat16)
    assert cpu.dtype_for(1) == torch.bfloat16, "native CPU bf16 has no launch overhead to avoid"


def test_device_and_precision_errors():
    with pytest.raises(ConfigError, match="Unknown device 'tpu'"):
        load_classifier(device="tpu")
    with pytest.raises(ConfigError, match="Unknown precision"):
        load_classifier(precision="int3")
    with pytest.raises(ConfigError, match="int8.*quantization_folder"):
        load_classifier(precision="int8", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_classifier(device="cuda")


FAST_PRECISIONS = ["bf16", "int8"]  # bf16: what 'auto' picks on capable hardware; int8: opt-in. fp16 is CUDA only


@pytest.mark.slow
@pytest.mark.parametrize("precision", FAST_PRECISIONS)
def test_fast_precisions_agree_with_fp32(digits_model, heldout, precision):
    """Faster precisions keep top-1 agreement >= 99% with fp32 (the rule 'auto' follows; int8 is held to it too).
    int8 calibrates on the sample of validation images the run left beside its checkpoint: no quantization_folder."""
    images = [image for image, _ in heldout]
    exact = load_classifier(model_weight_file=digits_model, device="cpu", precision="fp32").predict(images).argmax(1)
    fast = load_classifier(model_weight_file=digits_model, device="cpu", precision=precision).predict(images).argmax(1)
    agreement = (exact == fast).float().mean().item()
    print(f"{precision}: top-1 agreement with fp32 {agreement:.4f} over {len(images)} held-out digits")
    assert agreement >= 0.99
