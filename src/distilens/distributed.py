"""Data-parallel runs under ``torchrun``: the process group and the few collectives we use.

``torchrun --nproc_per_node=N -m distilens run CONFIG`` starts N processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment. :func:`session` turns
that into one process group (gloo on CPU, nccl on CUDA, where each rank uses
``cuda:LOCAL_RANK``) and destroys it on the way out. :func:`distilens.fit` notices the group
and trains data-parallel; rank 0 alone writes files and prints. Without that environment
everything here is a no-op for one process.

Example:
    >>> with session(torch.device("cpu")) as (w, device):
    ...     fit(model, bundle, device=device)   # data-parallel when w.size > 1
"""

from __future__ import annotations

import importlib
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import ConfigError, DistilensError

__all__ = [
    "World", "PeerFailed", "world", "env_world", "is_main", "barrier", "session", "on_main", "all_reduce",
    "broadcast", "broadcast_object", "broadcast_module", "sync_gradients", "reduce_epoch_metrics", "GradientSync",
]

T = TypeVar("T")


class PeerFailed(DistilensError):
    """Another process of a data-parallel run failed; its own message names the cause."""


@dataclass(frozen=True)
class World:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: Global rank, 0 … size − 1 (0 writes the files).
        size: Number of processes (1: an ordinary run).
        local_rank: Rank on this machine: the CUDA device index of the process.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_world() -> World:
    """The world ``torchrun`` announced in the environment (``World()`` when it did not).

    Raises:
        ConfigError: the variables are malformed or inconsistent.
    """
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    raw = {n: os.environ.get(n) for n in names}
    if raw["WORLD_SIZE"] is None:
        return World()
    try:
        rank, size, local = (int(raw[n] or 0) for n in names)
    except ValueError:
        raise ConfigError(
            f"environment: RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {raw}; launch with torchrun"
        ) from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"environment: RANK={rank} does not fit WORLD_SIZE={size}; launch with torchrun")
    return World(rank, size, local)


def world() -> World:
    """This process's place in the initialised process group (``World()`` when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)
    return World()


def is_main() -> bool:
    """True on the process that writes files and prints: rank 0, or the only process.

    Before the group exists (argument parsing), the environment's ``RANK`` decides.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_world().main


def barrier() -> None:
    """Wait for every process (a no-op for one process)."""
    if world().size > 1:
        dist.barrier()


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """Reduce ``tensor`` in place over all processes (``sum``, ``min`` or ``max``); returns it."""
    if world().size > 1:
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def broadcast(tensor: Tensor) -> Tensor:
    """Overwrite ``tensor`` in place with rank 0's value on every process; returns it."""
    if world().size > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def sync_gradients(params: list[nn.Parameter], buffers: list[Tensor]) -> None:
    """Average the gradients of ``params`` and the floating ``buffers`` over all processes.

    One all-reduce per dtype (normally one per step). A gradient that is ``None`` on some
    process counts as zero there; it stays ``None`` only where it is ``None`` everywhere,
    so optimisers skip exactly the parameters a single process would skip. Averaging
    BatchNorm running means this way equals updating them with the global batch mean.

    Which parameters had a gradient somewhere travels in the same all-reduce, but the host
    reads it only when this process lacks one: when every parameter has its gradient here
    (the usual step) it has one everywhere after averaging, and nothing waits for the device.
    """
    w = world()
    if w.size == 1 or not params:
        return
    present = [p.grad is not None for p in params]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    groups: dict[torch.dtype, list[Tensor]] = {}
    for t in [*grads, *(b for b in buffers if b.is_floating_point())]:
        groups.setdefault(t.dtype, []).append(t)
    flag_dtype = next(iter(groups))
    flags = torch.tensor(present, dtype=flag_dtype).to(params[0].device, non_blocking=True)
    groups[flag_dtype].append(flags)
    for ts in groups.values():
        flat = torch.cat([t.reshape(-1) for t in ts])
        dist.all_reduce(flat)
        flat /= w.size
        offset = 0
        for t in ts:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
    if all(present):
        return  # every gradient is p.grad itself, now averaged
    for p, g, anywhere in zip(params, grads, flags.tolist()):  # the one host sync, only on this path
        p.grad = g if anywhere > 0 else None


class GradientSync:
    """What DistributedDataParallel does for :func:`distilens.fit`, on modules that are not wrapped.

    Construction copies rank 0's parameters and buffers of ``modules`` to every process (as
    DDP does when it wraps a model). :meth:`weighted` scales one process's mean loss so
    that averaging the gradients over processes gives the mean gradient of the global batch,
    also when the shares of a last, short batch differ in size; :meth:`average` does that
    averaging after each backward (:func:`sync_gradients`). For one process both do nothing.

    Example:
        >>> sync = GradientSync([model])
        >>> sync.weighted(loss, batch=y.shape[0], global_batch=64).backward()
        >>> sync.average()
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.world = world()
        for module in modules:
            broadcast_module(module)
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.buffers = [b for m in modules for b in m.buffers()]

    def weighted(self, loss: Tensor, batch: int, global_batch: int) -> Tensor:
        """``loss`` × (this process's share of the global batch × processes); ``loss`` itself for one process."""
        if self.world.size == 1:
            return loss
        return loss * (batch * self.world.size / global_batch)

    def average(self) -> None:
        """Average the gradients and floating buffers over the processes."""
        if self.world.size > 1:
            sync_gradients(self.params, self.buffers)


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (a small picklable value) on every process."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reduce_epoch_metrics(
    sums: dict[str, Tensor], correct: Tensor, seen: int, first_bad: Tensor, bad_terms: Tensor | None
) -> tuple[int, Tensor, Tensor | None]:
    """Combine one epoch of :func:`distilens.fit`'s per-process bookkeeping over all processes.

    Args:
        sums: ``{term: Σ value·batch}``, replaced by the sums over processes.
        correct: () correct predictions, overwritten in place with the total.
        seen: Samples this process trained on.
        first_bad: () index of this process's first non-finite step, -1 for none.
        bad_terms: (1 + terms,) bool: which values were non-finite at that step.

    Returns:
        ``(seen, first_bad, bad_terms)`` over all processes: the sample total, the earliest
        bad step (steps are aligned across processes) and the terms that were bad there.
    """
    dev = correct.device
    # float64: the counts stay exact; the loss sums differ from one process's only in rounding.
    packed = torch.stack([*(v.double() for v in sums.values()), correct.double(), torch.tensor(float(seen), device=dev)])
    all_reduce(packed)
    for name, v in zip(list(sums), packed[:-2]):
        sums[name] = v
    correct.copy_(packed[-2])
    # min(index) as max(-index), with "no bad step" as -inf.
    never = torch.tensor(float("-inf"), device=dev)
    earliest = all_reduce(torch.where(first_bad < 0, never, -first_bad.double()), "max")
    first = -1 if math.isinf(float(earliest)) else int(-earliest)
    if first < 0 or bad_terms is None:
        return int(packed[-1]), torch.full_like(first_bad, first), bad_terms
    # The terms bad at that step, on the processes where it was their first bad one (later
    # steps are bad everywhere: the averaged gradient carried the NaN into every model).
    mine = bad_terms.double() if int(first_bad) == first else torch.zeros_like(bad_terms, dtype=torch.float64)
    return int(packed[-1]), torch.full_like(first_bad, first), all_reduce(mine, "max").bool()


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (as DDP does when it wraps a model)."""
    if world().size == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only; every process learns whether it worked, so none waits forever.

    Returns ``fn()`` on rank 0 and ``None`` elsewhere. The other ranks raise
    :class:`PeerFailed` carrying rank 0's message when ``fn`` raised there (rank 0 re-raises
    its own exception).
    """
    w = world()
    if w.size == 1:
        return fn()
    error: BaseException | None = None
    result: T | None = None
    if w.main:
        try:
            result = fn()
        except BaseException as exc:  # re-raised below, once the others know
            error = exc
    message = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0] is not None:
        raise PeerFailed(f"rank 0 failed, so rank {w.rank} stops too: {message[0]}")
    return result


def _device_for(device: torch.device, w: World) -> torch.device:
    if device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {w.local_rank} has no GPU: only {torch.cuda.device_count()} visible; "
                f"use --nproc_per_node={torch.cuda.device_count()} or runtime.device=cpu"
            )
        return torch.device("cuda", w.local_rank)
    if device.type != "cpu":
        raise ConfigError(f"runtime.device '{device}': data-parallel runs use cpu (gloo) or cuda (nccl)")
    return device


@contextmanager
def session(device: torch.device, *, timeout_s: float = 1800.0) -> Iterator[tuple[World, torch.device]]:
    """Join the process group ``torchrun`` announced, for the duration of the block.

    Yields ``(world, device)``: the device is ``cuda:LOCAL_RANK`` for a CUDA run, else
    ``device`` unchanged. A group that already exists (made by the caller) is used as is
    and left alone; one made here is destroyed in ``finally``.

    Args:
        device: The run's resolved device.
        timeout_s: How long a collective waits for a missing peer before failing.
    """
    w = env_world()
    if w.size == 1 or dist.is_initialized():
        yield (world() if dist.is_initialized() else w), (_device_for(device, w) if w.size > 1 else device)
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    device = _device_for(device, w)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _import_world_binders()
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except ValueError as exc:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR/MASTER_PORT
        raise ConfigError(f"cannot join the process group ({exc}); launch with torchrun --nproc_per_node=N") from None
    try:
        yield w, device
        dist.barrier()  # every rank is done with the group (and with rank 0's store) before one tears it down
    finally:
        dist.destroy_process_group()


def _import_world_binders() -> None:
    """Import, before the group exists, the torch modules that would keep it alive past its destruction.

    torch.distributed.nn.functional (and fsdp's sharded grad scaler) take ``group.WORLD`` as
    a default argument, evaluated when the module is imported; torch._dynamo imports them,
    and the first optimizer a process builds imports torch._dynamo. Imported while a group
    exists, those defaults hold it, so destroy_process_group() frees nothing: gloo's worker
    and transport threads (and rank 0's TCPStore server) live on until the interpreter shuts
    down, where tearing them down can abort the process ("terminate called without an active
    exception", SIGABRT). Imported first, the defaults are None (the group of the call).
    """
    importlib.import_module("torch._dynamo")
