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
    margin = max(1, font_px // 4)
    laid_out = [_layout(line, font_px) for line in lines]
    line_height = max(height for _, _, height in laid_out) + margin
    box_width = min(max(width for _, width, _ in laid_out) + 2 * margin, canvas.shape[1] - left)
    box_height = min(line_height * len(lines) + margin, canvas.shape[0] - top)
    # Only the box region is blended and drawn on: a 10000 px image is never converted or copied whole again.
    region = canvas[top : top + box_height, left : left + box_width].astype(np.float32)
    region = region * (1.0 - BOX_OPACITY) + BOX_OPACITY * np.asarray(BOX_COLOR, dtype=np.float32)
    text = np.zeros(region.shape[:2], dtype=np.float32)  # the glyphs' coverage, 0 to 1
    for row, (pieces, _, _) in enumerate(laid_out):
        for x, y, mask in pieces:
            _paste(text, mask, margin + x, margin + row * line_height + y)
    region += text[..., None] * (np.asarray(TEXT_COLOR, dtype=np.float32) - region)
    canvas[top : top + box_height, left : left + box_width] = region.round().astype(np.uint8)


def _layout(line: str, font_px: int) -> tuple:
    """([(x, y, glyph coverage), ...], width, height) of one line at font_px, from the rendered pieces it is
    made of: a label's name and its confidence, each rendered once (Pillow's text layout is most of a
    label's cost, and a video's names and confidences repeat)."""
    pieces, x, width, height = [], 0.0, 0, 0
    for piece in _pieces(line):
        mask, left, top, advance = _rendered(piece, font_px)
        pieces.append((round(x) + left, top, mask))
        width, height = max(width, round(x) + left + mask.shape[1]), max(height, top + mask.shape[0])
        x += advance
    return pieces, width, height


def _pieces(line: str) -> list:
    """A label, "name: 0.93", as its name and its confidence: the two parts that repeat."""
    head, separator, tail = line.rpartition(": ")
    return [head + separator, tail] if separator else [line]


@functools.lru_cache(maxsize=4096)
def _rendered(text: str, font_px: int) -> tuple:
    """(coverage 0 to 1, left, top, advance) of `text` drawn by Pillow at the origin: where its ink starts
    (Pillow's bounding box) and how far the next text starts."""
    font = _font(font_px)
    x0, y0, x1, y1 = font.getbbox(text)
    picture = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)))
    ImageDraw.Draw(picture).text((-x0, -y0), text, font=font, fill=255)
    return np.asarray(picture, dtype=np.float32) / 255.0, x0, y0, font.getlength(text)


def _paste(coverage: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Adds `mask` into `coverage` at (x, y), cut to it."""
    height, width = min(mask.shape[0], coverage.shape[0] - y), min(mask.shape[1], coverage.shape[1] - x)
    if height > 0 and width > 0:
        target = coverage[y : y + height, x : x + width]
        np.maximum(target, mask[:height, :width], out=target)
