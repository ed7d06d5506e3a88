"""Image files: which files are images, and reading any of them as an array common/preprocess.py understands,
decoded at the size the next step needs.

A JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 of its size where that still gives the pixels needed (its DCT
scaling: the smaller scales skip most of the inverse transform's work and never build the full-size image), so
a 12-megapixel photo costs a fraction of its full decoding. PixelsNeeded says how many pixels are needed;
docs/performance.md has the measurements behind the choice of decoder and what it changes in the results.
Every file is turned upright by its EXIF orientation, as OpenCV's imread (Ikomia's) turns it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..common.errors import UnreadableImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm")
JPEG_SCALES = (8, 4, 2)  # libjpeg's reductions, largest first
EXIF_ORIENTATION = 0x0112


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class PixelsNeeded:
    """What the next step needs of a decoded image: its shorter side at least `shorter_side` pixels (a resize of
    the shorter side, inference's) and its area at least `area` pixels (a random crop of a share of the area,
    training's). The default needs everything: full decoding."""

    shorter_side: int = 0
    area: int = 0

    @property
    def full(self) -> bool:
        return not self.shorter_side and not self.area

    def reduction(self, width: int, height: int) -> int:
        """The largest of libjpeg's reductions that still gives these pixels (1: none)."""
        if self.full:
            return 1
        for scale in JPEG_SCALES:
            reduced_width, reduced_height = width // scale, height // scale  # libjpeg rounds up: never fewer
            if min(reduced_width, reduced_height) >= self.shorter_side and reduced_width * reduced_height >= self.area:
                return scale
        return 1

    @classmethod
    def for_resize(cls, shorter_side: int) -> PixelsNeeded:
        """Inference: the shorter side is resized to `shorter_side`, then centre-cropped."""
        return cls(shorter_side=shorter_side)

    @classmethod
    def for_random_crop(cls, crop_size: int, min_crop_scale: float, min_ratio: float = 3 / 4) -> PixelsNeeded:
        """Training: RandomResizedCrop to `crop_size` of at least `min_crop_scale` of the area, of aspect ratios down
        to `min_ratio`. Its smallest crop, of area min_crop_scale × A and ratio min_ratio, has a shorter side of
        sqrt(min_crop_scale × A × min_ratio); it still covers crop_size pixels, so is never enlarged, while
        A ≥ crop_size² / (min_crop_scale × min_ratio)."""
        return cls(shorter_side=crop_size, area=math.ceil(crop_size * crop_size / (min_crop_scale * min_ratio)))


FULL = PixelsNeeded()


def read_image(path: str, needed: PixelsNeeded = FULL) -> np.ndarray:
    """Any image file as a numpy array (gray, RGBA, 16-bit...), upright, at least the pixels `needed` asks for
    (a JPEG maybe smaller than its full size). An UnreadableImageError (an ImageError) names the file and what is
    wrong with it."""
    try:
        with Image.open(path) as image:
            scale = needed.reduction(*image.size) if image.format == "JPEG" else 1
            if scale > 1:
                image.draft(image.mode, (image.width // scale, image.height // scale))
            image.load()
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return np.array(_numpy_mode(image))  # writable copy: torch.from_numpy warns on read-only arrays
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(path, _reason(path, exc)) from None


def _numpy_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("P", "PA"):
        return image.convert("RGBA")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if image.mode == "1":
        return image.convert("L")
    return image


def _reason(path: str, exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, UnidentifiedImageError):
        return "empty file" if os.path.getsize(path) == 0 else "not an image Pillow can identify"
    return str(exc) or type(exc).__name__


def find_images(folder: str, accept=is_image_file) -> list:
    """Every file `accept` takes (by name; image files by default) under `folder`, recursively, as sorted paths;
    hidden files and folders left out. Names only: nothing is opened."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, name) for name in names if not name.startswith(".") and accept(name)]
    return sorted(found)
