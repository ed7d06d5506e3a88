"""One way in, load_classifier(config), from an InferConfig to a ready classifier; models shared process-wide."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..common.anatomy import fold_batch_norms
from ..common.checkpoint import check_class_count, load_checkpoint, read_class_file
from ..common.errors import ConfigError, ResNeXtError
from ..common.files import file_identity, file_sha256
from ..common.models import DEFAULT_MODEL, load_pretrained_state_dict, model_with_weights, resolve_weights
from ..common.preprocess import Preprocessing
from ..common.runtime import (
    autocast,
    choice_key,
    disable_openmp_dynamic_threads,
    dtype_name,
    resolve_device,
    resolve_precision,
)
from ..common.schema import FILE, FOLDER
from ..common.temperature import is_valid_temperature
from .config import InferConfig
from .engines import resolve_engine
from .explain import Explainer
from .int8 import quantization_batch, read_quantization_sample
from .model_cache import MODEL_CACHE
from .onnxruntime_engine import onnxruntime_runner
from .openvino_engine import inference_precision_for, openvino_runner

MAX_BATCH = 64  # regions per forward: bounds memory on images with hundreds of regions
# On CUDA, half precision only pays from some batch size (at batch 1 autocast's casts cost more than they save:
# docs/performance.md, the GPU check): "auto" runs smaller batches in fp32. The crossover was not measured; 8
# keeps single images and few regions exact.
CUDA_HALF_MIN_BATCH = 8
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputHead:
    """How a model's logits become confidences: a softmax over the classes, or (multi_label) a sigmoid a class with
    each class's threshold; the temperature fitted on its run's validation images (common/temperature.py; None for
    ImageNet weights and plain state dicts), at which the thresholds hold."""

    multi_label: bool = False
    fitted_temperature: float | None = None
    thresholds: tuple | None = None


@dataclass
class LoadedModel:
    runner: object  # runner(batch, dtype) -> logits: a TorchRunner, onnxruntime_engine.OnnxRunner or openvino_engine.OpenVinoRunner
    class_names: list
    preprocessing: Preprocessing
    description: str
    head: OutputHead
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

    Probabilities are softmax(logits / temperature), or for a multi-label model sigmoid(logits / temperature) a
    class (independent: they do not sum to 1); with `tta` they are averaged over each image and its horizontal
    mirror (test-time augmentation). `config` is the InferConfig it was loaded for, as given.
    """

    def __init__(self, loaded: LoadedModel, config: InferConfig, device: torch.device, dtype: torch.dtype):
        self.config = config
        self.loaded = loaded
        self.explainer = loaded.explainer
        self.class_names = loaded.class_names
        self.description = loaded.description
        self.preprocessing = loaded.preprocessing.at_size(config.input_size)
        self.device = device
        self.dtype = dtype
        self.temperature = _temperature(loaded, config)
        self.multi_label = loaded.head.multi_label
        # Each class's label threshold on the confidences shown: config.threshold, else the run's tuned ones.
        self.thresholds = _thresholds(loaded.head, config, self.temperature, len(self.class_names))

    @property
    def runner(self):
        """The loaded model's runner (read at each use: a task holds its classifier between runs)."""
        return self.loaded.runner

    @property
    def engine(self) -> str:
        return self.runner.engine

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop_size

    def predict(self, images) -> torch.Tensor:
        """Class probabilities, N x C float32 on the CPU, for a list of images (numpy arrays)."""
        step = MAX_BATCH // 2 if self.config.tta else MAX_BATCH  # a mirrored image doubles the batch
        chunks = [self.probabilities(self.preprocessing.batch(images[i : i + step])) for i in range(0, len(images), step)]
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.class_names))

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a preprocessed batch (N x 3 x S x S, self.preprocessing's), at the classifier's
        temperature."""
        scaled = self._logits(batch) / self.temperature
        probabilities = scaled.sigmoid() if self.multi_label else scaled.softmax(dim=1)
        return probabilities.view(2, len(batch), -1).mean(0) if self.config.tta else probabilities

    def scoring_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """What common/scoring.py scores of a preprocessed batch, at temperature 1: the log-softmax (logits up to a
        constant a row), or a multi-label model's logits; with tta, those of the confidences averaged over each
        image and its mirror."""
        logits = self._logits(batch)
        if self.multi_label:
            return torch.logit(logits.sigmoid().view(2, len(batch), -1).mean(0), eps=1e-7) if self.config.tta else logits
        log_probabilities = logits.log_softmax(dim=1)
        if not self.config.tta:
            return log_probabilities
        return log_probabilities.view(2, len(batch), -1).logsumexp(0) - math.log(2)

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The engine's logits, float32 on the CPU; with tta, the images' then their mirrors' (2N rows)."""
        disable_openmp_dynamic_threads()
        if self.config.tta:  # one forward over the images and their mirrors
            batch = torch.cat([batch, batch.flip(-1)])
        return self.runner(batch, self.dtype_for(len(batch))).float().cpu()

    def dtype_for(self, batch_size: int) -> torch.dtype:
        if choice_key(self.config.precision) == "auto" and self.device.type == "cuda" and batch_size < CUDA_HALF_MIN_BATCH:
            return torch.float32
        return self.dtype

    def top_k(self, probabilities: torch.Tensor, k: int) -> list:
        """[(name, confidence), ...] best first, for one row of probabilities."""
        values, indices = probabilities.topk(min(k, probabilities.numel()))
        return [(self.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]

    def labels(self, probabilities: torch.Tensor, k: int) -> list:
        """The image's labels, [(name, confidence), ...] best first, at most k: its top k, or a multi-label model's
        classes at or above their thresholds (none, one or several)."""
        if not self.multi_label:
            return self.top_k(probabilities, k)
        above = torch.nonzero(probabilities >= self.thresholds).flatten()
        order = above[probabilities[above].argsort(descending=True)][:k].tolist()
        return [(self.class_names[i], float(probabilities[i])) for i in order]


@dataclass
class ModelSource:
    """What a model is before it is built: its classes, preprocessing and how to build it."""

    class_names: list
    preprocessing: Preprocessing
    description: str
    identity: str  # names the weights in the on-disk engine cache
    build: Callable[[], nn.Module]  # the float model with its weights, eval mode, batch norms folded
    head: OutputHead = OutputHead()


def _source(config: InferConfig) -> ModelSource:
    """What `config`'s model is (its model_name and weights canonical: model_request())."""
    weight_file, class_file = config.model_weight_file, config.class_file
    if weight_file:
        imagenet = resolve_weights(DEFAULT_MODEL, "DEFAULT").meta["categories"]  # every model's: names a plain 1000-class file
        spec = load_checkpoint(weight_file, class_file, imagenet_categories=imagenet)

        def build() -> nn.Module:
            try:
                model = model_with_weights(spec.model_name, spec.state_dict, num_classes=len(spec.class_names))
            except RuntimeError as exc:  # detect_architecture makes this unlikely; keep the message readable
                raise ConfigError(f"Weight file {weight_file} does not fit {spec.model_name}: {exc}") from None
            return fold_batch_norms(model.eval())

        head = OutputHead(spec.multi_label, spec.temperature, tuple(spec.thresholds) if spec.thresholds else None)
        return ModelSource(spec.class_names, spec.preprocessing, f"{spec.model_name} from {weight_file}",
                           f"file:{file_sha256(weight_file)}", build, head)
    model_name = config.model_name
    entry = resolve_weights(model_name, config.weights)
    class_names = list(entry.meta["categories"])
    if class_file:  # e.g. the public plugin's imagenet_classes.txt, or translated names
        class_names = read_class_file(class_file)
        check_class_count(class_names, class_file, len(entry.meta["categories"]), f"{model_name} {entry.name}")
    return ModelSource(class_names, Preprocessing.from_weights(entry), f"{model_name} {entry}",
                       f"imagenet:{model_name}:{os.path.basename(entry.url)}",
                       lambda: fold_batch_norms(model_with_weights(model_name, load_pretrained_state_dict(entry)).eval()))


def _engine_runner(source: ModelSource, request: ModelRequest, quantization_sample):
    """The CPU engine's runner in the request's precision (int8 where `quantization_sample` is given), or None where the
    engine was auto's choice and failed on a float precision (torch then runs it)."""
    engine_name, preprocessing = request.config.engine, source.preprocessing.at_size(request.config.input_size)
    try:
        if engine_name == "onnxruntime":
            return onnxruntime_runner(source.identity, preprocessing.crop_size, source.build)
        batch = None if quantization_sample is None else quantization_batch(quantization_sample, preprocessing)
        return openvino_runner(source.identity, preprocessing.crop_size, source.build, batch,
                               inference_precision=inference_precision_for(request.dtype))
    except ResNeXtError:
        raise
    except ImportError as exc:  # auto checked that its engine is installed; a named engine, or int8's, may be missing
        raise ConfigError(f"engine '{engine_name}' needs a package that is not installed ({exc}): "
                          "pip install -r requirements.txt, or use engine torch") from None
    except Exception as exc:  # export and the engines raise many types; the model itself is fine
        if not request.engine_was_auto or quantization_sample is not None:
            raise ConfigError(f"engine '{engine_name}' could not run {source.description}: {exc}; "
                              "use engine torch" + (" (precision fp32)" if quantization_sample is not None else "")) from exc
        log.warning("%s could not run %s (%s): using torch", engine_name, source.description, exc)
        return None


@dataclass(frozen=True)
class ModelRequest:
    """A config's model resolved: `config` with its model-defining fields canonical, and what they chose."""

    config: InferConfig
    device: torch.device
    dtype: torch.dtype
    engine_was_auto: bool  # auto falls back to torch where its engine fails; a named engine reports the failure

    @property
    def key(self) -> tuple:
        """The model cache's key: every model-defining field (a file or folder by its identity on disk)."""
        return model_key(self.config)


def model_key(config: InferConfig) -> tuple:
    """The values of the config's fields declared with defines_model (a subclass's too), a file or folder by its
    identity on disk, so that rewriting one (a new training run) names another model."""
    key = []
    for item in dataclasses.fields(config):
        option = item.metadata["option"]
        if option.defines_model:
            value = getattr(config, item.name)
            key.append((item.name, file_identity(value) if option.kind in (FILE, FOLDER) else value))
    return tuple(key)


def model_request(config: InferConfig) -> ModelRequest:
    """`config`'s model, validated before anything is loaded: aliases and DEFAULT resolved, device, precision and
    engine as chosen for this machine, and the fields that cannot change this model blanked, so that configs
    naming the same model share its cache entry."""
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    engine = resolve_engine(config.engine, device, dtype)
    from_file = bool(config.model_weight_file)  # a weight file names its architecture and weights itself
    canonical = dataclasses.replace(
        config, device=str(device), precision=dtype_name(dtype), engine=engine,
        model_name=DEFAULT_MODEL if from_file else config.model_name,
        # DEFAULT and the weights it stands for are one model.
        weights="DEFAULT" if from_file else resolve_weights(config.model_name, config.weights).name,
        # torch runs any input size; an exported graph has a fixed one.
        input_size=None if engine == "torch" else config.input_size,
        # A quantized model is specific to its quantization images (a run's sample: its weights').
        quantization_folder=config.quantization_folder if dtype == torch.int8 else "",
    )
    return ModelRequest(canonical, device, dtype, choice_key(config.engine) == "auto")


def load_classifier(config: InferConfig | None = None, **fields) -> Classifier:
    """The classifier `config` describes; fields given by name replace its own (load_classifier(model_weight_file=path)).

    ImageNet weights (model_name + weights) or a trained file (model_weight_file [+ class_file]); a weight file
    decides the architecture itself, model_name is then only validated. precision int8 quantizes the model with
    NNCF on quantization_folder's images, or on a trained checkpoint's run sample (int8.py), and runs it on
    OpenVINO. engine auto runs the CPU's precisions with the first of engines.CPU_ENGINES installed that runs
    them (fp32 everywhere, bf16 where the CPU computes it natively), everything else with torch.
    calibrated_confidence divides the logits by the checkpoint's fitted temperature, or by `temperature` where
    the weights carry none; off, probabilities are the raw softmax. tta: test-time augmentation.
    """
    config = dataclasses.replace(config or InferConfig(), **fields)
    request = model_request(config)
    loaded = MODEL_CACHE.get(request.key, lambda: _load(request))
    classifier = Classifier(loaded, config, request.device, request.dtype)
    classifier.key = request.key
    return classifier


class HeldClassifier:
    """A task's classifier between its runs: load_classifier(config)'s, reused while the config is the same object
    (a task's Param makes a new one at each change), its files are unchanged and its model is still in the
    process's cache; resolving the config again costs a run about as much as the plugin's other work."""

    def __init__(self):
        self._held = None  # (config, its files' identities, classifier)

    def get(self, config: InferConfig) -> Classifier:
        files = tuple(file_identity(getattr(config, name)) for name in FILE_FIELDS)
        if self._held is not None:
            held_config, held_files, classifier = self._held
            if held_config is config and held_files == files and MODEL_CACHE.holds(classifier.key):
                return classifier
        classifier = load_classifier(config)
        self._held = (config, files, classifier)
        return classifier


FILE_FIELDS = tuple(item.name for item in dataclasses.fields(InferConfig) if item.metadata["option"].kind in (FILE, FOLDER))


def _load(request: ModelRequest) -> LoadedModel:
    config = request.config
    # The quantization sample is read first: a bad quantization_folder fails before the slow load.
    quantization_sample = read_quantization_sample(config.quantization_folder, config.model_weight_file) if request.dtype == torch.int8 else None
    source = _source(config)
    runner = None if config.engine == "torch" else _engine_runner(source, request, quantization_sample)
    if runner is None:
        runner = TorchRunner(source.build().to(request.device, memory_format=torch.channels_last), request.device)
    # The explainer reads the weights again if it is ever used: holding `source` (a checkpoint's state dict)
    # for it would keep a second copy of every cached model in memory.
    return LoadedModel(runner, source.class_names, source.preprocessing, source.description, source.head,
                       Explainer(lambda: _source(config).build(), request.device))


def _temperature(loaded: LoadedModel, config: InferConfig) -> float:
    if not config.calibrated_confidence:
        return 1.0
    if loaded.head.fitted_temperature is not None:
        return loaded.head.fitted_temperature
    if not is_valid_temperature(config.temperature):
        raise ConfigError(f"temperature must be a positive number, got {config.temperature}")
    return config.temperature


def _thresholds(head: OutputHead, config: InferConfig, temperature: float, count: int) -> torch.Tensor | None:
    """A multi-label model's label threshold of each class on confidences at `temperature`: config.threshold
    for every class, else the run's own, moved from the temperature they were tuned at (the same logit: the same
    labels, whatever the confidences shown)."""
    if not head.multi_label:
        return None
    if config.threshold is not None:
        return torch.full((count,), float(config.threshold))
    tuned = torch.tensor(head.thresholds or [0.5] * count, dtype=torch.float64)
    logits = torch.logit(tuned, eps=1e-7) * (head.fitted_temperature or 1.0)
    return (logits / temperature).sigmoid().float()
