"""A preset's default teacher, trained once and reused (``ganprune prune`` / ``demo`` without --teacher).

Cached under ``$GANPRUNE_CACHE/teachers/<preset>-<data>[-<steps>]-<hash of the preset's architecture>`` (default ``~/.cache/ganprune``); trained
into ``.partial-<name>`` and renamed, so no command sees a half-written teacher. A killed training
resumes from its last checkpoint the next time any command asks for the teacher (an hour at preset
small is too long to lose); a second command asking meanwhile waits for the first.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from gan.cache import build_once, cache_root
from gan.train import checkpoint as ckpt
from orchestration.config import load_preset
from orchestration.requests import TeacherRequest
from orchestration.teacher import train_teacher

__all__ = ["cache_root", "ensure_teacher"]


def _preset_hash(pre) -> str:
    """Short hash of the preset's architecture and resolution: an edited preset gets a new teacher."""
    import dataclasses
    import hashlib
    import json

    d = dataclasses.asdict(pre)
    if d["generator"].get("arch") == "resnet":  # the default arch, added after the first caches: same key
        del d["generator"]["arch"]
    key = json.dumps({k: d[k] for k in ("resolution", "generator", "discriminator")}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def ensure_teacher(preset: str = "tiny", data: str | None = None, steps: int | None = None,
                   backend: str = "deepspeed", quiet: bool = False, tracking_uri: str | None = None) -> Path:
    """Path of a trained teacher run for ``preset`` (training it now if it is not cached)."""
    pre = load_preset(preset)
    data = data or pre.dataset
    name = (f"{Path(preset).stem}-{Path(str(data)).name}" + (f"-{steps}" if steps else "")
            + f"-{_preset_hash(pre)}")
    final = cache_root() / "teachers" / name
    if (final / "teacher.json").is_file():
        if not quiet:
            print(f"reusing the cached {preset} teacher at {final}", flush=True)
        return final
    if not quiet:
        print(f"no cached {preset} teacher for {data}: training one (once) into {final}", flush=True)

    def build(tmp: Path) -> None:
        # a checkpoint from a killed try continues (train_teacher restores its RNG: the same teacher as
        # an uninterrupted training); a try killed before its first checkpoint starts again
        if tmp.exists() and ckpt.latest(tmp) is None:
            shutil.rmtree(tmp)
        train_teacher(TeacherRequest(preset=preset, data=data, out=str(tmp), steps=steps, backend=backend,
                                     quiet=quiet, tracking_uri=tracking_uri, resume=True))

    def waiting() -> None:
        if not quiet:
            print(f"another process is training this teacher; waiting for it ({final})", flush=True)

    build_once(final, "teacher.json", build, resumable=True, on_wait=waiting)
    return final
