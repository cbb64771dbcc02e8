"""Test fixtures that need a teacher run: ``tiny_teacher`` trains a tiny pix2pix one in seconds,
``tiny_cyclegan_teacher`` a tiny CycleGAN one on the unpaired ``photo2painting`` set.

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


def tiny_cyclegan_teacher(out, data_root=None, size: int = 32, steps: int = 20, seed: int = 0,
                          norm: str = "instance_affine", arch: str = "resnet", ngf: int = 8) -> Path:
    """A small, briefly trained CycleGAN teacher run in the layout ``train-teacher`` writes for one
    (``gan.train.kinds.CycleGANKind``: G_A/D_A as ``generator/``/``discriminator/``, G_B/D_B beside,
    ``kind`` "cyclegan"), trained by the real CycleGAN trainer.  Affine norms by default, so every
    method (CAT's |γ| too) can prune it; ``arch`` "inception": CAT's inception-residual G_A."""
    from types import SimpleNamespace

    from gan import data as gdata
    from gan import export as gexport
    from gan.models.patchgan import PatchGANDiscriminator
    from gan.train.builder import build_trainer
    from gan.train.kinds import build_generator

    out = Path(out)
    root = gdata.prepare("photo2painting", root=data_root, size=size)
    torch.manual_seed(seed)
    g = SimpleNamespace(arch=arch, ngf=ngf, n_blocks=2, norm=norm)
    gens = [build_generator(g) for _ in "AB"]
    discs = [PatchGANDiscriminator(input_nc=3, ndf=8, n_layers=2, norm="instance") for _ in "AB"]
    trainer = build_trainer("cyclegan", gens, discs, dict(steps=steps, batch_size=2, backend="torch", quiet=True,
                                                           seed=seed))
    data = gdata.open_dataset(root, size=size, split="train", augment=True, seed=seed)
    trainer.fit(gdata.make_loader(data, 2, seed=seed))
    members = {"generator": trainer.g_a, "discriminator": trainer.d_a, "generator_B": trainer.g_b,
               "discriminator_B": trainer.d_b}
    for name, net in members.items():
        gexport.save(net.eval(), out / name, size=size, onnx=False, latency_runs=1)
    (out / "teacher.json").write_text(json.dumps(
        {"preset": "test-tiny", "kind": "cyclegan", "data": str(root), "size": size, "steps": steps,
         **{name: name for name in members}}, indent=1))
    return out
