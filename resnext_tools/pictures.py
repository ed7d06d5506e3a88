"""The README's pictures, from real runs: `make pictures` (runs the digits demo, then this module).

Writes small PNGs into docs/images/: labelled held-out digits (the inference plugin's output), both
STUDIO panels (rendered offscreen as STUDIO shows them), and the digits run's confusion matrix, training
curves and worst-classified validation images.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys

from PIL import Image

from resnext_core.training.records import PICTURES  # the run folder's picture names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images")
DEMO_RUN = os.path.join(ROOT, "demo_output", "runs", "digits")
MAX_WIDTH = 900  # pictures are shrunk to this width: the repository stays small

PANEL_SCRIPT = r"""
import sys
from PyQt6.QtWidgets import QApplication, QToolButton
app = QApplication([])
from ikomia.dataprocess.workflow import Workflow
name, path, expanded = sys.argv[1], sys.argv[2], sys.argv[3] == "expanded"
task = Workflow().add_task(name=name)
module = __import__(f"{name}.{name}_widget", fromlist=["x"])
factory = [v for k, v in vars(module).items() if k.endswith("WidgetFactory")][0]
widget = factory().create(task.get_param_object())
panel = widget.panel()
panel.resize(420, 900 if expanded else 640)
panel.show()
app.processEvents()
if expanded:
    for button in panel.findChildren(QToolButton):
        button.setChecked(True)
    app.processEvents()
panel.grab().save(path)
panel.close()
app.processEvents()
"""


def save_small(image: Image.Image, name: str) -> str:
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    path = os.path.join(IMAGES, name)
    image.convert("RGB").save(path, optimize=True)
    print(f"wrote {path}")
    return path


def labelled_montage(columns: int = 5) -> str:
    """Held-out digits as the inference plugin labelled them (top-2 drawn on each)."""
    paths = sorted(glob.glob(os.path.join(ROOT, "demo_output", "labelled", "*.png")))[: columns * 2]
    tiles = [Image.open(p).convert("RGB") for p in paths]
    width, height = tiles[0].size
    sheet = Image.new("RGB", (columns * width, ((len(tiles) + columns - 1) // columns) * height), "white")
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * width, (index // columns) * height))
    return save_small(sheet, "labelled_digits.png")


def panels() -> list:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", IKOMIA_AUTO_COMPLETION="0")
    written = []
    for name in ("infer_torchvision_resnext", "train_torchvision_resnext"):
        for state, suffix in (("collapsed", ""), ("expanded", "_advanced")):
            path = os.path.join(IMAGES, f"{name}_panel{suffix}.png")
            subprocess.run([sys.executable, "-c", PANEL_SCRIPT, name, path, state], env=env, check=True, cwd=ROOT)
            written.append(save_small(Image.open(path), os.path.basename(path)))
    return written


def main() -> int:
    if not os.path.isfile(os.path.join(DEMO_RUN, "best.pth")):
        sys.exit(f"no demo run in {DEMO_RUN}: run `make demo` first (`make pictures` does)")
    os.makedirs(IMAGES, exist_ok=True)
    labelled_montage()
    for name in PICTURES:
        source = os.path.join(DEMO_RUN, name)
        if os.path.isfile(source):
            save_small(Image.open(source), f"digits_{name}")
    panels()
    return 0


if __name__ == "__main__":
    sys.exit(main())
