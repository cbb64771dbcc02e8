"""Reading a teacher run directory (what ``ganprune train-teacher`` writes) without the CLI layer.

The envs, backends and baselines all start from a teacher; they need its G, D, dataset and size, and
must not import ``orchestration``.  ``teacher.json`` names the member export directories.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gan import export as gexport

REQUIRED = ("generator", "discriminator", "data", "size")


class TeacherRunError(ValueError):
    """A folder that is not a readable teacher run (one line naming the file and the fix)."""


@dataclass
class TeacherRun:
    dir: Path
    generator: object
    discriminator: object
    data: str
    size: int
    meta: dict = field(default_factory=dict)


def load_teacher_run(path, kinds=("pix2pix",)) -> TeacherRun:
    """The run's G, D, data and size; ``kinds``: the teacher kinds the caller can take (pix2pix for
    the search methods; PPCD also takes class-conditional teachers)."""
    d = Path(path)
    f = d / "teacher.json"
    if not f.is_file():
        raise TeacherRunError(f"{d} has no teacher.json; pass a 'ganprune train-teacher' run directory")
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TeacherRunError(f"{f} is not valid JSON ({e}); re-run 'ganprune train-teacher'") from e
    kind = meta.get("kind", "pix2pix")
    if kind not in kinds:
        raise TeacherRunError(f"{d} is a {kind} teacher; this method takes {' or '.join(kinds)} teachers "
                              "(PPCD also prunes class-conditional ones; CycleGAN teachers: distil one direction "
                              "into a pix2pix teacher first)")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise TeacherRunError(f"{f} has no {missing[0]!r}; is it a 'ganprune train-teacher' run?")
    return TeacherRun(d.resolve(), gexport.load(d / meta["generator"]), gexport.load(d / meta["discriminator"]),
                      str(meta["data"]), int(meta["size"]), meta)
