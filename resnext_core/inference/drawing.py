"""Labels drawn on the image itself, sized to the image so a 64 px thumbnail and a 4000 px photo both read."""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..common.preprocess import to_display_rgb

MIN_FONT_PX = 9
TEXT_COLOR = (255, 255, 255)
BOX_COLOR = (0, 0, 0)
BOX_OPACITY = 0.6


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled scalable font: no system font needed.
    return ImageFont.load_default(size=size)


def font_size_for(height: int, width: int) -> int:
    """About 1/30 of the shorter side, never below a readable minimum."""
    return max(MIN_FONT_PX, round(min(height, width) / 30))


def format_label(name: str, confidence: float) -> str:
    return f"{name}: {confidence:.2f}"


def draw_labels(image, lines) -> np.ndarray:
    """RGB uint8 copy of `image` with `lines` written top-left on a translucent box."""
    canvas = to_display_rgb(image)
    if not lines:
        return canvas
    height, width = canvas.shape[:2]
    font = _font(font_size_for(height, width))
    margin = max(1, font.size // 4)
    boxes = [font.getbbox(line) for line in lines]
    line_height = max(b[3] for b in boxes) + margin
    box_width = max(b[2] for b in boxes) + 2 * margin
    box_height = line_height * len(lines) + margin
    # Only the box region is blended and drawn on: a 10000 px image is never converted or copied whole again.
    region = canvas[:box_height, :box_width].astype(np.float32)
    region = region * (1.0 - BOX_OPACITY) + BOX_OPACITY * np.asarray(BOX_COLOR, dtype=np.float32)
    box = Image.fromarray(region.round().astype(np.uint8))
    draw = ImageDraw.Draw(box)
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * line_height), line, font=font, fill=TEXT_COLOR)
    canvas[:box_height, :box_width] = np.asarray(box)
    return canvas
