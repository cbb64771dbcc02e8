"""Reading a teacher run directory (what ``ganprune train-teacher`` writes) without the CLI layer.

The envs, backends and baselines all start from a teacher; they need its G, D, dataset and size, and
must not import ``orchestration``.  ``teacher.json`` names the member export directories.

A CycleGAN run loads as the same pix2pix-like view (docs/methods.md, "Unpaired (CycleGAN) teachers"):
``generator`` = G_A (A→B), ``discriminator`` = D_A (the D that judges domain-B images, i.e. G_A's
outputs; ``gan.train.cyclegan``), ``data`` = the unpaired dataset; ``kind`` says so, and ``paired``
tells the fine-tune, the backends and the metrics that there is no ground truth and that D is
unconditional (it sees an image alone, not input|output).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gan import export as gexport

REQUIRED = ("generator", "discriminator", "data", "size")
#: the image-to-image teacher kinds every search method prunes (G_A + D_A of a CycleGAN)
IMAGE_KINDS = ("pix2pix", "cyclegan")
#: kinds trained on unpaired data: no ground truth, the D judges images alone
UNPAIRED_KINDS = ("cyclegan",)


def is_paired(kind: str) -> bool:
    """Whether a teacher of ``kind`` has aligned targets and a conditional (input|output) D."""
    return kind not in UNPAIRED_KINDS


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
    kind: str = "pix2pix"

    @property
    def paired(self) -> bool:
        """False for a CycleGAN teacher: unpaired data, unconditional D (see the module docstring)."""
        return is_paired(self.kind)


def load_teacher_run(path, kinds=IMAGE_KINDS) -> TeacherRun:
    """The run's G, D, data and size; ``kinds``: the teacher kinds the caller can take (pix2pix and
    CycleGAN for the search methods; PPCD also takes class-conditional teachers)."""
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
                              "(class-conditional teachers: use --method ppcd)")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise TeacherRunError(f"{f} has no {missing[0]!r}; is it a 'ganprune train-teacher' run?")
    return TeacherRun(d.resolve(), gexport.load(d / meta["generator"]), gexport.load(d / meta["discriminator"]),
                      str(meta["data"]), int(meta["size"]), meta, kind)
