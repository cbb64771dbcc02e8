"""Tiny pix2pix run on a fixed synthetic global batch: ``python -m gan.train.smoke --out r.json``.

Why: the one script the integration tests launch alone, under ``torchrun --nproc_per_node N`` or the
``deepspeed`` launcher, to check that 1 and N ranks train the same global batch to the same losses.
D uses instance norm so the per-rank split of the batch does not change the statistics.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="global batch")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--zero", type=int, default=0)
    ap.add_argument("--backend", default="deepspeed", choices=["deepspeed", "torch"])
    ap.add_argument("--ckpt-dir", default=None)
    ap.add_argument("--out", default=None, help="JSON result (written by rank 0)")
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    if a.backend == "deepspeed":
        from gan.train.engine import init_distributed
        init_distributed()
    init_s = time.perf_counter() - t0
    from gan.models.patchgan import PatchGANDiscriminator
    from gan.models.resnet import ResnetGenerator
    from gan.train import Pix2PixTrainer, TrainConfig

    torch.manual_seed(0)
    g, d = ResnetGenerator(ngf=8, n_blocks=2), PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2,
                                                                     norm="instance")
    x = torch.rand(a.batch, 3, a.size, a.size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch, zero_stage=a.zero, backend=a.backend,
                      log_every=1, quiet=True, out_dir=a.ckpt_dir, gan_loss="lsgan")
    t = Pix2PixTrainer(g, d, cfg)
    hist = t.fit([(x, x.flip(-1))])
    res = {"rank": t.rank, "world_size": t.world_size, "init_s": init_s, "steps_per_sec": t.steps_per_sec,
           "history": hist, "checkpoint": str(t.last_checkpoint) if t.last_checkpoint else None}
    if a.out and t.rank == 0:
        with open(a.out, "w") as f:
            json.dump(res, f)
    return res


if __name__ == "__main__":
    main()
