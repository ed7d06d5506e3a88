"""Training: train(), the one way in (the plugin's, this command line's), and the command line itself, with the
training plugin's parameters, on one process or many.

    python -m resnext_core.train --dataset_folder data --output_folder runs --epochs 5
    python -m resnext_core.train --config params.json --processes 2        # 2 processes on this machine
    python -m resnext_core.train --config params.json --processes 8 \\
        --nnodes 2 --node_rank 0 --master_addr node1 --master_port 29500   # on node1; node_rank 1 on the other
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m resnext_core.train --config params.json                         # each process is one rank

--config reads a JSON object of parameters (the names and values the plugin shows, e.g. from a saved
workflow's task parameters); flags override it. Under torchrun each process trains as the rank torchrun
gives it and `processes` is ignored. Ctrl-C (or the SIGTERM torchrun forwards) stops every rank within a
batch; last.pth then resumes the run, with any number of processes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict

from torch.distributed.elastic.multiprocessing.errors import record

from .common.cli import add_flag, add_parameter_flags, command_parser, parsed_config, run_command
from .common.errors import ResNeXtError
from .common.world import world_from_environment
from .data.datasets import labelled_set
from .inference.config import InferConfig
from .inference.evaluation import evaluate_folder
from .training import distributed
from .training.config import TRAIN_SCHEMA, TrainConfig
from .training.launch import ONE_NODE, Nodes, run_training
from .training.records import CLASSES_TXT
from .training.relay import RelayClient
from .training.trainer import Callbacks, Trainer, TrainResult

MASTER_PORT = 29500  # torchrun's default; one machine alone takes a free port instead
TEST_FOLDER = "test"  # the run folder's sub-folder for test_folder's report


def train(config: TrainConfig, callbacks: Callbacks = Callbacks(), progress_bar: bool = False,
          echo_output: bool = False, nodes: Nodes = ONE_NODE) -> TrainResult | None:
    """A whole training run of `config`, on this process or on `config.processes` processes on each of `nodes`,
    then its test_folder scored. Returns the TrainResult, or None on the nodes other than 0 (which hold no run
    folder). progress_bar: a tqdm bar per epoch; echo_output: the workers' output on this one's too."""
    test = labelled_set(config.test_folder) if config.test_folder else None  # a bad one fails before the training
    result = run_training(config, callbacks, progress_bar, echo_output, nodes)
    if result is not None:
        score_test_folder(config, result, callbacks.log, test)
    return result


def score_test_folder(config: TrainConfig, result: TrainResult, log=print, test=None) -> None:
    """The run's best checkpoint (last.pth where it keeps none) scored on test_folder exactly as the evaluate
    command scores it, with the inference plugin's defaults, into the run folder's test/; result.test gets the
    scalar metrics. Nothing for a stopped run. test: test_folder already read (a LabelledSet), else read here."""
    if not config.test_folder or result.stopped:
        return
    test = test or labelled_set(config.test_folder)
    trained = set(open(os.path.join(result.run_folder, CLASSES_TXT), encoding="utf-8").read().splitlines())
    if not trained & set(test.class_names):
        log(f"warning: test_folder {config.test_folder} holds none of the trained classes: nothing scored")
        return
    best = os.path.join(result.run_folder, "best.pth")
    weight_file = best if os.path.isfile(best) else os.path.join(result.run_folder, "last.pth")
    folder = os.path.join(result.run_folder, TEST_FOLDER)
    report = evaluate_folder(InferConfig(model_weight_file=weight_file, device=config.device), test, folder)
    headline = f"mAP {report['mAP']:.3f}" if "mAP" in report else f"top-1 {100 * report['top1']:.1f}%"
    log(f"test {report['folder']}: {report['images']} images, {headline}, macro F1 {report['f1']:.3f}; report in {folder}")
    result.test = {key: value for key, value in report.items() if isinstance(value, (int, float))}


def parser() -> argparse.ArgumentParser:
    parsed = command_parser("python -m resnext_core.train", __doc__)
    add_flag(parsed, "launch_file", help=argparse.SUPPRESS)  # written by launch.py for its workers
    machines = parsed.add_argument_group("several machines (without torchrun)")
    add_flag(machines, "nnodes", type=int, default=ONE_NODE.count, help="machines in the run")
    add_flag(machines, "node_rank", type=int, default=ONE_NODE.rank, help="this machine's index, 0 hosting the rendezvous")
    add_flag(machines, "master_addr", default=ONE_NODE.master_addr, help="node 0's address, as the others reach it")
    add_flag(machines, "master_port", type=int, default=MASTER_PORT, help="node 0's rendezvous port")
    add_flag(machines, "rendezvous_timeout", type=float, default=ONE_NODE.timeout,
             help="seconds to wait for node 0 and for every machine")
    add_parameter_flags(parsed, TRAIN_SCHEMA, "the training plugin's parameters")
    return parsed


def print_line(line: str) -> None:
    print(line, flush=True)


def stop_on_signals() -> dict:
    """Ctrl-C and SIGTERM ask for a stop (checked before every batch) instead of killing the run."""
    stop = {"asked": False}

    def ask_stop(signum, frame):
        stop["asked"] = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, ask_stop)
    return stop


def printed_callbacks(stop: dict) -> Callbacks:
    return Callbacks(on_start=lambda folder: print_line(f"run folder {folder}"), log=print_line,
                     should_stop=lambda: stop["asked"])


def train_as_rank(config, world, relay: RelayClient | None, stop: dict) -> None:
    """One rank's part of a run started by torchrun or launch.py; rank 0 of launch.py's run relays its callbacks."""
    callbacks = relay.callbacks(lambda: stop["asked"]) if relay is not None else printed_callbacks(stop)
    trainer = Trainer(config, callbacks, world=world)
    try:
        result = trainer.run()
    finally:
        distributed.finish(world)
    if world.is_main and relay is None:  # under torchrun; launch.py's caller scores it
        score_test_folder(config, result, callbacks.log)
    if relay is not None:
        relay.send("result", asdict(result))
    elif world.is_main:
        print_line(f"{'stopped' if result.stopped else 'done'}: {result.run_folder}")


@record  # a worker's exception reaches the launcher's error, not only its log
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    stop = stop_on_signals()
    world = world_from_environment()
    if args.launch_file:  # a worker of launch.py
        with open(args.launch_file, encoding="utf-8") as handle:
            launch = json.load(handle)
        relay = RelayClient(launch["relay"], bytes.fromhex(launch["authkey"])) if world.is_main and launch["relay"] else None
        train_as_rank(TRAIN_SCHEMA.parse(launch["config"]), world, relay, stop)
    elif world.distributed:  # a worker of torchrun
        train_as_rank(parsed_config(args, TRAIN_SCHEMA), world, None, stop)
    else:
        config = parsed_config(args, TRAIN_SCHEMA)
        nodes = Nodes(args.nnodes, args.node_rank, args.master_addr, args.master_port if args.nnodes > 1 else 0,
                      args.rendezvous_timeout)
        if not (nodes.count >= 1 and 0 <= nodes.rank < nodes.count):
            raise ResNeXtError(f"--node_rank must be between 0 and --nnodes - 1 ({nodes.count - 1}), got {nodes.rank}")
        result = train(config, printed_callbacks(stop), progress_bar=sys.stderr.isatty(), echo_output=True, nodes=nodes)
        if result is None:
            print_line(f"node {nodes.rank}: its processes are done; node 0 holds the run folder")
        else:
            print_line(f"{'stopped' if result.stopped else 'done'}: {result.run_folder}")
    return 0


if __name__ == "__main__":
    run_command(main)
