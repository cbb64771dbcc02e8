"""``--num-procs N``: run the same ``ganprune`` command in N local processes under torchrun.

Why a re-exec and not ``torch.multiprocessing.spawn``: the children must be exactly what a user gets
from ``torchrun``/``deepspeed`` on a GPU box (rank/world from the launcher's env, one process per
device), so the 1-process and the N-process runs share one code path.

Parent (``relaunch``): checks what it can without training (backend, batch divisibility), then runs
``python -m torch.distributed.run --standalone --nproc_per_node N -m orchestration.torchrun_child <argv minus
--num-procs>`` with stdout/stderr inherited, and returns rank 0's exit code.

Children (``python -m orchestration.torchrun_child``): run ``cli.main``; ranks ≠ 0 print nothing to stdout,
drop the one-line usage errors rank 0 already prints, and ignore Python warnings.  Each child records
its exit code in ``$GANPRUNE_LAUNCH_DIR``; a bad-input exit (2) leaves torchrun with status 0 so it
does not add its own failure report to the one-line message.  ``main_first`` lets rank 0 do the
checks and file-system work (``--overwrite``, dataset preparation) before the other ranks, and stops
them with rank 0's exit code when rank 0 fails there.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from orchestration.errors import UsageError
from gan.train.engine import init_distributed

ENV_DIR = "GANPRUNE_LAUNCH_DIR"
USAGE_EXIT = 2
#: how long the parent waits for torchrun once a rank has failed before it stops the rest
GRACE_S = 60.0
_ERROR_LINE = re.compile(r"^ganprune [\w-]+: error: ")


def env_world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) outside torchrun/deepspeed."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return env_world()[0] == 0


def per_world(batch: int, world: int | None = None) -> int:
    """A default global batch rounded up to a multiple of the world size (1 item per rank at least);
    ``world`` None: this launch's."""
    world = env_world()[1] if world is None else int(world)
    return -(-int(batch) // world) * world


# ----------------------------------------------------------------------- parent

def strip_flag(argv: list[str], flag: str = "--num-procs") -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE`` (argparse abbreviations of it included)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
            continue
        head = tok.split("=", 1)[0]
        if len(head) > 2 and head.startswith("--") and flag.startswith(head) and head != "--":
            skip = "=" not in tok
            continue
        out.append(tok)
    return out


def check(args, n: int) -> None:
    """UsageError where ``n`` processes cannot run ``args``."""
    if n < 1:
        raise UsageError(f"--num-procs must be ≥ 1, got {n}")
    if getattr(args, "backend", "deepspeed") == "torch":
        raise UsageError(f"--num-procs {n} needs --backend deepspeed: the torch backend is single-process")
    batch = getattr(args, "batch_size", None)  # None: the command's default, rounded up (per_world)
    if batch is not None and batch % n:
        raise UsageError(f"--batch-size {batch} (the global batch) is not divisible by --num-procs {n}; "
                         f"pass a multiple of {n}")


def relaunch(args, argv: list[str]) -> int:
    """Run ``ganprune <argv>`` in ``args.num_procs`` local processes; the children's exit code."""
    n = int(args.num_procs)
    try:
        check(args, n)
    except UsageError as e:
        print(f"ganprune {args.command}: error: {e}", file=sys.stderr)
        return USAGE_EXIT
    child_argv = strip_flag(list(argv))
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="ganprune-launch-") as rc_dir:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        env[ENV_DIR] = rc_dir
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # torchrun's warning otherwise
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "orchestration.torchrun_child", *child_argv]
        if not getattr(args, "quiet", False):
            print(f"ganprune {args.command}: {n} local processes (torchrun --standalone)", file=sys.stderr,
                  flush=True)
        proc = subprocess.Popen(cmd, env=env)
        try:
            rc = _wait(proc, Path(rc_dir))
        except KeyboardInterrupt:
            proc.wait()  # torchrun got the same SIGINT and stops its workers
            return 130
        codes = _codes(Path(rc_dir))
    if codes.get(0) not in (None, 0):
        return codes[0]
    if rc == 0 and len(codes) == n:
        return max(codes.values(), default=0)
    failed = [c for c in codes.values() if c]
    return failed[0] if failed else (rc or 1)


def _codes(rc_dir: Path) -> dict[int, int]:
    codes = {}
    for f in rc_dir.glob("rank*.rc"):
        try:
            codes[int(f.stem[4:])] = int(f.read_text())
        except ValueError:
            pass
    return codes


def _wait(proc: subprocess.Popen, rc_dir: Path) -> int:
    """torchrun's exit code; stops it when a rank failed but others keep it alive past ``GRACE_S``."""
    failed_at = None
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if failed_at is None and any(_codes(rc_dir).values()):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
            proc.terminate()  # a rank left the others waiting in a collective
            return proc.wait()


# ----------------------------------------------------------------------- children

class PeerFailed(BaseException):
    """Rank 0 failed inside ``main_first``: this rank stops with the same exit code, silently."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _Gate:
    def __init__(self):
        self.open = True

    def release(self, code: int = 0) -> None:
        """Rank 0: let the other ranks go on (``code`` 0) or stop them with exit code ``code``."""
        global _pending
        if self.open and _pending is self:
            _pending = None
            self.open = False
            _broadcast(code)


_pending: _Gate | None = None


def main_first() -> _Gate:
    """Rank 0 runs the code up to ``gate.release()`` before the other ranks do (checks that may fail,
    ``--overwrite``, dataset preparation); a no-op outside a multi-process launch.  If rank 0 fails
    before releasing, the launcher releases the gate with rank 0's exit code and the others stop."""
    global _pending
    gate = _Gate()
    rank, world = env_world()
    if world <= 1:
        gate.open = False
        return gate

    init_distributed()
    if rank == 0:
        _pending = gate
        return gate
    gate.open = False
    code = _broadcast(None)
    if code:
        raise PeerFailed(code)
    return gate


def release_pending(code: int) -> None:
    """A launcher's last word on a rank that stopped: if rank 0 stopped before ``gate.release()``, let
    the waiting ranks go with exit code ``code`` (nonzero) instead of leaving them in the broadcast."""
    if _pending is not None:
        _pending.release(code or 1)


def _broadcast(code: int | None) -> int:
    import torch
    import torch.distributed as dist

    device = "cpu"
    if dist.get_backend() == "nccl":  # one GPU per rank, as DeepSpeed will pick
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    t = torch.tensor([0 if code is None else int(code)], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


class _DropUsageErrors:
    """stderr of ranks ≠ 0: rank 0 already printed the same one-line usage error."""

    def __init__(self, stream):
        self.stream, self.dropped = stream, False

    def write(self, s):
        drop = bool(_ERROR_LINE.match(s)) or (self.dropped and s == "\n")  # print() writes the end apart
        self.dropped = drop and s != "\n"
        return len(s) if drop else self.stream.write(s)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _teardown() -> None:
    """Destroy the process group before the interpreter exits: left to the exit-time destructors,
    gloo's threads can abort the process (``terminate called without an active exception``, seen on
    a loaded machine when rank 0 stops early on bad input), turning exit 2 into SIGABRT."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit; the exit code is what matters
            pass


def child_main(argv: list[str], main) -> int:
    """Each torchrun worker (``orchestration.torchrun_child``): the CLI's ``main`` plus the rank-0-only
    output rules.  ``main`` is handed in so that this module, which the commands import, does not
    import the CLI."""
    rank, _ = env_world()
    if rank != 0:
        sys.stdout = open(os.devnull, "w")
        sys.stderr = _DropUsageErrors(sys.stderr)
        warnings.simplefilter("ignore")
    rc = 1
    try:
        try:
            rc = main(argv)
        except PeerFailed as e:
            rc = e.code
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        release_pending(rc)  # rank 0 failed before letting the others go
        rc_dir = os.environ.get(ENV_DIR)
        if rc_dir:
            Path(rc_dir, f"rank{rank}.rc").write_text(str(rc))
        _teardown()
    return 0 if rc == USAGE_EXIT else rc  # torchrun would add a failure report to the one-line error

