"""The model cache under ``$GANPRUNE_CACHE`` (default ``~/.cache/ganprune``): entries built once and
reused, written into a temp folder and renamed, so two processes racing never see a half-written one.
A long build (a teacher: an hour at preset small) can be resumable: it is built in one fixed folder
under a lock, so a killed build continues from its checkpoints the next time it is asked for.

Preset teachers (``orchestration.teacher_cache``) and the supernet backend's supernets
(``gan.train.supernet.cached_supernet``) live here.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    return Path(os.environ.get("GANPRUNE_CACHE") or Path.home() / ".cache" / "ganprune")


def file_digest(*paths, n: int = 12) -> str:
    """Short SHA-1 over the bytes of ``paths`` (files, or folders: their files in name order)."""
    h = hashlib.sha1()
    for p in map(Path, paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:n]


def build_once(final: Path, marker: str, build: Callable[[Path], None], resumable: bool = False,
               on_wait: Callable[[], None] | None = None) -> bool:
    """Make the cache entry ``final`` (complete when it holds ``marker``) with ``build(tmp_dir)`` unless
    it exists; returns True when it was already there.

    ``resumable``: ``tmp_dir`` is the fixed ``.partial-<name>``, kept when the build fails or is killed,
    so ``build`` finds what the last try left there (a build must resume from it, or clear it); a
    second process asking meanwhile waits for the first (``on_wait`` is called once before it waits)
    instead of building the same entry again."""
    final = Path(final)
    if (final / marker).is_file():
        return True
    if resumable:
        return _build_resumable(final, marker, build, on_wait)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(tmp)
        if not (final / marker).is_file():
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return False


def _build_resumable(final: Path, marker: str, build: Callable[[Path], None], on_wait) -> bool:
    partial = final.parent / f".partial-{final.name}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".partial-{final.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the builder ends, killed or not
        if (final / marker).is_file():  # the process we waited for built it
            return True
        build(partial)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
    return False
