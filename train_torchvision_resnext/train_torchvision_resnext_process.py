"""train_torchvision_resnext: Param, task and factory, thin adapters over resnext_core.training.

Its parameters are declared once, in resnext_core.training.config.TrainConfig (with the public plugin's names).
"""
import copy
import dataclasses
import logging
import os
import sys
import time

import numpy as np
from PIL import Image

import requests
from ikomia import core, dataprocess
from ikomia.core import config as ikomia_config
from ikomia.dnn import dnntrain

from .resnext_core.training.config import TRAIN_SCHEMA, TrainConfig
from .resnext_core.train import train
from .resnext_core.training.records import (
    CONFUSION_MATRIX_PNG, PICTURES, RELIABILITY_DIAGRAM_PNG, TRAINING_CURVES_PNG, WORST_PREDICTIONS_PNG, picture_path)
from .resnext_core.training.trainer import Callbacks
from .resnext_ikomia.metadata import KEYWORDS, fill_info
from .resnext_ikomia.param import SchemaParam

# Image outputs after output 0 (the run folder): the run folder's pictures, redrawn after every epoch.
PICTURE_TITLES = {
    CONFUSION_MATRIX_PNG: "Confusion matrix, or precision-recall curves (best epoch)",
    TRAINING_CURVES_PNG: "Training curves",
    WORST_PREDICTIONS_PNG: "Worst-classified validation images",
    RELIABILITY_DIAGRAM_PNG: "Reliability diagram (best epoch)",
}
PICTURE_OUTPUTS = {index: (name, PICTURE_TITLES[name]) for index, name in enumerate(PICTURES, start=1)}
LOG_EVERY_S = 10.0  # batch lines in the log: often enough to watch, rarely enough to read
# A child of Ikomia's logger: its lines go where Ikomia's own go, the console (STUDIO's log) and log.txt.
LOGGER = logging.getLogger("ikomia.train_torchvision_resnext")

def default_output_folder() -> str:
    """In the user's Ikomia data folder, never inside the plugin's install folder."""
    return os.path.join(ikomia_config.main_cfg["data"]["path"], "train_torchvision_resnext")


class TrainResNeXtParam(SchemaParam):
    schema = TRAIN_SCHEMA

    @property
    def cfg(self):  # what ikomia's TrainProcess logs to MLflow
        return self.get_values()


def log(line: str) -> None:
    """The plugin's lines and the Trainer's (dataset warnings, epochs) in Ikomia's log."""
    LOGGER.info(f"train_torchvision_resnext: {line}")


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
        for _, title in PICTURE_OUTPUTS.values():
            self.add_output(dataprocess.CImageIO(core.IODataType.IMAGE, title))
        self._stop_requested = False
        self._steps_added = False
        self._last_log = 0.0
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
        # Batches per epoch are known only once the dataset is read: the first batch adds them, one step each.
        return 1

    def stop(self):
        self._stop_requested = True
        super().stop()

    def _config(self) -> TrainConfig:
        """The parameters, with the connected dataset folder and the default output folder filled in."""
        config = self.get_param_object().config()
        connected = self.get_input(0).get_path() if self.get_input_count() else ""
        return dataclasses.replace(
            config,
            dataset_folder=connected or config.dataset_folder,
            output_folder=config.output_folder or default_output_folder(),
        )

    def run(self):
        self._stop_requested = False
        self._steps_added = False
        self.run_folder = ""
        for index in PICTURE_OUTPUTS:
            self.get_output(index).clear_data()
        callbacks = Callbacks(on_start=self._on_start, on_batch=self._on_batch, on_epoch=self._on_epoch, log=log,
                              should_stop=lambda: self._stop_requested)
        try:
            # With processes > 1, the training runs in worker processes; the callbacks still come here.
            result = train(self._config(), callbacks, progress_bar=sys.stderr.isatty())  # terminals get a tqdm bar
        except BaseException:
            if self.run_folder:  # left active, the MLflow run would break the next training
                import mlflow

                mlflow.end_run(status="FAILED")
            raise
        if result.skipped:
            self.log_metric("skipped_files", result.skipped)
        if result.test:  # test_folder's scores, beside the validation metrics of each epoch
            self.log_metrics({f"test_{name}": value for name, value in result.test.items()})
        self._show_pictures()
        self.get_output(0).set_path(result.run_folder)
        self.emit_step_progress()
        self.end_task_run()
        log(f"{'stopped' if result.stopped else 'done'}, outputs in {result.run_folder}")

    def _on_start(self, run_folder: str):
        """The run folder exists: metrics go to a reachable MLflow server, or to a file store inside it."""
        import mlflow

        self.run_folder = run_folder
        uri = ikomia_config.main_cfg["mlflow"]["tracking_uri"]
        if not mlflow_server_reachable(uri):
            uri = "file://" + os.path.join(run_folder, "mlruns")
        mlflow.set_tracking_uri(uri)
        self.begin_task_run()
        log(f"run folder {run_folder} (MLflow: {uri})")

    def _on_batch(self, progress):
        if not self._steps_added:
            self.emit_add_sub_progress_steps(progress.epochs * progress.batches)
            self._steps_added = True
        self.emit_step_progress()
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S or progress.batch == progress.batches:
            self._last_log = now
            minutes, seconds = divmod(round(progress.seconds_left), 60)
            log(f"epoch {progress.epoch}/{progress.epochs}, batch {progress.batch}/{progress.batches}, "
                f"loss {progress.loss:.4f}, about {minutes} min {seconds:02d} s left")

    def _on_epoch(self, result):
        self.log_metrics({k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}, step=result.epoch)
        self._show_pictures()

    def _show_pictures(self):
        """The run folder's pictures as image outputs: STUDIO shows them, scripts get arrays."""
        for index, (filename, _) in PICTURE_OUTPUTS.items():
            path = picture_path(self.run_folder, filename)
            if os.path.isfile(path):
                with Image.open(path) as picture:
                    self.get_output(index).set_image(np.asarray(picture.convert("RGB")))


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
