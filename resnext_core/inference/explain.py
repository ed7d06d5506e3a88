"""Class-activation maps (grad-cam's pytorch_grad_cam) of a classifier's answer, drawn over the image.

The map is computed on the model's input (the resized centre crop), at the resolution of the last block's
features (the crop size / 32), then brought back onto the original pixels through the crop's box: the
heat lies where the model looked; what the centre crop cut off is dimmed instead, never heat-coloured.

Whatever engine classifies (ONNX Runtime, torch, int8), the maps come from a float torch model built from
the same weights, on first use only (Explainer): an explain-off run never builds it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..common.anatomy import last_block
from ..common.errors import ConfigError
from ..common.preprocess import to_display_rgb
from ..common.runtime import disable_openmp_dynamic_threads

NO_EXPLANATION = "none"
# Our names -> pytorch_grad_cam's classes. Each weighs the last block's feature maps for the top-1 class,
# except eigencam: their first principal component, the same for every class (its sign is arbitrary).
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
}
EXPLAIN_METHODS = (NO_EXPLANATION, *CAM_METHODS)
CAM_BATCH = 16  # crops per forward and backward: bounds the memory the backward pass holds
HEAT_OPACITY = 0.5
UNSEEN_BRIGHTNESS = 0.35  # outside the model's crop: the image darkened, so the absence of heat is not read as "cold"
COLORMAP = "jet"  # grad-cam's own: blue = no evidence, red = the most
ROWS_PER_BAND = 1024


class Explainer:
    """Class-activation maps from the float torch model of a classifier, built once, on first use.

    Only the last block's parameters require gradients: the backward pass then stops there (the maps need
    the gradient at its output, nothing earlier). One map at a time: grad-cam hooks the shared model.
    """

    def __init__(self, build_model: Callable[[], nn.Module], device: torch.device):
        self._build_model = build_model
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._model is not None

    def _prepared_model(self) -> nn.Module:
        if self._model is None:
            # channels_last, as the torch runner: its convolutions are the faster ones on CPUs and GPUs.
            model = self._build_model().float().eval().to(self.device, memory_format=torch.channels_last)
            model.requires_grad_(False)
            last_block(model).requires_grad_(True)
            self._model = model
        return self._model

    def maps(self, batch: torch.Tensor, class_indices, method: str) -> np.ndarray:
        """N x crop x crop float32 in [0, 1], one per image of the normalised batch, for its class index."""
        import pytorch_grad_cam  # imported on first use: it brings scipy, scikit-learn and matplotlib
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        disable_openmp_dynamic_threads()
        with self._lock, torch.enable_grad():
            model = self._prepared_model()
            cam = getattr(pytorch_grad_cam, CAM_METHODS[method])(model=model, target_layers=[last_block(model)])
            try:
                batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
                chunks = [cam(input_tensor=batch[i : i + CAM_BATCH],
                              targets=[ClassifierOutputTarget(int(c)) for c in class_indices[i : i + CAM_BATCH]])
                          for i in range(0, len(batch), CAM_BATCH)]
            finally:
                cam.activations_and_grads.release()  # its hooks off the shared model, whatever happened
        return np.concatenate(chunks) if chunks else np.empty((0, *batch.shape[-2:]), np.float32)


@dataclass
class Explanation:
    """One image's (or region's) map, in the pixels of the box it was computed for."""

    class_index: int
    box: tuple  # (left, top, right, bottom) in the whole image's pixels; the whole image for whole-image runs
    cam: np.ndarray  # box height x box width, float32 in [0, 1]: 1 where the evidence for the class is strongest
    seen: np.ndarray  # same shape, bool: pixels inside the model's centre crop (cam is 0 elsewhere)

    @property
    def peak(self) -> tuple:
        """(x, y) of the strongest evidence, in the whole image's pixels."""
        x, y = strongest_point(self.cam, self.seen)
        return self.box[0] + x, self.box[1] + y


def strongest_point(cam: np.ndarray, seen: np.ndarray) -> tuple:
    """(x, y) of the map's maximum over the seen pixels. Between a border cell's centre and the border the
    upsampled map is flat: of equal maxima, the one nearest the middle of the seen area (that cell's centre)."""
    rows, cols = np.nonzero(seen & (cam >= cam[seen].max() - 1e-4))  # equal up to the resampling's rounding
    seen_rows, seen_cols = np.nonzero(seen)
    nearest = np.argmin((rows - seen_rows.mean()) ** 2 + (cols - seen_cols.mean()) ** 2)
    return int(cols[nearest]), int(rows[nearest])


def explain(classifier, images, class_indices, method: str, boxes=None) -> list:
    """An Explanation per image for its class index; `boxes` places each image (a region's crop) in the
    whole image, as (left, top, right, bottom) in pixels; without them each image is a whole image."""
    if method not in CAM_METHODS:
        raise ConfigError(f"explain must be one of {', '.join(CAM_METHODS)} to explain, got '{method}'")
    preprocessing = classifier.preprocessing
    maps = classifier.explainer.maps(preprocessing.batch(images), list(class_indices), method)
    explanations = []
    for index, (image, crop_map, class_index) in enumerate(zip(images, maps, class_indices)):
        height, width = np.shape(image)[:2]
        cam, seen = map_to_image(crop_map, preprocessing.crop_box(height, width), height, width)
        box = tuple(boxes[index]) if boxes is not None else (0, 0, width, height)
        explanations.append(Explanation(int(class_index), box, cam, seen))
    return explanations


def _sampling_matrix(positions: np.ndarray, size: int) -> np.ndarray:
    """len(positions) x size weights of linear interpolation: row i samples a signal of `size` values at
    positions[i] (clamped to its ends)."""
    positions = np.clip(positions, 0, size - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    fraction = (positions - low).astype(np.float32)
    rows = np.arange(len(positions))
    weights = np.zeros((len(positions), size), np.float32)
    np.add.at(weights, (rows, low), 1.0 - fraction)
    np.add.at(weights, (rows, high), fraction)
    return weights


def map_to_image(crop_map: np.ndarray, crop_box: tuple, height: int, width: int) -> tuple:
    """A map over the model's crop -> (map over the height x width image, mask of the pixels the crop covers).

    Each image pixel samples the crop map at its centre's place in the crop (bilinear), so the map lands
    on the pixels the model saw, to a fraction of a pixel.
    """
    left, top, right, bottom = crop_box
    crop_height, crop_width = crop_map.shape
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    # Pixel centre -> the crop's pixel index space (centres at integers).
    in_crop_x = (centres_x - left) * crop_width / (right - left) - 0.5
    in_crop_y = (centres_y - top) * crop_height / (bottom - top) - 0.5
    cam = _sampling_matrix(in_crop_y, crop_height) @ crop_map.astype(np.float32) @ _sampling_matrix(in_crop_x, crop_width).T
    seen = ((centres_y >= top) & (centres_y < bottom))[:, None] & ((centres_x >= left) & (centres_x < right))[None, :]
    return np.where(seen, cam, 0.0).astype(np.float32), seen


def _colormap_lut() -> np.ndarray:
    """256 x 3 uint8 RGB of the colormap."""
    import matplotlib

    return (matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def _blend(pixels: np.ndarray, cam: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Heat over the seen pixels, the others darkened; float32 RGB in 0..255."""
    heat = _colormap_lut()[np.round(np.clip(cam, 0.0, 1.0) * 255).astype(np.uint8)].astype(np.float32)
    blended = (1.0 - HEAT_OPACITY) * pixels + HEAT_OPACITY * heat
    return np.where(seen[..., None], blended, UNSEEN_BRIGHTNESS * pixels)


def render(image, explanations) -> np.ndarray:
    """RGB uint8 copy of `image`, darkened, each explanation's heat blended over its box.

    A region overlapping an earlier one is drawn over it. Bands of rows at a time: a large photo is never
    copied whole in float.
    """
    canvas = to_display_rgb(image)
    output = np.empty_like(canvas)
    for start in range(0, canvas.shape[0], ROWS_PER_BAND):
        band = canvas[start : start + ROWS_PER_BAND].astype(np.float32)
        output[start : start + ROWS_PER_BAND] = np.round(UNSEEN_BRIGHTNESS * band)
    for explanation in explanations:
        left, top, right, bottom = (int(v) for v in explanation.box)
        for start in range(top, bottom, ROWS_PER_BAND):
            stop = min(start + ROWS_PER_BAND, bottom)
            rows = slice(start - top, stop - top)
            pixels = canvas[start:stop, left:right].astype(np.float32)
            output[start:stop, left:right] = np.round(_blend(pixels, explanation.cam[rows], explanation.seen[rows]))
    return output
