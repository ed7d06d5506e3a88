"""Training on several processes with torch.distributed: DDP, one process per GPU (NCCL) or N on the CPU (gloo).

Semantics (the README's "Training on several processes, GPUs or machines"):
- `batch_size` is the global batch: every step, the seeded batch order of a single-process run is split
  into equal shards, one per rank, and DDP averages the gradients. A run therefore follows the recipe of
  a single-process run with the same batch size, and the learning rate is not rescaled with the number of
  processes; a resumed run may use another number of processes.
- Validation runs on every rank's share of the validation set; the logits are gathered so that the
  metrics, the temperature and the best epoch are those of the whole set, the same on every rank.
- Rank 0 alone writes the run folder (checkpoints, reports); every rank keeps the same TrainingState.

Processes are started by torchrun or, from the plugin and the command line, by launch.py, which uses the
same elastic launcher. This module reads the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK).
"""
from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..common.errors import ConfigError
from ..common.world import World, cores_per_process

ALL_PROCESSES = "all"
# A rank waiting longer than this in a collective fails instead of hanging: long enough for the slowest
# validation or checkpoint write of another rank.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


# --- parameters ---------------------------------------------------------------------------------
def parse_processes(text: str) -> str:
    """`processes` as stored: 'all' or a whole number ≥ 1."""
    key = str(text).strip().lower()
    if key == ALL_PROCESSES:
        return key
    if key.isdigit() and int(key) >= 1:
        return str(int(key))
    raise ConfigError(f"processes must be a whole number ≥ 1 or '{ALL_PROCESSES}' (one per GPU), got '{text}'")


def parse_gpus(text: str) -> str:
    """`gpus` as stored: CUDA indices separated by commas, or empty for every visible GPU."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"gpus must be CUDA indices separated by commas (e.g. 0,1), got '{text}'")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"gpus lists a GPU twice: '{text}'")
    return ",".join(str(int(part)) for part in parts)


def chosen_gpus(gpus: str) -> list:
    """The CUDA indices `gpus` names (every visible one when empty), each checked to exist."""
    count = torch.cuda.device_count()
    indices = [int(part) for part in gpus.split(",")] if gpus else list(range(count))
    missing = [index for index in indices if index >= count]
    if missing:
        raise ConfigError(f"gpus names cuda:{missing[0]}, but this machine has {count} CUDA device(s)")
    return indices


def process_count(processes: str, device: torch.device, gpus: str) -> int:
    """How many training processes `processes` asks for on `device`: one per GPU at most on CUDA."""
    if device.type != "cuda":
        if processes == ALL_PROCESSES:
            raise ConfigError("processes 'all' means one per GPU and training runs on the CPU here: "
                              "give a number of processes (each uses gloo and a share of the cores)")
        return int(processes)
    available = chosen_gpus(gpus)
    if not available:
        raise ConfigError("gpus selects no GPU")
    if processes == ALL_PROCESSES:
        return len(available)
    if int(processes) > len(available):
        raise ConfigError(f"processes {processes} asks for more processes than GPUs ({len(available)}: "
                          f"{', '.join(map(str, available))}): one process per GPU")
    return int(processes)


def check_batch_size(batch_size: int, world_size: int) -> None:
    """With several processes, the global batch is split in equal shards of at least 2 images (BatchNorm
    needs 2 to train)."""
    if world_size > 1 and (batch_size % world_size or batch_size < 2 * world_size):
        raise ConfigError(f"batch_size {batch_size} is the global batch, split evenly over {world_size} processes: "
                          f"use a multiple of {world_size} of at least {2 * world_size}")


def check_sync_batchnorm(sync_batchnorm: bool, device: torch.device, world_size: int) -> None:
    """torch's SyncBatchNorm runs on CUDA only: on the CPU every process would fail at its first step."""
    if sync_batchnorm and world_size > 1 and device.type != "cuda":
        raise ConfigError(f"sync_batchnorm needs CUDA devices (torch's SyncBatchNorm runs on GPU modules only), "
                          f"got device {device}: turn sync_batchnorm off to train on several CPU processes")


# --- inside a training process -----------------------------------------------------------------
def start(world: World, device: torch.device, gpus: str = "") -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on the CPU); returns this rank's device."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", chosen_gpus(gpus)[world.local_rank])
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:  # the machine's cores shared out, not each process taking all
        torch.set_num_threads(cores_per_process(world))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    return device


def finish(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """The module that trains: DDP over `model` when distributed (the checkpoint keeps `model` itself)."""
    if not world.distributed:
        return model
    # gradient_as_bucket_view: the gradients live in DDP's all-reduce buckets instead of being copied out of
    # them after every step, which saves the copies and a model's worth of memory.
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               gradient_as_bucket_view=True)


def any_rank(flags: list, world: World) -> list:
    """Each flag True on every rank where it is True on any (one collective for all): every rank stops at the
    same batch."""
    if not world.distributed:
        return list(flags)
    tensor = torch.tensor([1.0 if flag else 0.0 for flag in flags])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


def every_rank(value, world: World) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not world.distributed:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def sum_over_ranks(values: list, world: World) -> list:
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_main(value, world: World):
    """Rank 0's `value`, on every rank."""
    if not world.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def val_shard(items: list, world: World) -> list:
    """This rank's share of the validation items: every size-th one, starting at its rank."""
    return items[world.rank :: world.size]


def gather_val_shards(logits: np.ndarray, labels: np.ndarray, world: World) -> tuple:
    """Every rank's (logits, labels) of val_shard(), put back in the validation set's order."""
    if not world.distributed:
        return logits, labels
    shards = every_rank((logits, labels), world)
    total = sum(len(shard_labels) for _, shard_labels in shards)
    all_logits = np.empty((total, logits.shape[1]), dtype=logits.dtype)
    all_labels = np.empty(total, dtype=labels.dtype)
    for rank, (shard_logits, shard_labels) in enumerate(shards):
        all_logits[rank :: world.size], all_labels[rank :: world.size] = shard_logits, shard_labels
    return all_logits, all_labels
