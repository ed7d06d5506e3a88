"""Image files: which files are images, reading any of them as an array preprocess.py understands, finding them."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm")


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path: str) -> np.ndarray:
    """Any image file as a numpy array resnext_core.common.preprocess understands (gray, RGBA, 16-bit...)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode == "1":
                image = image.convert("L")
            return np.array(image)  # writable copy: torch.from_numpy warns on read-only arrays
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"Cannot read image {path}: {exc}") from None


def unreadable_reason(path: str) -> str | None:
    """None if the file decodes as an image, else the reason."""
    if not is_image_file(path):
        return "not an image file (extension)"
    try:
        with Image.open(path) as image:
            image.verify()
        return None
    except Exception as exc:  # PIL raises many types for damaged files
        return f"corrupt image ({type(exc).__name__}: {exc})"


def find_images(folder: str, accept=is_image_file) -> list:
    """Every file `accept` takes (by name; image files by default) under `folder`, recursively, as sorted paths;
    hidden files and folders left out."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, name) for name in names if not name.startswith(".") and accept(name)]
    return sorted(found)
