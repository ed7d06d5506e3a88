"""A run on this process, or on N processes of this machine (and of others) started with torch's elastic launcher
(the API behind torchrun): the launching. What rank 0 tells the caller on the way comes back through relay.py.
A process that dies ends the run with a WorkerError naming its rank, how it ended and its last lines; the
checkpoints already written stay. The way in is resnext_core.train.train(), which also scores the test folder.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

from ..common.errors import WorkerError
from ..common.runtime import resolve_device
from .config import TRAIN_SCHEMA
from .distributed import check_batch_size, check_sync_batchnorm, process_count
from .relay import RelayServer, relay_events
from .trainer import Callbacks, Trainer, TrainResult

# Run by each worker: the folder holding resnext_core goes first on its path, so the plugin's own copy runs.
WORKER_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from resnext_core.train import main; "
                    "main(['--launch_file', sys.argv[2]])")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAST_LINES = 5  # of a failed worker's output, in the error


def python_executable() -> str:
    """A Python interpreter for the workers: this one, unless it is embedded in an application."""
    if os.path.basename(sys.executable).lower().startswith("python"):
        return sys.executable
    for candidate in (os.path.join(sys.exec_prefix, "bin", "python3"), shutil.which("python3")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise WorkerError(f"no Python interpreter found to start training processes (this one is {sys.executable})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Nodes:
    """The machines of one run (the command line's --nnodes, --node_rank, --master_addr, --master_port).

    Node 0 hosts the rendezvous on master_port; global ranks are node rank × processes + local rank, so
    rank 0, which relays and writes the run folder, runs on node 0.
    """

    count: int = 1
    rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port of this machine (one node)
    timeout: float = 300.0  # seconds a node waits for the master, and the rendezvous for every node


ONE_NODE = Nodes()


def rendezvous_port(nodes: Nodes) -> int:
    """The master's port, checked first: a clear error instead of workers waiting on a port that is not ours."""
    if nodes.master_port == 0:
        return free_port()
    if nodes.rank == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", nodes.master_port))
            except OSError as exc:
                raise WorkerError(f"master port {nodes.master_port} is not free on this machine ({exc.strerror}): "
                                  "another run or service holds it; choose another --master_port") from None
        return nodes.master_port
    deadline = time.monotonic() + nodes.timeout
    while True:
        try:
            with socket.create_connection((nodes.master_addr, nodes.master_port), timeout=5):
                return nodes.master_port
        except socket.gaierror as exc:
            raise WorkerError(f"master address '{nodes.master_addr}' does not resolve ({exc.strerror})") from None
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise WorkerError(
                    f"cannot reach the master {nodes.master_addr}:{nodes.master_port} after {nodes.timeout:g} s "
                    f"({exc.strerror or exc}): start node 0 first, and check the address and that the port is open "
                    "between the machines") from None
            time.sleep(1)


def run_training(config, callbacks: Callbacks = Callbacks(), progress_bar: bool = False, echo_output: bool = False,
                 nodes: Nodes = ONE_NODE) -> TrainResult | None:
    """A whole run of `config` (a TrainConfig): in this process, or on `config.processes` processes on each
    of `nodes`. Returns the TrainResult, or None on the nodes other than 0 (rank 0 holds the result)."""
    device = resolve_device(config.device)
    processes = process_count(config.processes, device, config.gpus)
    if processes == 1 and nodes.count == 1:
        return Trainer(config, callbacks, progress_bar=progress_bar).run()
    check_batch_size(config.batch_size, processes * nodes.count)
    check_sync_batchnorm(config.sync_batchnorm, device, processes * nodes.count)
    return launch_training(TRAIN_SCHEMA.stored(config), processes, callbacks, echo_output, nodes)


def launch_training(stored_config: dict, processes: int, callbacks: Callbacks, echo_output: bool = False,
                    nodes: Nodes = ONE_NODE):
    """Train `stored_config` ({parameter: stored string}) on `processes` processes of this machine, node
    `nodes.rank` of `nodes.count`; returns TrainResult on node 0, None on the others.

    echo_output: the workers' output also goes to this process's (a terminal); it is kept in files anyway.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Its warning that it runs on a thread (so installs no signal handlers) is expected: the caller's stop,
    # not a signal, ends the workers here.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.ERROR)
    port = rendezvous_port(nodes)
    private = tempfile.mkdtemp(prefix="resnext-launch-")  # mode 0700: the key file is this user's alone
    relay = RelayServer() if nodes.rank == 0 else None
    try:
        launch_file = os.path.join(private, "launch.json")
        with open(os.open(launch_file, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
            json.dump({"config": stored_config, "relay": list(relay.address) if relay else None,
                       "authkey": relay.authkey.hex() if relay else ""}, handle)
        logs = os.path.join(private, "logs")
        # The static rendezvous (torchrun's --master-addr/--node-rank): node 0 hosts the store on `port`.
        launch_config = LaunchConfig(
            min_nodes=nodes.count, max_nodes=nodes.count, nproc_per_node=processes, run_id="resnext",
            rdzv_backend="static", rdzv_endpoint=f"{nodes.master_addr}:{port}",
            rdzv_configs={"rank": nodes.rank, "timeout": int(nodes.timeout)}, max_restarts=0, monitor_interval=0.5,
            # Rank 0 reports through the relay; echoed, its output shows warnings and errors only.
            logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=Std.ALL, tee=Std.ALL if echo_output else Std.NONE,
                                        local_ranks_filter={0}),
        )
        outcome = {}

        def run_agent() -> None:
            try:
                elastic_launch(launch_config, entrypoint=python_executable())("-c", WORKER_BOOTSTRAP, PACKAGE_PARENT, launch_file)
            except BaseException as exc:  # re-raised in the caller's thread below
                outcome["error"] = exc

        agent = threading.Thread(target=run_agent, name="resnext-agent")
        agent.start()
        if relay is not None:
            relay_events(agent, relay, callbacks, outcome)
        agent.join()
        error = outcome.get("error")
        if isinstance(error, ChildFailedError):
            raise WorkerError(describe_failure(error, logs)) from None
        if error is not None:
            raise error
        if relay is not None and "result" not in outcome:
            raise WorkerError(f"the training processes ended without a result; their output is in {logs}")
        shutil.rmtree(private, ignore_errors=True)
        return outcome.get("result")
    finally:
        if relay is not None:
            relay.close()


def describe_failure(error, logs: str) -> str:
    """The first failed rank, how it ended and its last output lines."""
    rank, failure = error.get_first_failure()
    how = failure.message if failure.message else f"exit code {failure.exitcode}"
    if failure.exitcode < 0:
        how = f"killed by signal {failure.signal_name()}"
    lines = last_lines(logs, failure.local_rank)
    tail = ("; its last output: " + " | ".join(lines)) if lines else ""
    return (f"training process rank {rank} failed ({how}){tail}. The run's last.pth keeps the last completed "
            f"epoch or stop; the workers' output is in {logs}")


def last_lines(logs: str, local_rank: int, count: int = LAST_LINES) -> list:
    lines = []
    for name in ("stdout.log", "stderr.log"):
        for path in glob.glob(os.path.join(logs, "*", "attempt_*", str(local_rank), name)):
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines += [line.strip() for line in handle if line.strip() and "Warning" not in line]
    return lines[-count:]
