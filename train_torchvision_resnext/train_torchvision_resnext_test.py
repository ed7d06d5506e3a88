"""Ikomia HUB test convention: test(t, data_dict) yields run_for_test(t) = (parameters, "OK" or a traceback)."""
import logging

from ikomia.utils.tests import run_for_test

logger = logging.getLogger(__name__)


def test(t, data_dict):
    logger.info("===== Test::train torchvision resnext =====")
    t.get_input(0).set_path(data_dict["datasets"]["classification"]["dataset_classification"])
    t.set_parameters({"epochs": "1", "batch_size": "2", "input_size": "64"})
    yield run_for_test(t)
