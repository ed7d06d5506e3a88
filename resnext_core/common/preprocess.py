"""The one place that turns images into model input, the way the weights were trained.

torchvision's ImageClassification transform (resize the shorter side, centre crop, scale to [0, 1],
normalise) applied with the same functional calls, generalised to any `input_size` (resize scaled in
proportion) and to any image numpy can hold: gray, gray+alpha, RGB, RGBA; uint8, uint16, other integers,
bool, float.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .errors import ImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_SIZE = 16  # ResNeXt downsamples by 32; below 16 px the features are one blurred pixel
MAX_INPUT_SIZE = 1024
# Beyond this aspect ratio the long side is cut (centred) before resizing: the centre crop never
# reaches it, and a 1 x 100000 strip would otherwise become a 232 x 23200000 tensor. Below it the
# result is torchvision's (the cut shifts the sampling grid by a fraction of a pixel).
MAX_ASPECT = 8.0


def _to_unit_range(image: np.ndarray) -> np.ndarray:
    """uint8 stays uint8 (resized by torch's uint8 kernel, no float copy of a large photo);
    every other dtype becomes float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.integer):
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 65535:
            raise ImageError(
                f"Integer image values must lie in 0..65535, got {low}..{high} ({image.dtype})"
            )
        if high <= 255:
            return image.astype(np.uint8)
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ImageError("Image contains NaN or infinite values")
        # Floats in [0, 1] are taken as they are; larger values as 0..255 (OpenCV's float convention).
        # Scaled and clipped before the cast, so float64 values beyond float32's range stay finite.
        if image.size and image.max() > 1.0:
            image = image / 255.0
        return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    raise ImageError(f"Unsupported image dtype {image.dtype}: expected uint8, uint16, integer, bool or float")


def image_to_tensor(image) -> torch.Tensor:
    """H x W or H x W x C array -> 3 x H x W tensor (uint8, or float32 in [0, 1]).

    1 channel: gray; 2: gray + alpha; 3: RGB; 4: RGBA. Alpha is dropped.
    """
    if isinstance(image, torch.Tensor):
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ImageError(f"Image must be H x W or H x W x C, got shape {image.shape}")
    height, width, channels = image.shape
    if height == 0 or width == 0:
        raise ImageError(f"Image is empty (shape {image.shape})")
    if channels not in (1, 2, 3, 4):
        raise ImageError(
            f"Image must have 1, 2, 3 or 4 channels (gray, gray+alpha, RGB, RGBA), got {channels}"
        )
    image = image[:, :, :1] if channels <= 2 else image[:, :, :3]
    array = np.ascontiguousarray(_to_unit_range(image))
    if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays (PIL's, Ikomia's views)
        array = array.copy()
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return tensor.expand(3, -1, -1) if channels <= 2 else tensor


def _long_side_window(height: int, width: int) -> tuple:
    """(top, left, height, width) of the part _cut_long_side keeps."""
    limit = int(min(height, width) * MAX_ASPECT)
    if height > limit:
        return (height - limit) // 2, 0, limit, width
    if width > limit:
        return 0, (width - limit) // 2, height, limit
    return 0, 0, height, width


def _cut_long_side(tensor: torch.Tensor) -> torch.Tensor:
    top, left, height, width = _long_side_window(*tensor.shape[-2:])
    return tensor[..., top : top + height, left : left + width]


@dataclass(frozen=True)
class Preprocessing:
    """Resize shorter side to `resize_size`, centre crop `crop_size`, normalise with `mean`/`std`."""

    crop_size: int = 224
    resize_size: int = 232
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @classmethod
    def from_weights(cls, weights, input_size: int | None = None) -> "Preprocessing":
        """The transform the torchvision weights were evaluated with, optionally at another size."""
        reference = weights.transforms()
        base = cls(
            crop_size=reference.crop_size[0],
            resize_size=reference.resize_size[0],
            mean=tuple(reference.mean),
            std=tuple(reference.std),
        )
        return base.at_size(input_size)

    def at_size(self, input_size: int | None) -> "Preprocessing":
        """Same recipe for another crop size: the resize keeps its ratio to the crop (232/224).
        None (input_size 'auto') keeps this one."""
        if not input_size:
            return self
        resize = round(input_size * self.resize_size / self.crop_size)
        return Preprocessing(input_size, resize, self.mean, self.std)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            crop_size=int(data["crop_size"]),
            resize_size=int(data["resize_size"]),
            mean=tuple(float(x) for x in data["mean"]),
            std=tuple(float(x) for x in data["std"]),
        )

    def resize_crop(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = _cut_long_side(tensor)
        tensor = F.resize(
            tensor, [self.resize_size], interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        return F.center_crop(tensor, [self.crop_size])

    def crop_box(self, height: int, width: int) -> tuple:
        """(left, top, right, bottom): the square resize_crop() cuts from a height x width image, in that
        image's pixel coordinates (pixel edges: the whole image is (0, 0, width, height)). It reaches past
        the image where the crop is larger than the resized image (torchvision pads it with zeros)."""
        top, left, kept_height, kept_width = _long_side_window(height, width)
        # torchvision's resize of the shorter side to resize_size: the longer one is truncated to an integer.
        resized_long = int(self.resize_size * max(kept_height, kept_width) / min(kept_height, kept_width))
        if kept_height <= kept_width:
            resized_height, resized_width = self.resize_size, resized_long
        else:
            resized_height, resized_width = resized_long, self.resize_size
        scale_y, scale_x = kept_height / resized_height, kept_width / resized_width  # image pixels per resized pixel
        crop_top = top + _crop_start(resized_height, self.crop_size) * scale_y
        crop_left = left + _crop_start(resized_width, self.crop_size) * scale_x
        return crop_left, crop_top, crop_left + self.crop_size * scale_x, crop_top + self.crop_size * scale_y

    def normalize(self, tensor: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.to_dtype(tensor, torch.float32, scale=True), self.mean, self.std)

    def __call__(self, image) -> torch.Tensor:
        """One image (numpy array) -> normalised 3 x crop x crop float tensor."""
        return self.normalize(self.resize_crop(image_to_tensor(image)))

    def batch(self, images) -> torch.Tensor:
        """Images of any sizes -> N x 3 x crop x crop float tensor."""
        crops = [self.resize_crop(image_to_tensor(image)) for image in images]
        # Mixed uint8/float crops are brought to float before stacking.
        if len({c.dtype for c in crops}) > 1:
            crops = [F.to_dtype(c, torch.float32, scale=True) for c in crops]
        return self.normalize(crops[0].unsqueeze(0) if len(crops) == 1 else torch.stack(crops))


def region_box(x: float, y: float, width: float, height: float, image_height: int, image_width: int):
    """(left, top, right, bottom), whole pixels, of a region's rectangle clipped to the image: every pixel
    it touches. None where nothing of it lies inside."""
    left, top = max(0, math.floor(x)), max(0, math.floor(y))
    right, bottom = min(image_width, math.ceil(x + width)), min(image_height, math.ceil(y + height))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _crop_start(size: int, crop: int) -> int:
    """Where torchvision's center_crop starts along one side of `size` pixels (negative: padded)."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def to_display_rgb(image) -> np.ndarray:
    """Any supported image as H x W x 3 uint8 RGB, for drawing labels on."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    tensor = image_to_tensor(image)
    if tensor.dtype != torch.uint8:
        tensor = (tensor * 255.0).round().to(torch.uint8)
    return np.array(tensor.permute(1, 2, 0).numpy(), copy=True)  # never a view of the caller's image
