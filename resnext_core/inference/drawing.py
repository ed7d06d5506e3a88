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


def draw_labels(image, lines, boxes=None) -> np.ndarray:
    """RGB uint8 copy of `image` with `lines` written top-left on a translucent box; with `boxes`
    ((left, top, right, bottom) of regions), each region's list of lines inside its own top-left corner instead."""
    canvas = to_display_rgb(image)
    if boxes is not None:
        for box, region_lines in zip(boxes, lines):  # below Ikomia's own label of the region, on its top edge
            font_px = font_size_for(box[3] - box[1], box[2] - box[0])
            _write(canvas, region_lines, box[0], min(box[1] + font_px + 2, canvas.shape[0] - 1), font_px)
        return canvas
    _write(canvas, lines, 0, 0, font_size_for(*canvas.shape[:2]))
    return canvas


def _write(canvas: np.ndarray, lines, left: int, top: int, font_px: int) -> None:
    if not lines:
        return
    font = _font(font_px)
    margin = max(1, font.size // 4)
    extents = [font.getbbox(line) for line in lines]
    line_height = max(b[3] for b in extents) + margin
    box_width = min(max(b[2] for b in extents) + 2 * margin, canvas.shape[1] - left)
    box_height = min(line_height * len(lines) + margin, canvas.shape[0] - top)
    # Only the box region is blended and drawn on: a 10000 px image is never converted or copied whole again.
    region = canvas[top : top + box_height, left : left + box_width].astype(np.float32)
    region = region * (1.0 - BOX_OPACITY) + BOX_OPACITY * np.asarray(BOX_COLOR, dtype=np.float32)
    box = Image.fromarray(region.round().astype(np.uint8))
    draw = ImageDraw.Draw(box)
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * line_height), line, font=font, fill=TEXT_COLOR)
    canvas[top : top + box_height, left : left + box_width] = np.asarray(box)
