"""The relay between a training run's rank 0 and the caller that launched it (launch.py): rank 0 hands on what a
single-process Trainer would tell its caller (the run folder, progress per batch, epochs, log lines, the result),
and the caller's stop goes back to rank 0, which every rank obeys within a batch.

Rank 0 connects back to the caller over a local socket (multiprocessing.connection, authenticated with a random
key handed over in a file only this user can read).
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
from multiprocessing.connection import Client, Listener

from .trainer import BatchProgress, Callbacks, EpochResult, TrainResult

# What rank 0 relays, by Callbacks field: how its payload is rebuilt on the caller's side.
RELAYED = {"on_start": str, "on_batch": BatchProgress, "on_epoch": EpochResult, "log": str}


class RelayServer:
    """Receives rank 0's events on a background thread; sends it the stop."""

    def __init__(self):
        self.authkey = os.urandom(32)
        self.listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        self.events = queue.Queue()
        self.connection = None
        self.receiver = threading.Thread(target=self._receive, daemon=True, name="resnext-relay")
        self.receiver.start()

    @property
    def address(self) -> tuple:
        return self.listener.address

    def _receive(self) -> None:
        try:
            self.connection = self.listener.accept()
            while True:
                self.events.put(self.connection.recv())
        except (EOFError, OSError):  # rank 0 exited, or close() before it connected
            pass

    def send_stop(self) -> None:
        if self.connection is not None:
            self.connection.send(("stop",))

    def close(self) -> None:
        self.listener.close()
        if self.connection is not None:
            self.connection.close()


def relay_events(agent: threading.Thread, relay: RelayServer, callbacks: Callbacks, outcome: dict) -> None:
    """Until the workers end: rank 0's calls to the caller's callbacks, in this thread; the caller's stop to
    rank 0; the run's TrainResult into outcome["result"]."""
    stop_sent = False
    while agent.is_alive() or not relay.events.empty():
        try:
            kind, payload = relay.events.get(timeout=0.2)
            if kind == "result":
                outcome["result"] = TrainResult(**payload)
            else:
                getattr(callbacks, kind)(payload if RELAYED[kind] is str else RELAYED[kind](**payload))
        except queue.Empty:
            pass
        if not stop_sent and callbacks.should_stop():
            relay.send_stop()
            stop_sent = True
        if not agent.is_alive():
            relay.receiver.join(timeout=5)  # what rank 0 sent before exiting


class RelayClient:
    """Rank 0's end: sends its callbacks' calls; stop_requested() reads the caller's stop without waiting."""

    def __init__(self, address: tuple, authkey: bytes):
        self.connection = Client(tuple(address), authkey=authkey)
        self.stopped = False

    def send(self, kind: str, payload) -> None:
        self.connection.send((kind, payload))

    def callbacks(self, local_stop) -> Callbacks:
        """Callbacks that hand every call on to the caller's (payloads as plain data); should_stop() is the
        caller's stop or `local_stop()` (this process's signals)."""
        def relayed(kind: str):
            return lambda value: self.send(kind, value if RELAYED[kind] is str else dataclasses.asdict(value))

        return Callbacks(**{kind: relayed(kind) for kind in RELAYED},
                         should_stop=lambda: local_stop() or self.stop_requested())

    def stop_requested(self) -> bool:
        while not self.stopped and self.connection.poll():
            self.stopped = self.connection.recv()[0] == "stop"
        return self.stopped

    def close(self) -> None:
        self.connection.close()
