"""Tiny pix2pix run on a fixed synthetic global batch: ``python -m tests.smoke_train --out r.json``.

Why: the one script the integration tests (``tests/integration/test_trainer_deepspeed.py``) launch
alone, under ``torchrun --nproc_per_node N`` or the ``deepspeed`` launcher, to check that 1 and N
ranks train the same global batch to the same losses. A test script, so it lives in ``tests/``, not
in the library.
D uses instance norm so the per-rank split of the batch does not change the statistics.

``--resume-at K --zero 1,2`` instead checks exact resume for each ZeRO stage: per stage, N steps straight
vs K steps + checkpoint + a fresh trainer resumed to N, on a shuffled DataLoader (so the per-rank
shards and the data position are part of the check); the result holds both histories and the largest
weight difference.
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
    ap.add_argument("--zero", default="0", help="ZeRO stage, or a comma list with --resume-at")
    ap.add_argument("--resume-at", type=int, default=None, help="exact-resume check: checkpoint at step K")
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

    def models():
        torch.manual_seed(0)
        return ResnetGenerator(ngf=8, n_blocks=2), PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2,
                                                                         norm="instance")

    def config(**kw):
        return TrainConfig(**{**dict(steps=a.steps, batch_size=a.batch, zero_stage=stages[0], backend=a.backend,
                                     log_every=1, quiet=True, out_dir=a.ckpt_dir, gan_loss="lsgan"), **kw})

    stages = [int(z) for z in str(a.zero).split(",")]
    if a.resume_at is not None and not a.ckpt_dir:
        ap.error("--resume-at needs --ckpt-dir")
    x = torch.rand(a.batch, 3, a.size, a.size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    if a.resume_at is not None:
        res = {"resume": {z: _resume_check(models, config, z, a) for z in stages}}
    else:
        t = Pix2PixTrainer(*models(), config())
        hist = t.fit([(x, x.flip(-1))])
        res = {"history": hist, "steps_per_sec": t.steps_per_sec,
               "checkpoint": str(t.last_checkpoint) if t.last_checkpoint else None}
    from gan.train.engine import world

    rank, world_size = world() if a.backend == "deepspeed" else (0, 1)
    res = {"rank": rank, "world_size": world_size, "init_s": init_s, **res}
    if a.out and rank == 0:
        with open(a.out, "w") as f:
            json.dump(res, f)
    return res


def _resume_check(models, config, stage: int, a) -> dict:
    """N steps straight vs K steps, checkpoint, fresh trainer, resume, N: histories and weight diff."""
    from gan.data import make_loader
    from gan.train import Pix2PixTrainer
    from gan.train import checkpoint as ckpt
    from gan.train.engine import world

    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2 * a.batch, 3, a.size, a.size, generator=gen) * 2 - 1
    data = torch.utils.data.TensorDataset(x, x.flip(-1))

    def loader():  # shuffled, 2 global batches per epoch: the resume must land on the same shards
        return make_loader(data, batch_size=a.batch, shuffle=True, seed=7)

    straight = Pix2PixTrainer(*models(), config(zero_stage=stage, out_dir=None))
    straight.fit(loader())
    rank = world()[0] if a.backend == "deepspeed" else 0
    tmp = f"{a.ckpt_dir}/zero{stage}"
    first = Pix2PixTrainer(*models(), config(zero_stage=stage, steps=a.resume_at, out_dir=tmp))
    first.fit(loader())
    torch.manual_seed(123)  # the resume must restore the RNG, weights and optimizer, not rely on these
    second = Pix2PixTrainer(*models(), config(zero_stage=stage, out_dir=None))
    second.resume(tmp)
    second.fit(loader())
    diffs = []
    for a_eng, b_eng in ((straight.g, second.g), (straight.d, second.d)):
        wa, wb = ckpt.module_state(a_eng, rank), ckpt.module_state(b_eng, rank)
        if rank == 0:
            diffs += [float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if wa[k].numel()]
    files = sorted(p.name for p in (ckpt.latest(tmp).iterdir())) if rank == 0 else []
    return {"straight": straight.history, "resumed": second.history, "max_weight_diff": max(diffs, default=0.0),
            "files": files}


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # as orchestration/launch.py does: a gloo group left to the
        torch.distributed.barrier()        # interpreter's exit can abort a rank ("terminate called without
        torch.distributed.destroy_process_group()  # an active exception", seen once on a loaded machine)
