"""Test fixtures that need a teacher run: ``tiny_teacher`` trains a tiny one in seconds.

Why here and not in the package: it is a fixture of the tests (and of ``benchmarks/``), not a
command; a real teacher comes from ``ganprune train-teacher``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_teacher(out, data_root=None, size: int = 32, steps: int = 40, seed: int = 0,
                 norm: str = "instance") -> Path:
    """A small, briefly trained teacher run directory (teacher.json + G/D exports) for tests and the
    benchmark — the layout ``ganprune train-teacher`` writes. Not a real teacher."""
    from gan import data as gdata
    from gan import export as gexport
    from gan.models import ResnetGenerator
    from gan.models.patchgan import PatchGANDiscriminator
    from gan.train.pix2pix import Pix2PixTrainer, TrainConfig

    out = Path(out)
    root = gdata.prepare("edges2photos", root=data_root, size=size)
    torch.manual_seed(seed)
    g = ResnetGenerator(ngf=8, n_blocks=2, norm=norm)
    d = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2, norm="instance")
    trainer = Pix2PixTrainer(g, d, TrainConfig(steps=steps, batch_size=4, backend="torch", quiet=True,
                                               seed=seed))
    trainer.fit(gdata.make_loader(gdata.open_dataset(root, size=size, split="train"), 4, seed=seed))
    gexport.save(trainer.generator, out / "generator", size=size, onnx=False, latency_runs=1)
    gexport.save(trainer.discriminator, out / "discriminator", size=size, onnx=False, latency_runs=1)
    (out / "teacher.json").write_text(json.dumps(
        {"preset": "test-tiny", "data": str(root), "size": size, "generator": "generator",
         "discriminator": "discriminator", "steps": steps}, indent=1))
    return out
