"""Same seed, same result, whatever ran before in the process (docs/methods.md "Reproducibility").

Two kinds of state decide a run's numbers besides its inputs: the global random generators (torch,
numpy, Python's ``random``), which libraries draw from (RLlib's policy initialisation and action
sampling, augmentations), and process-wide settings: the torch thread count (it changes the order of
float reductions), denormal flushing (the trainer flushes on CPU) and the deterministic-algorithm
flags (RLlib's seeding turns them on and leaves them on).  ``controlled(seed)`` sets both for one
piece of work and puts back what was there before, so a command gives the same result whether it runs
first in a fresh process or after a teacher was trained, another method ran, or a test moved them.
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

#: torch's own thread count when this module was first imported (normally before any work ran)
_START_THREADS = torch.get_num_threads()


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when set, else the count torch chose at start-up (its physical cores)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else _START_THREADS


def denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero (torch has no getter: probe one)."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@dataclass(frozen=True)
class ProcessSettings:
    """The process-wide torch settings that move a run's numbers."""

    threads: int
    flush_denormal: bool
    deterministic_algorithms: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool

    @classmethod
    def current(cls) -> "ProcessSettings":
        return cls(threads=torch.get_num_threads(), flush_denormal=denormals_flushed(),
                   deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
                   cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
                   cudnn_deterministic=bool(torch.backends.cudnn.deterministic))

    @classmethod
    def default(cls, threads: int | None = None) -> "ProcessSettings":
        """What a ganprune command runs under: the default thread count; denormals flushed on CPU (Adam's
        tiny second moments go subnormal and CPU math on them crawls); torch's non-deterministic fast
        kernels allowed (the CPU kernels here are deterministic at a fixed thread count; GPU runs are
        reproducible up to cuDNN's algorithm choice, which ``cudnn_benchmark`` off keeps fixed)."""
        return cls(threads=int(threads) if threads else default_threads(),
                   flush_denormal=not torch.cuda.is_available(), deterministic_algorithms=False,
                   cudnn_benchmark=False, cudnn_deterministic=False)

    def apply(self) -> None:
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(self.flush_denormal)
        if torch.are_deterministic_algorithms_enabled() != self.deterministic_algorithms:
            torch.use_deterministic_algorithms(self.deterministic_algorithms)  # imports torch._dynamo: 2 s
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic

    def to_dict(self) -> dict:
        return asdict(self)


def pin_hash_seed(value: str = "0") -> None:
    """Re-run this process with ``PYTHONHASHSEED`` fixed when it is not set (the ``ganprune`` entry point
    and the benchmark scripts call it first thing).  RLlib iterates sets of agent and module ids, whose
    order follows Python's per-process string-hash seed: without a fixed one the same ``--seed`` gives
    one of two different searches, depending on the process.  Ray's local workers inherit the variable."""
    if os.environ.get("PYTHONHASHSEED") is None:
        os.environ["PYTHONHASHSEED"] = value
        sys.stdout.flush(), sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def seed_all(seed: int) -> None:
    """Seed every global generator a library may draw from (torch incl. CUDA, numpy, ``random``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads, then restore the count found (timings, tiny trainings)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def controlled(seed: int, settings: ProcessSettings | None = None):
    """Run the block under ``settings`` (default ``ProcessSettings.default()``) with every global
    generator seeded from ``seed``; afterwards restore the settings and generator states found.
    Yields the record a run writes to its JSON and MLflow params."""
    settings = settings or ProcessSettings.default()
    before = ProcessSettings.current()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    settings.apply()
    seed_all(seed)
    try:
        yield {"seed": int(seed), **settings.to_dict(), "python_hash_seed": os.environ.get("PYTHONHASHSEED")}
    finally:
        before.apply()
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def controlled_run(fn):
    """Decorator for a command's function with ``seed`` and ``threads`` parameters, or a ``request``
    parameter carrying them as attributes: it runs under ``controlled(seed,
    ProcessSettings.default(threads))`` and receives the record as ``process``."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        request = given.get("request")
        seed, threads = (request.seed, request.threads) if request is not None else (given["seed"], given["threads"])
        with controlled(seed, ProcessSettings.default(threads)) as record:
            bound.arguments["process"] = record
            return fn(*bound.args, **bound.kwargs)

    return run
