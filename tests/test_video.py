"""Video through the inference plugin as Ikomia runs it: every frame classified and drawn, with the outputs saved
(run_on(path=video) with auto-save, and a folder of images and a video), explanations as a second video."""
import glob
import json
import os

import numpy as np
import pytest

from resnext_core import load_classifier

from helpers import INFER, cache_random_weights

FRAMES, HEIGHT, WIDTH = 20, 120, 160


def write_clip(path, frames=FRAMES):
    """A bright clip with a dark square crossing it: every frame differs, and so do its classes."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
        frame[40:90, 6 * index : 6 * index + 40] = (20, 40, 160)
        writer.write(frame)
    writer.release()
    return str(path)


def read_frames(path):
    """The clip's frames, RGB, decoded by the OpenCV that Ikomia's reader uses here (ikomia imported first)."""
    import ikomia  # noqa: F401
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _saved(folder, pattern):
    return sorted(glob.glob(os.path.join(str(folder), "**", pattern), recursive=True))


def _workflow(output, **parameters):
    from ikomia.dataprocess.workflow import Workflow

    workflow = Workflow()
    task = workflow.add_task(name=INFER, auto_connect=True)
    task.set_parameters({"model_name": "resnext50", "input_size": "64", **parameters})
    workflow.set_output_folder(str(output))
    return workflow, task


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    cache_random_weights("resnext50")
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.mark.slow
def test_a_video_with_saved_outputs_is_classified_and_drawn_frame_by_frame(tmp_path, clip):
    """With auto-save on, the explanation output, empty while explain is none, once stopped the run at frame 1."""
    workflow, _ = _workflow(tmp_path / "out")
    workflow.set_auto_save(True)
    workflow.run_on(path=clip)
    videos, tables = _saved(tmp_path / "out", "*.mp4"), _saved(tmp_path / "out", "NumericIO_*.json")
    assert len(videos) == 1, "the labelled video only: no explanation asked for"
    labelled = read_frames(videos[0])
    assert len(labelled) == FRAMES
    source = read_frames(clip)
    box = (slice(0, 12), slice(0, 60))  # where the top-k labels are drawn, on a translucent dark box
    for drawn, original in zip(labelled, source):
        assert drawn[box].mean() < 0.7 * original[box].mean(), "labels drawn on every frame"
        assert np.abs(drawn[60:, 100:].astype(int) - original[60:, 100:]).mean() < 8, "the rest is the frame"
    (table,) = tables
    per_frame = json.load(open(table))
    assert len(per_frame) == FRAMES
    expected = load_classifier(model_name="resnext50", input_size=64, device="cpu").predict(source)
    for saved, probabilities in zip(per_frame, expected):
        names, confidences = saved["valueLabels"][0], [float(c) for c in saved["values"][0]]
        assert names[0] == expected_name(probabilities) and abs(confidences[0] - float(probabilities.max())) < 1e-3
    assert len({tuple(saved["valueLabels"][0][:3]) for saved in per_frame}) > 1, "the frames' classes differ"


def expected_name(probabilities):
    from torchvision.models import ResNeXt50_32X4D_Weights

    return ResNeXt50_32X4D_Weights.DEFAULT.meta["categories"][int(probabilities.argmax())]


@pytest.mark.slow
def test_a_folder_of_images_and_a_video_gives_every_result(tmp_path, clip):
    from PIL import Image

    folder = tmp_path / "media"
    folder.mkdir()
    os.symlink(clip, folder / "clip.mp4")
    for name, value in (("a.png", 60), ("b.jpg", 180)):
        Image.fromarray(np.full((50, 70, 3), value, np.uint8)).save(folder / name)
    workflow, _ = _workflow(tmp_path / "out", explain="gradcam")
    workflow.run_on(folder=str(folder))
    videos = _saved(tmp_path / "out", "*.mp4")
    assert len(videos) == 2, "the labelled video and the explanation video"
    assert [len(read_frames(video)) for video in videos] == [FRAMES, FRAMES]
    explained = read_frames(videos[1])
    assert np.std([frame.mean() for frame in explained]) > 0 and explained[0].std() > 5, "heat drawn, not an empty image"
    assert len(_saved(tmp_path / "out", "*a.png")) == 1 and len(_saved(tmp_path / "out", "*b.png")) == 1
    (table,) = _saved(tmp_path / "out", "NumericIO_*.json")
    assert len(json.load(open(table))) == FRAMES
