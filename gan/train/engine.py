"""One training-engine interface over DeepSpeed (default) and plain torch (fast unit tests only).

Why: the trainer must not care whether it runs on CPU or GPU, in one process or under
``deepspeed``/``torchrun``, nor which ZeRO stage shards the optimizer.  Both engines expose
``forward(*x)``, ``backward(loss)``, ``step()``, ``module``, ``optimizer``, ``device`` and
``zero_stage``.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path

import torch
from torch import nn

BACKENDS = ("deepspeed", "torch")


class TorchEngine:
    """Plain-torch stand-in for a DeepSpeed engine; only used when ``backend="torch"`` is asked for."""

    zero_stage = 0

    def __init__(self, model: nn.Module, lr: float, betas, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = model.to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
        self.global_steps = 0

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        """Optimizer step then zero grads, as ``DeepSpeedEngine.step`` does."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the rendezvous variables of a process group; ``prepare_environment`` sets them for a 1-process one
RENDEZVOUS_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def prepare_environment() -> None:
    """CPU accelerator when there is no CUDA, and single-process rendezvous variables when not launched.

    Without RANK/WORLD_SIZE DeepSpeed falls back to MPI discovery (mpi4py, absent here); setting them
    for a 1-process gloo group is instant.  Must run before ``deepspeed`` picks its accelerator.
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ or _inherited_own_group():
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        os.environ[OWN_GROUP_VAR] = f"{os.getpid()}:{os.environ['MASTER_PORT']}"


#: set beside the variables ``prepare_environment`` made up: "<pid>:<port>" of the process that made them
OWN_GROUP_VAR = "GANPRUNE_OWN_RENDEZVOUS"


def _inherited_own_group() -> bool:
    """True when the rendezvous variables are another process's 1-process group, inherited (a ganprune
    command or notebook that ran DeepSpeed in-process, then started a child).  Why: the child would
    listen on the port the parent's store still holds (EADDRINUSE).  A launcher (torchrun, Ray Train)
    sets a MASTER_PORT of its own, so its children's variables are kept."""
    pid, _, port = os.environ.get(OWN_GROUP_VAR, "").partition(":")
    return bool(pid) and pid != str(os.getpid()) and port == os.environ.get("MASTER_PORT")


class StaleBuildLockError(RuntimeError):
    """A torch-extensions build lock that a killed build left: every later build waits on it forever."""


#: a lock older than this is a killed build's (building DeepSpeed's CPU comm op takes 1-3 min)
STALE_LOCK_S = 900


def check_build_locks() -> None:
    """Refuse to start when a torch-extensions build lock is stale.  Why: DeepSpeed JIT-builds its CPU
    comm op on the first ``init_distributed`` under a ``FileBaton`` lock; a process killed meanwhile
    (Ctrl-C in the first run) leaves the lock, and every later run waits on it without a word."""
    import time

    from torch.utils.cpp_extension import get_default_build_root

    now = time.time()
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())  # as torch resolves it
    for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]:
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:  # the build it guarded has just finished
            continue
        if age > STALE_LOCK_S:
            raise StaleBuildLockError(f"{lock} is a build lock {age / 60:.0f} min old, left by a build that was "
                                      f"killed, and every DeepSpeed start would wait on it forever; delete it "
                                      f"(rm {lock}) and run again")


def _without_shm_comm_op() -> None:
    """Tell DeepSpeed its CPU shared-memory all-reduce op is unavailable, so gloo does the collectives.
    Why: DeepSpeed JIT-builds that op on its first CPU start (1-3 min once per machine and environment,
    measured up to 4.8 min on a loaded 2-core box, with every other DeepSpeed start waiting on its
    lock), a 1-process group never uses it, and CPU multi-process runs here check the distributed path
    on small models, where gloo's all-reduce costs nothing that matters; real multi-rank runs are GPU
    (NCCL), which this does not touch."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


@functools.cache
def _prepare_deepspeed() -> None:
    """Once per process, before DeepSpeed's communication backend starts (at ``init_distributed``, or at
    ``initialize`` when a launcher such as Ray Train made the process group)."""
    check_build_locks()
    if not torch.cuda.is_available():
        _without_shm_comm_op()


def init_distributed() -> None:
    """``deepspeed.init_distributed`` once (gloo on CPU, nccl on GPU); world size from the launcher's env."""
    prepare_environment()
    import deepspeed

    _prepare_deepspeed()

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=None if torch.cuda.is_available() else "gloo")


def ds_config(lr: float, betas, zero_stage: int, micro_batch: int, grad_accum: int = 1) -> dict:
    """DeepSpeed config; ``torch_adam`` avoids the ~70 s compile of DeepSpeed's own Adam op."""
    return {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": int(grad_accum),
        "optimizer": {"type": "Adam", "params": {"lr": float(lr), "betas": [float(b) for b in betas],
                                                 "torch_adam": True, "adam_w_mode": False}},
        "zero_optimization": {"stage": int(zero_stage)},
        "gradient_clipping": 0.0,  # pix2pix does not clip (this DeepSpeed defaults to 1.0)
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def make_engine(model: nn.Module, lr: float = 2e-4, betas=(0.5, 0.999), zero_stage: int = 0,
                micro_batch: int = 1, grad_accum: int = 1, backend: str = "deepspeed"):
    """A DeepSpeed engine for ``model`` (or a ``TorchEngine`` when ``backend="torch"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not 0 <= int(zero_stage) <= 3:
        raise ValueError(f"zero_stage must be 0..3, got {zero_stage!r}")
    if backend == "torch":
        if zero_stage:
            raise ValueError("backend='torch' has no ZeRO; use zero_stage=0 or backend='deepspeed'")
        return TorchEngine(model, lr, betas)
    init_distributed()
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters()],
                                      config=ds_config(lr, betas, zero_stage, micro_batch, grad_accum))
    engine.zero_stage = int(zero_stage)
    return engine


def world() -> tuple[int, int]:
    """(rank, world size) of the process group, (0, 1) when there is none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
