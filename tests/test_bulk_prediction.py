"""Bulk prediction (python -m resnext_core.predict): the plugin's results in batches, folders, globs, lists and
videos, unreadable files reported, resumed runs, killed runs that lose nothing, and 2 gloo processes giving the
rows of 1."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from resnext_core import InferConfig
from resnext_core.data.decode import read_image
from resnext_core.inference.bulk import predict_files
from resnext_core.inference.results_file import ResultsFile
from resnext_core.data.sources import Unit, batches, expand_sources, units_of, video_frames

from conftest import ROOT
from helpers import INFER, new_task, small_checkpoint, textured_image
from test_video import write_clip

CLI = [sys.executable, "-m", "resnext_core.predict", "--no-progress"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Photos of varied sizes in JPEG and PNG (in sub-folders), an unreadable file, a truncated JPEG, a clip."""
    root = tmp_path_factory.mktemp("media")
    for index in range(12):
        folder = root / ("jpeg" if index % 2 else "png") / f"set{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(textured_image(40 + 13 * index, 90 - 3 * index, seed=index))
        image.save(folder / f"{index:02d}.{'jpg' if index % 2 else 'png'}", quality=92)
    (root / "png" / "not_an_image.png").write_text("text, not pixels")
    whole = (root / "jpeg" / "set1" / "01.jpg").read_bytes()
    (root / "jpeg" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    write_clip(root / "clip.mp4", frames=12)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pth"
    small_checkpoint(path)
    return str(path)


def _rows(path) -> list:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rows_are_the_plugins_results_in_batches(tmp_path, media, model):
    """Each image's top-1 is the plugin's, its confidence within 1e-4 (fp32 here: batching moves the last digits;
    bf16 moves them more: README). Unreadable and truncated files get a row with their error."""
    output = tmp_path / "out.csv"
    result = predict_files(InferConfig(model_weight_file=model, top_k=2), [str(media)], str(output), batch_size=5,
                           workers=1, progress=False)
    rows = _rows(output)
    images = sorted(str(p) for p in media.rglob("*") if p.suffix in (".png", ".jpg"))
    assert [r["path"] for r in rows if not r["frame"]] == images, "every image, in the folder's order"
    assert [int(r["frame"]) for r in rows if r["frame"]] == list(range(12)), "every frame of the clip"
    failed = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    assert set(failed) == {"not_an_image.png", "truncated.jpg"} and "Cannot read image" in failed["not_an_image.png"]
    assert "truncated" in failed["truncated.jpg"] and (result.errors, result.classified) == (2, len(rows) - 2)
    _, task = new_task(INFER, {"model_weight_file": model})
    for r in rows:
        if r["error"] or r["frame"]:
            continue
        task.get_input(0).set_image(read_image(r["path"]))
        task.run()
        (name, confidence), second = task.get_whole_image_results()[:2]
        assert (r["class_1"], r["class_2"]) == (name, second[0])
        assert abs(float(r["confidence_1"]) - float(confidence)) < 1e-4


def test_a_video_in_chunks_reads_the_frames_it_reads_whole(media):
    clip = str(media / "clip.mp4")
    whole = [frame for _, frame in video_frames(clip)]
    units = units_of([clip], chunk=5)
    assert [(u.start, u.count) for u in units] == [(0, 5), (5, 5), (10, 2)]
    chunked = [frame for u in units for _, frame in video_frames(clip, u.start, u.count)]
    assert len(chunked) == len(whole) == 12 and all(np.array_equal(a, b) for a, b in zip(whole, chunked))


def test_batches_hold_the_same_items_whatever_the_decoding_threads(media):
    """Samples come in the units' order: a batch's images, and so the engine's rounding, do not depend on how many
    threads decode or how fast each is."""
    from resnext_core.common.preprocess import Preprocessing

    units = units_of(expand_sources([str(media)]), chunk=5)
    runs = {workers: [(samples.keys, samples.errors, samples.images) for samples in batches(units, Preprocessing(32, 36), 3, workers)]
            for workers in (0, 1, 4)}
    assert [key for keys, _, _ in runs[0] for key in keys] == [(u.path, None) if u.start is None else (u.path, f)
                                                              for u in units for f in (u.frames or [None])]
    for workers in (1, 4):
        assert [(keys, errors) for keys, errors, _ in runs[workers]] == [(keys, errors) for keys, errors, _ in runs[0]]
        assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(runs[workers], runs[0]))
    stopped = batches(units, Preprocessing(32, 36), 2, 3)
    next(stopped)
    stopped.close()  # a consumer that stops early ends its threads


def test_sources_are_folders_globs_lists_and_files(tmp_path, media):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{media / 'png' / 'set0' / '00.png'}\n# a comment\nmissing.png\n")
    paths = expand_sources([str(media / "jpeg" / "**" / "*.jpg"), str(listed), str(media / "clip.mp4")])
    assert paths[:3] == sorted(str(p) for p in media.rglob("*.jpg"))[:3]
    assert paths[-3:] == [str(media / "png" / "set0" / "00.png"), str(tmp_path / "missing.png"), str(media / "clip.mp4")]
    with pytest.raises(Exception, match="source .*nowhere not found: expected a folder, a file, a glob pattern"):
        expand_sources([str(tmp_path / "nowhere")])


def test_a_rerun_adds_only_the_rest_and_writes_every_format(tmp_path, media, model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((media / "png").rglob("[0-9]*.png"))[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    config = InferConfig(model_weight_file=model, top_k=3)
    first = predict_files(config, [str(folder)], str(tmp_path / "out.jsonl"), workers=0, progress=False)
    before = (tmp_path / "out.jsonl").read_text().splitlines()
    for path in sorted((media / "jpeg").rglob("[0-9]*.jpg"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    again = predict_files(config, [str(folder)], str(tmp_path / "out.jsonl"), workers=0, progress=False)
    after = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (first.classified, again.classified, again.already_done) == (4, 3, 4)
    assert [json.dumps(r) for r in after if r["path"].endswith(".png")] == before, "the first rows kept as they were"
    assert len(after) == 7 and all(len(r["classes"]) == 3 for r in after)
    predict_files(config, [str(folder)], str(tmp_path / "out.parquet"), workers=0, progress=False)
    import pyarrow.parquet

    assert pyarrow.parquet.read_table(tmp_path / "out.parquet").to_pylist() == after
    predict_files(config, [str(folder)], str(tmp_path / "out.csv"), workers=0, progress=False)
    assert [r["class_3"] for r in _rows(tmp_path / "out.csv")] == [r["classes"][2] for r in after]


@pytest.mark.slow
def test_a_killed_run_loses_no_finished_row(tmp_path, media, model):
    many = tmp_path / "many"
    many.mkdir()
    for index in range(60):
        Image.fromarray(textured_image(200, 260, seed=index)).save(many / f"{index:03d}.png")
    output = tmp_path / "out.csv"
    args = [*CLI, str(many), "--output", str(output), "--model_weight_file", model, "--batch-size", "4",
            "--input_size", "224", "--engine", "torch", "--workers", "0"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = ResultsFile(str(output))
    deadline = time.monotonic() + 300
    while len(results.rows()) < 8 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(results.rows())
    assert 8 <= kept < 60 and not output.exists(), "killed mid-run: rows in the parts, no output yet"
    completed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert f"{60 - kept} classified, 0 unreadable, {kept} already in" in completed.stdout
    rows = _rows(output)
    assert [os.path.basename(r["path"]) for r in rows] == [f"{i:03d}.png" for i in range(60)], "each image once, in order"
    assert not os.path.exists(str(output) + ".parts")


@pytest.mark.slow
def test_two_gloo_processes_give_the_rows_of_one(tmp_path, media, model):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    flags = ["--model_weight_file", model, "--top_k", "3", "--batch-size", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([*CLI, str(media), "--output", str(one), *flags], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            str(port), "-m", "resnext_core.predict", "--no-progress", str(media), "--output", str(two),
                            *flags], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert ranks.returncode == 0, ranks.stdout[-2000:] + ranks.stderr[-3000:]
    assert "rank 0: " in ranks.stdout and "rank 1: " in ranks.stdout, "each rank classified its shard"
    assert two.read_text() == one.read_text(), "row for row"
    assert not os.path.exists(str(two) + ".parts")


def test_a_partly_done_video_resumes_at_its_first_missing_frame(tmp_path, media, model):
    clip = str(media / "clip.mp4")
    output = tmp_path / "out.csv"
    results = ResultsFile(str(output))
    results.append([{"path": clip, "frame": frame, "classes": ["cat"], "confidences": [1.0], "error": None}
                    for frame in range(7)])
    results.close()
    rerun = predict_files(InferConfig(model_weight_file=model), [clip], str(output), workers=0, progress=False)
    assert (rerun.classified, rerun.already_done) == (5, 7)
    assert [int(r["frame"]) for r in _rows(output)] == list(range(12))
    assert Unit(clip, 0, 12).frames == range(0, 12)
