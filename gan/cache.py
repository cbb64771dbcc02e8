"""The model cache under ``$GANPRUNE_CACHE`` (default ``~/.cache/ganprune``): entries built once and
reused, written into a temp folder and renamed, so two processes racing never see a half-written one.

Preset teachers (``orchestration.teacher_cache``) and the supernet backend's supernets
(``gan.train.supernet.cached_supernet``) live here.
"""
from __future__ import annotations

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


def build_once(final: Path, marker: str, build: Callable[[Path], None]) -> bool:
    """Make the cache entry ``final`` (complete when it holds ``marker``) with ``build(tmp_dir)`` unless
    it exists; returns True when it was already there."""
    final = Path(final)
    if (final / marker).is_file():
        return True
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
