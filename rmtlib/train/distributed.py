"""torchrun helpers: is this run distributed, which process writes, and one model for every process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from rmtlib.errors import RMTError
from rmtlib.nn.lowrank import lowrank_structure


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def init_distributed() -> bool:
    """Initialize ``torch.distributed`` from torchrun's environment (NCCL on GPU, gloo on CPU).

    Returns True when running distributed. Without ``WORLD_SIZE`` > 1 it does nothing.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def sync_from_rank0(model: nn.Module, what: str = "model") -> None:
    """Under ``torch.distributed``, give every process rank 0's copy of ``model``, in place.

    Each process prunes on its own; this makes the models bit-identical before they are
    evaluated (sharded) and fine-tuned (DDP), whatever the devices' floating-point paths did.
    The low-rank structure must already agree (it is checked); a no-op in one process.
    """

    if not is_distributed():
        return

    structure = [lowrank_structure(model)]
    mine = structure[0]
    dist.broadcast_object_list(structure, src=0)
    if structure[0] != mine:
        raise RMTError(
            f"{what}: this process (rank {dist.get_rank()}) pruned to low-rank layers {mine}, rank 0 to "
            f"{structure[0]}; run on identical devices, or in one process"
        )
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
