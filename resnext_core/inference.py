"""One entry point, load_classifier(), from parameters to a ready classifier; models shared process-wide."""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .calibration import is_valid_temperature
from .checkpoint import check_class_count, load_checkpoint, read_class_file
from .errors import ConfigError, ResNeXtError
from .explain import Explainer
from .models import load_pretrained_state_dict, model_with_weights, resolve_model_name, resolve_weights
from .engine_cache import file_sha256
from .onnx_engine import onnxruntime_runner
from .openvino_engine import inference_precision_for, openvino_runner
from .preprocess import Preprocessing
from .quantize import calibration_batch, read_calibration
from .runtime import (
    autocast,
    choice_key,
    disable_openmp_dynamic_threads,
    resolve_device,
    resolve_engine,
    resolve_precision,
)

MAX_BATCH = 64  # regions per forward: bounds memory on images with hundreds of regions
# On CUDA, half precision only pays from some batch size: an H100 ran resnext50 at batch 1 in
# 3.3 ms fp32 vs 7.0 ms bf16 (autocast's casts dominate), at batch 256 in 42 vs 24 ms. "auto" runs
# smaller batches in fp32. The crossover was not measured; 8 keeps single images and few regions exact.
CUDA_HALF_MIN_BATCH = 8
log = logging.getLogger(__name__)
MODEL_CACHE_SIZE = max(1, int(os.environ.get("RESNEXT_MODEL_CACHE_SIZE", "2")))


@dataclass
class LoadedModel:
    runner: object  # runner(batch, dtype) -> logits: a TorchRunner, onnx_engine.OnnxRunner or openvino_engine.OpenVinoRunner
    class_names: list
    preprocessing: Preprocessing
    description: str
    fitted_temperature: float | None  # a trained checkpoint's (calibration.py); None for ImageNet weights
    explainer: Explainer  # its float torch model is built only when an explanation is asked for


class TorchRunner:
    """A torch model on its device; batches in channels_last, under autocast for half precisions."""

    engine = "torch"

    def __init__(self, model: nn.Module, device: torch.device):
        self.model = model
        self.device = device

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, dtype):
            return self.model(batch).float()


class Classifier:
    """A model ready to run (torch, ONNX Runtime or OpenVINO), its class names and its preprocessing.

    Probabilities are softmax(logits / temperature); mirror averages them over each image and its
    horizontal mirror (test-time augmentation).
    """

    def __init__(self, loaded: LoadedModel, device: torch.device, dtype: torch.dtype, input_size: int | None,
                 auto_precision: bool = False, temperature: float = 1.0, mirror: bool = False):
        self.runner = loaded.runner
        self.explainer = loaded.explainer
        self.class_names = loaded.class_names
        self.description = loaded.description
        self.preprocessing = loaded.preprocessing.at_size(input_size)
        self.device = device
        self.dtype = dtype
        self.auto_precision = auto_precision
        self.temperature = temperature
        self.mirror = mirror

    @property
    def engine(self) -> str:
        return self.runner.engine

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop_size

    def predict(self, images) -> torch.Tensor:
        """Class probabilities, N x C float32 on the CPU, for a list of images (numpy arrays)."""
        step = MAX_BATCH // 2 if self.mirror else MAX_BATCH  # a mirrored image doubles the batch
        chunks = [self._forward(images[i : i + step]) for i in range(0, len(images), step)]
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.class_names))

    def _forward(self, images) -> torch.Tensor:
        disable_openmp_dynamic_threads()
        batch = self.preprocessing.batch(images)
        if self.mirror:  # one forward over the images and their mirrors
            batch = torch.cat([batch, batch.flip(-1)])
        logits = self.runner(batch, self.dtype_for(len(batch))).float().cpu()
        probabilities = (logits / self.temperature).softmax(dim=1)
        return probabilities.view(2, len(images), -1).mean(0) if self.mirror else probabilities

    def dtype_for(self, batch_size: int) -> torch.dtype:
        if self.auto_precision and self.device.type == "cuda" and batch_size < CUDA_HALF_MIN_BATCH:
            return torch.float32
        return self.dtype

    def top_k(self, probabilities: torch.Tensor, k: int) -> list:
        """[(name, confidence), ...] best first, for one row of probabilities."""
        values, indices = probabilities.topk(min(k, probabilities.numel()))
        return [(self.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Each eval-mode BatchNorm folded into the convolution before it (ResNet naming: bnN after convN,
    downsample[1] after downsample[0]): the same function in fp32 up to rounding (~1e-6), one pass
    less over every activation; measured 2% faster at batch 1, 19% at batch 16 on 2 CPU cores."""
    for module in model.modules():
        for name, child in list(module.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            conv_name = str(int(name) - 1) if name.isdigit() else "conv" + name[2:]
            conv = getattr(module, conv_name, None)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"no convolution before BatchNorm '{name}' in {type(module).__name__}")
            setattr(module, conv_name, fuse_conv_bn_eval(conv, child))
            setattr(module, name, nn.Identity())
    return model


def _file_identity(path: str):
    """Cache key part that changes when the file is rewritten (a new training run)."""
    if not path:
        return None
    try:
        stat = os.stat(path)
        return (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return (path, None, None)


@dataclass
class ModelSource:
    """What a model is before it is built: its classes, preprocessing and how to build it."""

    class_names: list
    preprocessing: Preprocessing
    description: str
    identity: str  # names the weights in the on-disk engine cache
    build: Callable[[], nn.Module]  # the float model with its weights, eval mode, batch norms folded
    fitted_temperature: float | None = None


def _source(model_name: str, weights: str, weight_file: str, class_file: str) -> ModelSource:
    if weight_file:
        imagenet = resolve_weights(model_name or "resnext50", "DEFAULT").meta["categories"]
        spec = load_checkpoint(weight_file, class_file, imagenet_categories=imagenet)

        def build() -> nn.Module:
            try:
                model = model_with_weights(spec.model_name, spec.state_dict, num_classes=len(spec.class_names))
            except RuntimeError as exc:  # detect_architecture makes this unlikely; keep the message readable
                raise ConfigError(f"Weight file {weight_file} does not fit {spec.model_name}: {exc}") from None
            return fold_batch_norms(model.eval())

        return ModelSource(spec.class_names, spec.preprocessing, f"{spec.model_name} from {weight_file}",
                           f"file:{file_sha256(weight_file)}", build, spec.temperature)
    entry = resolve_weights(model_name, weights)
    class_names = list(entry.meta["categories"])
    if class_file:  # e.g. the public plugin's imagenet_classes.txt, or translated names
        class_names = read_class_file(class_file)
        check_class_count(class_names, class_file, len(entry.meta["categories"]), f"{model_name} {entry.name}")
    return ModelSource(class_names, Preprocessing.from_weights(entry), f"{model_name} {entry}",
                       f"imagenet:{model_name}:{os.path.basename(entry.url)}",
                       lambda: fold_batch_norms(model_with_weights(model_name, load_pretrained_state_dict(entry)).eval()))


def _engine_runner(source: ModelSource, input_size: int | None, engine: str, engine_name: str, dtype: torch.dtype,
                   calibration):
    """The CPU engine's runner in `dtype` (int8 where `calibration` is given), or None where `engine` is auto
    and the engine failed on a float precision (torch then runs it)."""
    size = source.preprocessing.at_size(input_size).crop_size
    try:
        if engine_name == "onnxruntime":
            return onnxruntime_runner(source.identity, size, source.build)
        batch = None if calibration is None else calibration_batch(calibration, source.preprocessing.at_size(input_size))
        return openvino_runner(source.identity, size, source.build, batch,
                               inference_precision=inference_precision_for(dtype))
    except ResNeXtError:
        raise
    except ImportError as exc:  # auto checked that its engine is installed; a named engine, or int8's, may be missing
        raise ConfigError(f"engine '{engine_name}' needs a package that is not installed ({exc}): "
                          "pip install -r requirements.txt, or use engine torch") from None
    except Exception as exc:  # export and the engines raise many types; the model itself is fine
        if choice_key(engine) != "auto" or calibration is not None:
            raise ConfigError(f"engine '{engine_name}' could not run {source.description}: {exc}; "
                              "use engine torch" + (" (precision fp32)" if calibration is not None else "")) from exc
        log.warning("%s could not run %s (%s): using torch", engine_name, source.description, exc)
        return None


class ModelCache:
    """Bounded LRU of prepared models, keyed by source, device and precision; thread-safe."""

    def __init__(self, capacity: int = MODEL_CACHE_SIZE):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, loader) -> LoadedModel:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            # Room is made before loading: the new model never coexists with the one it replaces.
            while len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)
            loaded = loader()
            self._entries[key] = loaded
            return loaded

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MODEL_CACHE = ModelCache()


def load_classifier(
    model_name: str = "resnext50_32x4d",
    weights: str = "DEFAULT",
    weight_file: str = "",
    class_file: str = "",
    device: str = "auto",
    precision: str = "auto",
    input_size: int | None = None,
    calibration_folder: str = "",
    engine: str = "auto",
    calibrate: bool = True,
    temperature: float = 1.0,
    mirror: bool = False,
) -> Classifier:
    """Classifier for ImageNet weights (model_name + weights) or a trained file (weight_file [+ class_file]).

    A weight file decides the architecture itself; model_name is then only validated.
    precision "int8" quantizes the model with NNCF on calibration_folder's images, or on a trained
    checkpoint's run sample (see quantize.py), and runs it on OpenVINO.
    engine "auto" runs the CPU's precisions with the first of runtime.CPU_ENGINES installed that runs them
    (fp32 everywhere, bf16 where the CPU computes it natively), everything else with torch.
    calibrate divides the logits by the checkpoint's fitted temperature, or by `temperature` where the
    weights carry none; off, probabilities are the raw softmax. mirror: test-time augmentation.
    """
    model_name = resolve_model_name(model_name)
    if weight_file:
        source_key = ("file", _file_identity(weight_file))
    else:  # validated before touching the cache; DEFAULT and its target share one entry
        source_key = ("imagenet", model_name, resolve_weights(model_name, weights).name)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    engine_name = resolve_engine(engine, torch_device, dtype)
    key = (source_key, _file_identity(class_file), str(torch_device), dtype, engine_name)
    if dtype == torch.int8:  # a quantized model is specific to its calibration (a run's sample: its weights')
        key += (_file_identity(calibration_folder),)
    if engine_name != "torch":  # an exported graph has a fixed input size
        key += (input_size,)

    def loader() -> LoadedModel:
        # Calibration images are read first: a bad calibration_folder fails before the slow load.
        calibration = read_calibration(calibration_folder, weight_file) if dtype == torch.int8 else None
        source = _source(model_name, weights, weight_file, class_file)
        runner = None if engine_name == "torch" else _engine_runner(source, input_size, engine, engine_name, dtype, calibration)
        if runner is None:
            runner = TorchRunner(source.build().to(torch_device, memory_format=torch.channels_last), torch_device)
        # The explainer reads the weights again if it is ever used: holding `source` (a checkpoint's
        # state dict) for it would keep a second copy of every cached model in memory.
        rebuild = lambda: _source(model_name, weights, weight_file, class_file).build()  # noqa: E731
        return LoadedModel(runner, source.class_names, source.preprocessing, source.description,
                           source.fitted_temperature, Explainer(rebuild, torch_device))

    loaded = MODEL_CACHE.get(key, loader)
    return Classifier(loaded, torch_device, dtype, input_size, auto_precision=choice_key(precision) == "auto",
                      temperature=_temperature(loaded, calibrate, temperature), mirror=mirror)


def _temperature(loaded: LoadedModel, calibrate: bool, temperature: float) -> float:
    if not calibrate:
        return 1.0
    if loaded.fitted_temperature is not None:
        return loaded.fitted_temperature
    if not is_valid_temperature(temperature):
        raise ConfigError(f"temperature must be a positive number, got {temperature}")
    return temperature
