"""Data-parallel training with ``torch.distributed`` (torchrun or SLURM), plugged into the trainer's hooks.

Launch with ``torchrun --nproc_per_node=N -m mlip.cli.train --config c.yaml`` or, under SLURM, one task
per GPU with ``srun python -m mlip.cli.train --config c.yaml distributed=true`` (see
``scripts/slurm_example.sbatch``). The rank, world size, local rank and master address come from
torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and,
when those are absent, from SLURM's (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, the first
host of ``SLURM_NODELIST``).

What each rank does (all decisions are identical on every rank by construction, so no rank waits on a
collective that another skipped):

- ``train.batch_size`` is per rank: the global batch is ``world_size * batch_size``. The batch sampler
  (:class:`mlip.data.batch.GraphBatchSampler` with ``num_replicas``/``rank``) cuts the epoch's global
  order (a function of seed and epoch only) into batches and gives rank ``r`` batches ``r, r+N, ...``,
  truncated to the same count on every rank; with a fixed batch size the union of the ranks' batches of
  one step is exactly the single-process batch of ``N * batch_size`` consecutive frames.
- Gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel`; for equal-size batches
  (same number of atoms per rank) this equals the gradient of the single-process mean loss.
- Statistics (E0s, neighbour counts, scale/shift) are computed once on rank 0 and broadcast
  (:meth:`DistributedContext.run_on_main`); an error there is re-raised on every rank.
- Validation and the final evaluation are sharded over the ranks and their per-frame errors gathered to
  every rank, so all ranks see the same validation loss and take the same early-stopping, scheduler and
  best-model decisions. Whether a batch's loss is finite is agreed by an all-reduce before backward.
- Only rank 0 writes checkpoints, ``metrics.jsonl``, the plot and ``model.pt``, and prints.
- Checkpoints hold no rank-specific state (DDP keeps the replicas identical, the data order depends only
  on seed and epoch), so a run can resume on any number of ranks.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from mlip import errors as mlip_errors
from mlip.errors import ConfigError, MLIPError

T = TypeVar("T")

DEFAULT_PORT = 29500
TIMEOUT_ENV = "MLIP_DIST_TIMEOUT_MIN"
"""Environment variable: minutes a collective may wait before the process group gives up (default 60)."""
FIND_UNUSED_ENV = "MLIP_DDP_FIND_UNUSED"


@dataclass
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    source: str = "single"
    """``torchrun``, ``slurm`` or ``single``."""


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM node list such as ``gpu[01-03,07],login1`` into host names (simple grammar:
    comma-separated items, each a prefix with an optional bracketed list of numbers and ranges, zero
    padding kept)."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not m:
            hosts.append(item)
            continue
        prefix, body, suffix = m.groups()
        for part in body.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)
                hosts += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(lo), int(hi) + 1)]
            else:
                hosts.append(f"{prefix}{part}{suffix}")
    return hosts


def first_slurm_host(nodelist: str) -> str:
    """The first host of ``nodelist``: ``scontrol show hostnames`` when available, else our parser."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    hosts = expand_nodelist(nodelist)
    if not hosts:
        raise ConfigError(f"SLURM_NODELIST {nodelist!r}: no host found")
    return hosts[0]


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Rank, world size, local rank and master address from torchrun's variables, else SLURM's."""
    env = os.environ if environ is None else environ
    port = int(env.get("MASTER_PORT", DEFAULT_PORT))
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]), local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"), master_port=port, source="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        addr = env.get("MASTER_ADDR") or (first_slurm_host(nodelist) if nodelist else "127.0.0.1")
        return DistEnv(
            rank=int(env["SLURM_PROCID"]), world_size=int(env["SLURM_NTASKS"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)), master_addr=addr, master_port=port, source="slurm",
        )
    return DistEnv()


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a process started by torchrun (its ``RANK``/``WORLD_SIZE`` variables are set)."""
    env = os.environ if environ is None else environ
    return "RANK" in env and "WORLD_SIZE" in env and "LOCAL_RANK" in env


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, "60")))


class DistributedContext:
    """An initialised process group and the collectives the trainer needs."""

    def __init__(self, env: DistEnv, device: torch.device) -> None:
        self.env = env
        self.rank = env.rank
        self.world_size = env.world_size
        self.device = device
        # objects travel over the backend: gloo works on CPU tensors, NCCL on the current CUDA device
        self.comm_device = device if device.type == "cuda" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().clone().to(self.comm_device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def broadcast_object(self, obj: T | None) -> T:
        """Rank 0's ``obj`` on every rank (pickled by torch.distributed)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.comm_device if self.device.type == "cuda" else None)
        return box[0]  # type: ignore[return-value]

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank. An exception on rank 0 is
        re-raised there and, as the same :class:`MLIPError` type with the same message, on every other
        rank (so no rank is left waiting)."""
        payload: tuple[str, Any, str] | None = None
        error: BaseException | None = None
        if self.is_main:
            try:
                payload = ("ok", fn(), "")
            except MLIPError as err:
                error, payload = err, ("error", type(err).__name__, str(err))
            except Exception as err:  # noqa: BLE001 - re-raised below on rank 0 after telling the others
                error, payload = err, ("error", "MLIPError", f"rank 0 failed: {type(err).__name__}: {err}")
        status, value, message = self.broadcast_object(payload)
        if status == "ok":
            return value
        if error is not None:
            raise error
        cls = getattr(mlip_errors, str(value), MLIPError)
        raise cls(message)

    # ------------------------------------------------------------------------------ trainer seams
    def shard(self, items: Sequence[T]) -> Sequence[T]:
        """This rank's share of ``items`` (every ``world_size``-th item from ``rank``)."""
        return items[self.rank::self.world_size]

    def reduce_eval(self, errors: Any, loss: float | None) -> tuple[Any, float | None]:
        """Gather per-frame errors of sharded evaluations to every rank; the mean loss weighted by frames.

        ``errors`` is a :class:`mlip.train.metrics.FrameErrors`; every rank returns the same merged object
        (ranks concatenated in order) and the same loss, so every decision taken from them agrees.
        """
        n = len(errors.head)
        parts = self.all_gather_object((errors, loss, n))
        merged = type(errors)()
        for f in dataclasses.fields(merged):
            getattr(merged, f.name).extend(v for part, _, _ in parts for v in getattr(part, f.name))
        weighted = [(l, k) for _, l, k in parts if l is not None and k > 0]
        total = sum(k for _, k in weighted)
        mean = sum(l * k for l, k in weighted) / total if total else None
        return merged, mean

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model inside DistributedDataParallel (gradients averaged over ranks during backward)."""
        from torch.nn.parallel import DistributedDataParallel

        # every parameter of the model takes part in every step (checked for the options in use); set
        # MLIP_DDP_FIND_UNUSED=1 for a model variant where some do not (slower: an extra graph traversal)
        find_unused = os.environ.get(FIND_UNUSED_ENV, "0") == "1"
        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index], output_device=self.device.index,
                                           find_unused_parameters=find_unused)
        return DistributedDataParallel(model, find_unused_parameters=find_unused)

    def hooks(self) -> Any:
        """The :class:`mlip.train.trainer.TrainerHooks` of this rank."""
        from mlip.train.trainer import TrainerHooks

        return TrainerHooks(
            wrap_model=self.wrap_model, all_reduce_sum=self.all_reduce_sum, is_main=self.is_main,
            barrier=self.barrier, rank=self.rank, world_size=self.world_size, run_on_main=self.run_on_main,
            shard=self.shard, reduce_eval=self.reduce_eval, all_true=self.all_true,
        )


def init_distributed(device: torch.device, env: DistEnv | None = None) -> DistributedContext:
    """Initialise the default process group: NCCL on CUDA, gloo on CPU.

    On CUDA the rank uses GPU ``local_rank``. Returns the context; call :func:`shutdown` at the end.
    """
    env = env or detect_env()
    if env.world_size < 1 or not 0 <= env.rank < env.world_size:
        raise ConfigError(f"distributed: rank {env.rank} out of range for world size {env.world_size}")
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if env.local_rank >= n:
            raise ConfigError(f"distributed: local rank {env.local_rank} but only {n} CUDA device(s) visible")
        torch.cuda.set_device(env.local_rank)
        device = torch.device("cuda", env.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", env.master_addr)
        os.environ.setdefault("MASTER_PORT", str(env.master_port))
        dist.init_process_group(
            backend=backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
            rank=env.rank, world_size=env.world_size, timeout=_timeout(),
        )
    return DistributedContext(env, device)


def shutdown() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wants_distributed(cfg: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Distributed when the config says ``distributed: true`` or the process was started by torchrun."""
    return bool(getattr(cfg, "distributed", False)) or launched_by_torchrun(environ)


def train_distributed(cfg: Any, resume: bool = False, env: DistEnv | None = None) -> Any:
    """:func:`mlip.train.run.train` on this rank of a data-parallel job; returns the final model path."""
    from mlip.device import resolve_device
    from mlip.train.run import train

    device = resolve_device(cfg.device)
    ctx = init_distributed(device, env)
    try:
        log: Callable[[str], None] = print if ctx.is_main else (lambda s: None)
        if ctx.is_main:
            print(f"distributed: {ctx.world_size} rank(s), backend {dist.get_backend()}, "
                  f"from {ctx.env.source}; global batch {ctx.world_size} x {cfg.train.batch_size}")
        return train(cfg, resume=resume, hooks=ctx.hooks(), log=log)
    finally:
        shutdown()
