"""Output directories of long runs: never clobber another run, resume only what can be resumed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from orchestration.errors import UsageError


def claim_run_dir(out, resume: bool, overwrite: bool, latest: Callable[[Path], Path | None],
                  what: str = "run", expected: str | None = None, resume_empty: bool = False) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run in ``out``; deletes nothing.

    A non-empty ``out`` is refused unless ``--resume`` (then it must hold a checkpoint; ``expected``
    names where) or ``--overwrite`` (then the caller empties it with ``clear_run_dir`` once its
    other inputs are checked, so bad input loses nothing).  ``--resume`` of an empty or missing
    ``out`` starts fresh when ``resume_empty`` (train-teacher), else it is refused (prune)."""
    out = Path(out)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other; pass one of them")
    if not (out.exists() and any(out.iterdir())):
        if resume and not resume_empty:
            raise UsageError(f"--resume: {out} holds no {what} to resume; drop --resume to start one")
        return None
    if resume:
        last = latest(out)
        if last is None:
            where = f" (expected {expected})" if expected else ""
            raise UsageError(f"{out} has no checkpoint to resume{where}; pass --overwrite to start again")
        return last
    if overwrite:
        return None
    raise UsageError(f"{out} is not empty; pass --resume to continue its {what}, --overwrite to start "
                     "again, or choose another --out")


def clear_run_dir(out, overwrite: bool, last: Path | None, inputs=()) -> None:
    """The second half of ``claim_run_dir``: empty ``out`` for a fresh
    ``--overwrite`` run, after every input was checked; refused when one of ``inputs`` (paths the
    run reads on) lies inside ``out``."""
    out = Path(out)
    if not (overwrite and last is None and out.exists()):
        return
    root = out.resolve()
    for p in inputs:
        if p and Path(p).exists() and Path(p).resolve().is_relative_to(root):
            raise UsageError(f"{p} lies inside --out {out}, which --overwrite would delete; move it or "
                             "choose another --out")
    shutil.rmtree(out)


def write_json(path, obj) -> None:
    """``path`` holds either its old or its new JSON, never half of one: written to a temp file in
    the same folder, then renamed (a ``kill -9`` mid-write must not break a later ``--resume``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)
