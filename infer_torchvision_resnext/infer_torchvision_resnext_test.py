"""Ikomia HUB test convention: test(t, data_dict) yields run_for_test(t) = (parameters, "OK" or a traceback)."""
import logging

import numpy as np
from ikomia.utils.tests import run_for_test
from PIL import Image

logger = logging.getLogger(__name__)


def test(t, data_dict):
    logger.info("===== Test::infer torchvision resnext =====")
    image = np.asarray(Image.open(data_dict["images"]["detection"]["coco"]).convert("RGB"))
    for params in ({}, {"model_name": "resnext50", "input_size": "320", "top_k": "1"}, {"explain": "gradcam"}):
        logger.info("----- Parameters: %s", params or "defaults")
        t.set_parameters(params)
        t.get_input(0).set_image(image)
        yield run_for_test(t)
