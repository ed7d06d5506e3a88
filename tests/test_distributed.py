"""Training on several processes: DDP over gloo on the CPU, through the plugin and the command line."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from resnext_core.common.checkpoint import load_checkpoint, safe_load
from resnext_core.common.errors import ConfigError
from resnext_core.training import distributed
from resnext_core.training.data import EpochBatches

from conftest import ROOT
from helpers import DIGITS_RECIPE, INFER, TRAIN, heldout_accuracy, largest_difference, new_task, tiny_dataset

CLI = [sys.executable, "-m", "resnext_core.train"]
SMALL = {"model_name": "resnext50", "train_mode": "scratch", "input_size": "32", "batch_size": "8", "optimizer": "adamw",
         "learning_rate": "0.002", "hflip": "False", "val_split": "0.25", "export_pth": "False"}


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("balanced", [False, True])
def test_ranks_split_each_global_batch_of_the_single_process_order(world_size, balanced):
    """The shards of a batch are that batch (its trailing one cut to a multiple of the processes), whatever
    the number of processes, and a resumed epoch starts at the same global batch."""
    size, batch_size = 50, 6
    weights = [1.0 + (i % 5) for i in range(size)] if balanced else None
    single = EpochBatches(size, batch_size, 3, 1, image_weights=weights).batches
    shards = [EpochBatches(size, batch_size, 3, 1, 0, weights, rank, world_size).batches for rank in range(world_size)]
    assert len({len(rank_batches) for rank_batches in shards}) == 1, "every rank steps the same number of times"
    for index, rank_batches in enumerate(zip(*shards)):
        merged = sorted(i for shard in rank_batches for i in shard)
        assert len({len(shard) for shard in rank_batches}) == 1 and min(map(len, rank_batches)) >= 2
        whole = single[index][: len(single[index]) // world_size * world_size]
        assert merged == sorted(whole)
    resumed = EpochBatches(size, batch_size, 3, 1, 4, weights, world_size - 1, world_size).batches
    assert resumed == shards[world_size - 1][4:]


@pytest.mark.slow
def test_process_parameters_are_checked_before_anything_starts(tmp_path):
    assert distributed.parse_processes(" 2 ") == "2" and distributed.parse_processes("ALL") == "all"
    assert distributed.parse_gpus(" 1, 0") == "1,0" and distributed.parse_gpus("") == ""
    for bad, parse, match in (("0", distributed.parse_processes, "processes"), ("two", distributed.parse_processes, "processes"),
                              ("0,x", distributed.parse_gpus, "gpus"), ("1,1", distributed.parse_gpus, "twice")):
        with pytest.raises(ConfigError, match=match):
            parse(bad)
    with pytest.raises(ConfigError, match="one per GPU"):
        distributed.process_count("all", torch.device("cpu"), "")
    with pytest.raises(ConfigError, match="batch_size 6 .* multiple of 4"):
        distributed.check_batch_size(6, 4)
    _, task = new_task(TRAIN, {**SMALL, "dataset_folder": str(tmp_path), "output_folder": str(tmp_path / "out"),
                               "processes": "3", "batch_size": "8"})
    with pytest.raises(Exception, match="batch_size 8 is the global batch, split evenly over 3 processes"):
        task.run()
    assert not os.path.exists(tmp_path / "out"), "nothing written, no process started"
    task.set_parameters({"batch_size": "6", "sync_batchnorm": "True"})
    with pytest.raises(Exception, match="sync_batchnorm needs CUDA devices .* got device cpu"):
        task.run()
    assert not os.path.exists(tmp_path / "out")


# Three SGD steps of the trainer's parts on fixed global batches of 8, in fp32, one thread per process.
# "trainer": train_one_epoch on this process's shard of each batch (the whole batch on one process).
# "shards": one process, each batch's gradient accumulated over its two halves, each half's loss halved.
# Rank 0 (or the single process) saves the model's parameters.
DDP_STEPS = """
import sys
import torch
from resnext_core.common.world import world_from_environment
from resnext_core.training import distributed
from resnext_core.training.config import TrainConfig
from resnext_core.training.loop import TrainingSetup, build_classifier, build_optimizer, train_one_epoch
from resnext_core.training.multi_label import SmoothedBinaryCrossEntropy

mode, out, multi_label = sys.argv[1], sys.argv[2], sys.argv[3] == "multi"
world = world_from_environment()
device = distributed.start(world, torch.device("cpu"))
config = TrainConfig(model_name="resnext50", weights="none", train_mode="scratch", optimizer="sgd",
                     learning_rate=0.05, momentum=0.9, weight_decay=0.0005)
torch.manual_seed(0)
model = build_classifier(config, 4, device, world)
optimizer = build_optimizer(model, config)
criterion = SmoothedBinaryCrossEntropy(0.1) if multi_label else torch.nn.CrossEntropyLoss()
images = torch.randn(3, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
labels = torch.randint(0, 4, (3, 8), generator=torch.Generator().manual_seed(2))
if multi_label:  # 0/1 vectors: an image may hold several of the 4 classes, or none
    labels = (torch.rand(3, 8, 4, generator=torch.Generator().manual_seed(2)) < 0.4).float()
if mode == "trainer":
    share = 8 // world.size
    shard = slice(world.rank * share, (world.rank + 1) * share)
    setup = TrainingSetup(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                          torch.amp.GradScaler("cpu", enabled=False), criterion, criterion, device, torch.float32,
                          distributed.wrap_model(model, device, world), multi_label=multi_label)
    train_one_epoch(setup, [(images[i, shard], labels[i, shard]) for i in range(3)], epoch=0)
else:
    model.train()
    for i in range(3):
        optimizer.zero_grad()
        for half in (slice(0, 4), slice(4, 8)):
            (criterion(model(images[i, half].contiguous(memory_format=torch.channels_last)), labels[i, half]) / 2).backward()
        optimizer.step()
if world.is_main:
    torch.save({name: p.detach() for name, p in model.named_parameters()}, out)
distributed.finish(world)
"""


def _ddp_steps(tmp_path, mode: str, processes: int = 1, labels: str = "single") -> dict:
    out = tmp_path / f"{mode}-{processes}-{labels}.pt"
    port, ranks = str(_free_port()), []
    for rank in range(processes):
        world = {"RANK": str(rank), "WORLD_SIZE": str(processes), "LOCAL_RANK": str(rank),
                 "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port} if processes > 1 else {}
        ranks.append(subprocess.Popen([sys.executable, "-c", DDP_STEPS, mode, str(out), labels], cwd=ROOT,
                                      env=dict(os.environ, OMP_NUM_THREADS="1", **world),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in ranks:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["single", "multi"])
def test_steps_on_two_processes_equal_one_process_stepping_on_the_same_shards(tmp_path, labels):
    """DDP averages the gradients of each rank's shard: two processes end where one process does that
    accumulates the two halves' gradients, to float rounding; the shards and the averaging are the trainer's
    (a softmax's cross-entropy, or a multi-label model's binary cross-entropy on label vectors). BatchNorm
    normalises each shard by itself, so the whole batch on one process is another run."""
    two_processes = _ddp_steps(tmp_path, "trainer", processes=2, labels=labels)
    assert largest_difference(two_processes, _ddp_steps(tmp_path, "shards", labels=labels)) < 1e-4
    assert largest_difference(two_processes, _ddp_steps(tmp_path, "trainer", labels=labels)) > 1e-3


@pytest.mark.slow
def test_two_processes_through_the_plugin_match_one(tmp_path, digits, digits_model_accuracy, heldout):
    """The same recipe and global batch on 2 gloo processes: one checkpoint the inference plugin loads,
    held-out accuracy near the single-process run's; the plugin's outputs as with one process.

    The two runs differ beyond rounding (BatchNorm normalises each process's half batch, as the test above
    shows, and bf16 autocast rounds differently where the CPU has it), so their accuracies differ as two
    runs do: on 360 digits near 95%, the difference of two runs has a standard deviation of about 1.6
    points; 4 points is 2.5 of them. The step's exact equivalence is the test above's."""
    _, task = new_task(TRAIN, {**DIGITS_RECIPE, "dataset_folder": os.path.join(digits, "train"),
                               "output_folder": str(tmp_path), "processes": "2"})
    task.run()
    run = task.get_output(0).get_path()
    assert os.path.dirname(run) == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(run)], "one run folder: rank 0 alone writes"
    for name in ("best.pth", "last.pth", "metrics.csv", "confusion_matrix.png", "worst_predictions.png"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert task.get_output(1).get_image().size > 0, "the confusion matrix reached the task's picture output"
    history = safe_load(os.path.join(run, "last.pth"))["history"]
    assert [row["epoch"] for row in history] == list(range(1, int(DIGITS_RECIPE["epochs"]) + 1))
    single, double = digits_model_accuracy, heldout_accuracy(os.path.join(run, "best.pth"), heldout)
    print(f"held-out accuracy: 1 process {single:.3f}, 2 processes {double:.3f}")
    assert abs(double - single) <= 0.04 and double >= 0.9


def _cli(args, **kwargs):
    return subprocess.Popen(CLI + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def _wait_for(path_pattern, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        found = glob.glob(path_pattern)
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{path_pattern} never appeared; {process.poll()=}")


@pytest.mark.slow
def test_plugin_stop_then_resume_on_another_number_of_processes(tmp_path, digits):
    """Stopped from the task (STUDIO's stop button) during epoch 2 on 2 processes, resumed from the command
    line on 1: it continues at the saved batch and finishes the run."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=16)
    _, task = new_task(TRAIN, {**SMALL, "dataset_folder": data, "output_folder": str(tmp_path / "out"),
                               "processes": "2", "epochs": "2", "batch_size": "4", "run_name": "first"})

    def stop_in_epoch_2():
        deadline = time.time() + 300
        while not os.path.isfile(tmp_path / "out" / "first" / "last.pth") and time.time() < deadline:
            time.sleep(0.05)
        task.stop()

    threading.Thread(target=stop_in_epoch_2, daemon=True).start()
    task.run()
    last = safe_load(str(tmp_path / "out" / "first" / "last.pth"))
    assert last["epoch"] == 1 and 0 <= last["batch"] < 9, (last["epoch"], last["batch"])
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**SMALL, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "epochs": "2",
                                  "batch_size": "4", "run_name": "resumed"}))
    completed = subprocess.run(CLI + ["--config", str(params), "--resume", str(tmp_path / "out" / "first" / "last.pth"),
                                      "--processes", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"at epoch 2, batch {last['batch']}" in completed.stdout
    resumed = safe_load(str(tmp_path / "out" / "resumed" / "last.pth"))
    assert [row["epoch"] for row in resumed["history"]] == [1, 2] and resumed["batch"] == 0


@pytest.mark.slow
def test_killed_worker_ends_the_run_with_an_error_naming_it(tmp_path, digits):
    """SIGKILL to rank 1: the command fails naming rank 1 and the signal; last.pth of epoch 1 still loads."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=8)
    process = _cli(["--dataset_folder", data, "--output_folder", str(tmp_path / "out"), "--run_name", "killed",
                    "--processes", "2", "--epochs", "1000", *_flags(SMALL)])
    try:
        _wait_for(str(tmp_path / "out" / "killed" / "last.pth"), process)
        rank_1 = [pid for pid in _descendants(process.pid) if "\0RANK=1\0" in _environ(pid)]
        assert len(rank_1) == 1
        os.kill(rank_1[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    print(stderr.strip().splitlines()[-1])
    assert process.returncode == 2, stderr[-3000:]
    assert "rank 1 failed (killed by signal SIGKILL)" in stderr, stderr[-3000:]
    assert load_checkpoint(str(tmp_path / "out" / "killed" / "last.pth")).class_names == ["0", "1", "7"]


def _descendants(pid: int) -> list:
    children = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as handle:
            children += [int(child) for child in handle.read().split()]
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _environ(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", encoding="utf-8", errors="replace") as handle:
            return "\0" + handle.read()
    except OSError:
        return ""


def _flags(params: dict) -> list:
    return [f"--{name}={value}" for name, value in params.items()]


@pytest.mark.slow
def test_two_machines_from_the_command_line(tmp_path, digits):
    """Node 0 and node 1 (here on one machine), one process each: node 0 holds the run folder and its
    checkpoint loads in the inference plugin; node 1 reports that its part is done."""
    data = tiny_dataset(tmp_path / "data", digits_folder=digits, per_class=8)
    port = str(_free_port())
    common = _flags({**SMALL, "dataset_folder": data, "output_folder": str(tmp_path / "out"), "run_name": "nodes",
                     "epochs": "1", "batch_size": "4", "export_pth": "True"})
    # Both "nodes" share this machine's cores: each takes one thread, as each would take its own node's cores.
    # Two OpenMP pools each sized for all the cores, spinning on the same cores, slow the step many times over.
    one_thread = dict(os.environ, OMP_NUM_THREADS="1")
    other = _cli([*common, "--nnodes", "2", "--node-rank", "1", "--master-port", port], env=one_thread)
    try:
        main = subprocess.run(CLI + [*common, "--nnodes", "2", "--node-rank", "0", "--master-port", port], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=one_thread)
        other_out, other_err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            os.killpg(other.pid, signal.SIGKILL)
    assert main.returncode == 0, main.stderr[-3000:]
    assert other.returncode == 0 and "node 1: its processes are done" in other_out, other_err[-3000:]
    assert f"done: {tmp_path / 'out' / 'nodes'}" in main.stdout
    _, infer = new_task(INFER, {"model_weight_file": str(tmp_path / "out" / "nodes" / "best.pth")})
    infer.get_input(0).set_image(np.full((32, 32, 3), 255, np.uint8))
    infer.run()
    assert {name for name, _ in infer.get_whole_image_results()} == {"0", "1", "7"}


@pytest.mark.slow
def test_a_port_in_use_or_an_unreachable_master_is_named_at_once(tmp_path):
    """Checked before any process starts: torchrun itself would wait for the rendezvous timeout (15 min)."""
    params = _flags({**SMALL, "dataset_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), "batch_size": "4"})
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        taken = subprocess.run(CLI + [*params, "--nnodes", "2", "--node-rank", "0", "--master-port", str(port)],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert taken.returncode == 2 and f"master port {port} is not free on this machine" in taken.stderr, taken.stderr[-2000:]
    closed = _free_port()
    unreachable = subprocess.run(CLI + [*params, "--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1",
                                        "--master-port", str(closed), "--rendezvous-timeout", "2"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert unreachable.returncode == 2, unreachable.stderr[-2000:]
    assert f"cannot reach the master 127.0.0.1:{closed} after 2 s" in unreachable.stderr
    assert not os.path.exists(tmp_path / "out")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
