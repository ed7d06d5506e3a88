"""Train from the command line: the training plugin's parameters, on one process or many.

    python -m resnext_core.train_cli --dataset_folder data --output_folder runs --epochs 5
    python -m resnext_core.train_cli --config params.json --processes 2        # 2 processes on this machine
    python -m resnext_core.train_cli --config params.json --processes 8 \\
        --nnodes 2 --node-rank 0 --master-addr node1 --master-port 29500       # on node1; node-rank 1 on the other
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m resnext_core.train_cli --config params.json                         # each process is one rank

--config reads a JSON object of parameters (the names and values the plugin shows, e.g. from a saved
workflow's task parameters); flags override it. Under torchrun each process trains as the rank torchrun
gives it and `processes` is ignored. Ctrl-C (or the SIGTERM torchrun forwards) stops every rank within a
batch; last.pth then resumes the run, with any number of processes.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict

from torch.distributed.elastic.multiprocessing.errors import record

from . import distributed
from .errors import ResNeXtError
from .launch import ONE_NODE, Callbacks, Nodes, RelayClient, train
from .schema import Schema
from .train_config import TrainConfig
from .training import Trainer

SCHEMA = Schema(TrainConfig)
MASTER_PORT = 29500  # torchrun's default; one machine alone takes a free port instead


def parser() -> argparse.ArgumentParser:
    parsed = argparse.ArgumentParser(prog="python -m resnext_core.train_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--config", help="JSON file of parameters; the flags below override it")
    parsed.add_argument("--launch-file", help=argparse.SUPPRESS)  # written by launch.py for its workers
    machines = parsed.add_argument_group("several machines (without torchrun)")
    machines.add_argument("--nnodes", type=int, default=ONE_NODE.count, help="machines in the run")
    machines.add_argument("--node-rank", type=int, default=ONE_NODE.rank, help="this machine's index, 0 hosting the rendezvous")
    machines.add_argument("--master-addr", default=ONE_NODE.master_addr, help="node 0's address, as the others reach it")
    machines.add_argument("--master-port", type=int, default=MASTER_PORT, help="node 0's rendezvous port")
    machines.add_argument("--rendezvous-timeout", type=float, default=ONE_NODE.timeout,
                          help="seconds to wait for node 0 and for every machine")
    for option in SCHEMA:
        parsed.add_argument(f"--{option.name}", metavar="VALUE",
                            help=f"{option.help} (default {option.format(option.default) or 'empty'})")
    return parsed


def stored_values(args) -> dict:
    """{parameter: stored string}: defaults, then the --config file, then the flags."""
    values = SCHEMA.defaults()
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                from_file = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ResNeXtError(f"--config {args.config}: cannot read a JSON object of parameters ({exc})") from None
        if not isinstance(from_file, dict):
            raise ResNeXtError(f"--config {args.config}: expected a JSON object of parameters, got {type(from_file).__name__}")
        values = SCHEMA.update(values, from_file)
    flags = {option.name: getattr(args, option.name) for option in SCHEMA if getattr(args, option.name) is not None}
    return SCHEMA.update(values, flags)


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
    return Callbacks(on_start=lambda folder: print_line(f"run folder {folder}"), on_batch=lambda progress: None,
                     on_epoch=lambda result: None, should_stop=lambda: stop["asked"], log=print_line)


def train_as_rank(config: TrainConfig, world, relay: RelayClient | None, stop: dict) -> None:
    """One rank's part of a run started by torchrun or launch.py; rank 0 reports to the relay, if any."""
    report = relay.send if relay is not None else None
    callbacks = printed_callbacks(stop)
    trainer = Trainer(
        config,
        on_start=(lambda folder: report("start", folder)) if report else callbacks.on_start,
        on_batch=(lambda progress: report("batch", asdict(progress))) if report else None,
        on_epoch=(lambda result: report("epoch", asdict(result))) if report else None,
        should_stop=lambda: stop["asked"] or (relay is not None and relay.stop_requested()),
        log=(lambda line: report("log", line)) if report else print_line,
        world=world,
    )
    try:
        result = trainer.run()
    finally:
        distributed.finish(world)
    if report:
        report("result", asdict(result))
    elif world.is_main:
        print_line(f"{'stopped' if result.stopped else 'done'}: {result.run_folder}")


@record  # a worker's exception reaches the launcher's error, not only its log
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    stop = stop_on_signals()
    world = distributed.world_from_environment()
    if args.launch_file:  # a worker of launch.py
        with open(args.launch_file, encoding="utf-8") as handle:
            launch = json.load(handle)
        relay = RelayClient(launch["relay"], bytes.fromhex(launch["authkey"])) if world.is_main and launch["relay"] else None
        train_as_rank(SCHEMA.parse(launch["config"]), world, relay, stop)
    elif world.distributed:  # a worker of torchrun
        train_as_rank(SCHEMA.parse(stored_values(args)), world, None, stop)
    else:
        config = SCHEMA.parse(stored_values(args))
        nodes = Nodes(args.nnodes, args.node_rank, args.master_addr, args.master_port if args.nnodes > 1 else 0,
                      args.rendezvous_timeout)
        if not (nodes.count >= 1 and 0 <= nodes.rank < nodes.count):
            raise ResNeXtError(f"--node-rank must be between 0 and --nnodes - 1 ({nodes.count - 1}), got {nodes.rank}")
        result = train(config, printed_callbacks(stop), progress_bar=sys.stderr.isatty(), echo_output=True, nodes=nodes)
        if result is None:
            print_line(f"node {nodes.rank}: its processes are done; node 0 holds the run folder")
        else:
            print_line(f"{'stopped' if result.stopped else 'done'}: {result.run_folder}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ResNeXtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
