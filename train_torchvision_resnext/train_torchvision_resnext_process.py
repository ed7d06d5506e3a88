"""train_torchvision_resnext: Param, task and factory, thin adapters over resnext_core.training."""
import copy
import os

import requests
from ikomia import core, dataprocess
from ikomia.core import config as ikomia_config
from ikomia.dnn import dnntrain

from .resnext_core.metadata import KEYWORDS, fill_info
from .resnext_core.models import DEFAULT_MODEL, NO_WEIGHTS
from .resnext_core.params import ParamValues, parse_bool, parse_choice, parse_float, parse_int
from .resnext_core.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from .resnext_core.training import OPTIMIZERS, TRAIN_MODES, TrainConfig, Trainer

DEFAULTS = {
    "dataset_folder": "",
    "model_name": DEFAULT_MODEL,
    "weights": "DEFAULT",
    "train_mode": "fine_tune",
    "input_size": "224",
    "epochs": "15",
    "batch_size": "8",
    "learning_rate": "0.001",
    "momentum": "0.9",
    "weight_decay": "0.0001",
    "optimizer": "sgd",
    "warmup_epochs": "1",
    "label_smoothing": "0.1",
    "min_crop_scale": "0.25",
    "hflip": "True",
    "val_split": "0.2",
    "seed": "0",
    "num_workers": "0",
    "device": "auto",
    "amp": "True",
    "patience": "0",
    "output_folder": "",
    "export_pth": "True",
    "export_onnx": "False",
    "resume": "",
    "run_name": "",
}


def _pretrained(values) -> bool:
    return values["train_mode"] != "scratch" and values["weights"].strip().lower() not in NO_WEIGHTS


# The public plugin's booleans, mapped onto train_mode and weights.
LEGACY = {
    "feature_extract": (
        lambda v: str(v["train_mode"] == "feature_extract"),
        lambda s: {"train_mode": "feature_extract" if s.strip().lower() in ("1", "true", "yes") else "fine_tune"},
    ),
    "use_pretrained": (
        lambda v: str(_pretrained(v)),
        lambda s: {"train_mode": "fine_tune", "weights": "DEFAULT"}
        if s.strip().lower() in ("1", "true", "yes")
        else {"train_mode": "scratch"},
    ),
}


def default_output_folder() -> str:
    """In the user's Ikomia data folder, never inside the plugin's install folder."""
    return os.path.join(ikomia_config.main_cfg["data"]["path"], "train_torchvision_resnext")


class TrainResNeXtParam(core.CWorkflowTaskParam):
    """All values are strings, as Ikomia stores them; they are validated when the task runs."""

    def __init__(self):
        core.CWorkflowTaskParam.__init__(self)
        self.values = ParamValues(DEFAULTS, LEGACY)

    @property
    def cfg(self):  # what ikomia's TrainProcess logs to MLflow
        return self.values.as_dict()

    def set_values(self, params):
        self.values.update(params)

    def get_values(self):
        return self.values.as_dict()


def train_config(values, dataset_folder: str) -> TrainConfig:
    """Parameters (strings) -> validated TrainConfig; each error names the parameter."""
    return TrainConfig(
        dataset_folder=dataset_folder,
        output_folder=values["output_folder"].strip() or default_output_folder(),
        model_name=values["model_name"],
        weights=values["weights"].strip() or "DEFAULT",
        train_mode=parse_choice(values, "train_mode", TRAIN_MODES),
        input_size=parse_int(values, "input_size", MIN_INPUT_SIZE, MAX_INPUT_SIZE),
        epochs=parse_int(values, "epochs", 1, 100000),
        batch_size=parse_int(values, "batch_size", 1, 65536),
        learning_rate=parse_float(values, "learning_rate", 1e-8, 10.0),
        momentum=parse_float(values, "momentum", 0.0, 0.999),
        weight_decay=parse_float(values, "weight_decay", 0.0, 1.0),
        optimizer=parse_choice(values, "optimizer", OPTIMIZERS),
        warmup_epochs=parse_float(values, "warmup_epochs", 0.0, 1000.0),
        label_smoothing=parse_float(values, "label_smoothing", 0.0, 0.99),
        min_crop_scale=parse_float(values, "min_crop_scale", 0.01, 1.0),
        hflip=parse_bool(values, "hflip"),
        val_split=parse_float(values, "val_split", 0.0, 0.9),
        seed=parse_int(values, "seed", 0, 2**31 - 1),
        num_workers=parse_int(values, "num_workers", 0, 64),
        device=values["device"],
        amp=parse_bool(values, "amp"),
        patience=parse_int(values, "patience", 0, 100000),
        export_pth=parse_bool(values, "export_pth"),
        export_onnx=parse_bool(values, "export_onnx"),
        resume=values["resume"].strip(),
        run_name=values["run_name"].strip(),
    )


def mlflow_server_reachable(uri: str) -> bool:
    if not uri.startswith("http"):
        return False
    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=1).ok
    except requests.RequestException:
        return False


class TrainResNeXt(dnntrain.TrainProcess):
    def __init__(self, name, param):
        param = TrainResNeXtParam() if param is None else copy.deepcopy(param)
        dnntrain.TrainProcess.__init__(self, name, param)
        self.set_param_object(param)  # the base class keeps only a C++ copy, without our Python fields
        # Input 0: a folder path (what dataset_classification outputs); output 0: the run folder.
        while self.get_input_count():
            self.remove_input(0)
        self.add_input(dataprocess.CPathIO(core.IODataType.FOLDER_PATH))
        self.add_output(dataprocess.CPathIO(core.IODataType.FOLDER_PATH))
        self._stop_requested = False
        self.run_folder = ""

    # ikomia's base class starts an MLflow server and TensorBoard itself, and offline retries for
    # minutes before dropping every metric; run() picks a reachable server or a file store instead.
    @staticmethod
    def _init_mlflow():
        pass

    @staticmethod
    def _init_tensorboard():
        pass

    def get_progress_steps(self):
        return parse_int(self.get_param_object().values, "epochs", 1, 100000)

    def stop(self):
        self._stop_requested = True
        super().stop()

    def _dataset_folder(self, values) -> str:
        connected = self.get_input(0).get_path() if self.get_input_count() else ""
        return connected or values["dataset_folder"].strip()

    def run(self):
        import mlflow

        self._stop_requested = False
        values = self.get_param_object().values
        trainer = Trainer(
            train_config(values, self._dataset_folder(values)),
            on_epoch=self._on_epoch,
            should_stop=lambda: self._stop_requested,
        )
        self.run_folder = trainer.run_folder
        uri = ikomia_config.main_cfg["mlflow"]["tracking_uri"]
        if not mlflow_server_reachable(uri):
            uri = "file://" + os.path.join(trainer.run_folder, "mlruns")
        mlflow.set_tracking_uri(uri)
        self.begin_task_run()
        print(f"train_torchvision_resnext: run folder {trainer.run_folder} (MLflow: {uri})", flush=True)
        try:
            result = trainer.run()
        except BaseException:
            # Left active, the MLflow run would break the next training: its store is not the next one's.
            mlflow.end_run(status="FAILED")
            raise
        if result.skipped:
            self.log_metric("skipped_files", result.skipped)
        self.get_output(0).set_path(trainer.run_folder)
        self.end_task_run()
        print(f"train_torchvision_resnext: {'stopped' if result.stopped else 'done'}, outputs in {trainer.run_folder}", flush=True)

    def _on_epoch(self, result):
        self.log_metrics({k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}, step=result.epoch)
        self.emit_step_progress()


class TrainResNeXtFactory(dataprocess.CTaskFactory):
    def __init__(self):
        dataprocess.CTaskFactory.__init__(self)
        info = self.info
        info.name = "train_torchvision_resnext"
        info.short_description = "Train or fine-tune torchvision's ResNeXt on your image-folder dataset."
        info.description = (
            "Trains resnext50_32x4d, resnext101_32x8d or resnext101_64x4d (from ImageNet weights, as a "
            "frozen feature extractor, or from scratch) on a folder of train/<class>/ and val/<class>/ "
            "images or flat <class>/ folders. Writes best.pth/last.pth checkpoints that "
            "infer_torchvision_resnext loads with nothing else to set, metrics (CSV/JSON, TensorBoard, "
            "MLflow), a confusion matrix, training curves and optionally an ONNX model."
        )
        fill_info(info, keywords=f"{KEYWORDS},train,fine-tune", algo_type=core.AlgoType.TRAIN)

    def create(self, param=None):
        return TrainResNeXt(self.info.name, param)
