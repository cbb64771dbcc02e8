"""``ganprune train-teacher``: train the dense pix2pix teacher (G, D) that pruning starts from.

Layout of ``out``::

    checkpoints/step_N/   pickle-free trainer checkpoints (every ``ckpt_every`` steps and the last)
    samples/step_N.png    input | output | target on fixed val images, at every checkpoint
    loss_curves.png       losses over the run
    history.json          the trainer's history (one entry per ``log_every`` steps)
    generator/            gan.export of G (safetensors + ONNX + metrics + samples.png)
    discriminator/        gan.export of D (safetensors, no ONNX)
    teacher.json          {preset, data, size, generator, discriminator, mlflow_run_id, steps, metrics}

Why checkpoints drive the samples: ``Pix2PixTrainer.save_checkpoint`` runs every ``ckpt_every`` steps
and at the end, so hooking it gives sample grids and MLflow metrics at the same cadence without a
second copy of the training loop.  ``--resume`` continues the same MLflow run (its id is kept in
``run.json`` from the first start).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from gan import data as gdata
from gan import export as gexport
from gan.train import checkpoint as ckpt
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig
from orchestration.config import load_preset
from orchestration.errors import UsageError
from orchestration.tracking import Tracker, check_reachable, loss_curves, resolve_tracking_uri

#: default steps and checkpoint interval per preset (tiny: ~1.5 min on 2 CPU cores, see README)
DEFAULT_STEPS = {"tiny": 2000, "small": 5000, "paper": 200_000}
EXPERIMENT = "teacher"
N_SAMPLES = 4
LAYOUTS = ("aligned", "labels")  # paired data a pix2pix teacher can learn


def default_steps(preset: str) -> int:
    return DEFAULT_STEPS.get(Path(preset).stem if Path(preset).suffix else preset, DEFAULT_STEPS["tiny"])


def _check_out(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to clobber a non-empty ``out``."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other; pass one of them")
    occupied = out.exists() and any(out.iterdir())
    if not occupied:
        return None
    if resume:
        last = ckpt.latest(out)
        if last is None:
            raise UsageError(f"{out} has no checkpoint to resume (expected {out}/checkpoints/step_N/); "
                             "pass --overwrite to start again")
        return last
    if overwrite:
        shutil.rmtree(out)
        return None
    raise UsageError(f"{out} is not empty; pass --resume to continue its training, --overwrite to "
                     "start again, or choose another --out")


class _TeacherTrainer(Pix2PixTrainer):
    """Pix2PixTrainer whose checkpoints also write a sample grid and push new history to MLflow."""

    on_checkpoint = None
    keep_checkpoints = 2

    def save_checkpoint(self, out_dir=None) -> Path:
        path = super().save_checkpoint(out_dir)
        if self.rank == 0 and self.keep_checkpoints:  # the newest N only: a paper run would fill the disk
            root = path.parent
            steps = sorted(int(p.name[len(ckpt.PREFIX):]) for p in root.glob(f"{ckpt.PREFIX}*")
                           if p.name[len(ckpt.PREFIX):].isdigit())
            for s in steps[:-self.keep_checkpoints]:
                shutil.rmtree(root / f"{ckpt.PREFIX}{s}", ignore_errors=True)
        if self.on_checkpoint is not None and self.rank == 0:
            self.on_checkpoint(self)
        return path


def train_teacher(preset: str = "tiny", data: str | None = None, out="runs/teacher", steps: int | None = None,
                  resume: bool = False, overwrite: bool = False, tracking_uri: str | None = None,
                  backend: str = "deepspeed", ckpt_every: int | None = None, batch_size: int = 1,
                  seed: int = 0, quiet: bool = False, track: bool = True) -> dict:
    """Train (or continue) a pix2pix teacher; returns the summary also written to ``out/teacher.json``."""
    def say(msg):
        if not quiet:
            print(msg, flush=True)

    t_start = time.perf_counter()
    cfg = load_preset(preset)
    data = data or cfg.dataset
    size = cfg.resolution
    out = Path(out)
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be ≥ 1, got {steps}")
    if backend not in ("deepspeed", "torch"):
        raise UsageError(f"--backend must be deepspeed or torch, got {backend!r}")
    if track:  # a dead tracking server fails now, not after the dataset is built
        check_reachable(resolve_tracking_uri(tracking_uri))
    last = _check_out(out, resume, overwrite)

    root = gdata.resolve_dataset(data, size=size)
    layout = gdata.detect_layout(root)
    if layout not in LAYOUTS:
        kind = {"unaligned": "unpaired (CycleGAN) teachers", "classes": "class-conditional teachers"}[layout]
        raise UsageError(f"{data} is {layout} data: {kind} arrive in a later increment of issue #4; "
                         "train-teacher takes paired data (aligned A|B or labels→photo) for now")
    train_ds = gdata.open_dataset(root, size=size, split="train", augment=True, seed=seed)
    val_ds = gdata.open_dataset(root, size=size, split="val")
    fixed = [val_ds[i] for i in range(min(N_SAMPLES, len(val_ds)))]
    vx, vy = torch.stack([b["A"] for b in fixed]), torch.stack([b["B"] for b in fixed])

    saved = json.loads((last / ckpt.STATE).read_text()) if last else None
    if steps is None:
        steps = int(saved["config"]["steps"]) if saved else default_steps(preset)
    if saved and steps < int(saved["step"]):
        raise UsageError(f"--steps {steps} is below the checkpoint's step {saved['step']} in {last}; "
                         "pass a larger --steps")
    ckpt_every = ckpt_every or max(10, steps // 10)

    from gan.models import ResnetGenerator
    from gan.models.patchgan import PatchGANDiscriminator

    torch.manual_seed(seed)
    in_nc = int(vx.shape[1])
    g, d_cfg = cfg.generator, cfg.discriminator
    G = ResnetGenerator(input_nc=in_nc, output_nc=3, ngf=g.ngf, n_blocks=g.n_blocks, norm=g.norm)
    D = PatchGANDiscriminator(input_nc=in_nc + 3, ndf=d_cfg.ndf, n_layers=d_cfg.n_layers, norm=d_cfg.norm)
    tcfg = TrainConfig(steps=steps, batch_size=batch_size, backend=backend, log_every=max(1, min(10, steps // 50)),
                       ckpt_every=ckpt_every, seed=seed, out_dir=str(out), quiet=quiet,
                       extra={"preset": preset, "data": data, "size": size})
    trainer = _TeacherTrainer(G, D, tcfg)
    main_rank = trainer.rank == 0
    loader = gdata.make_loader(train_ds, batch_size=batch_size, shuffle=True, seed=seed,
                               drop_last=len(train_ds) >= batch_size)
    if last:
        trainer.resume(last)
        say(f"resuming {out} from step {trainer.step} (checkpoint {last.name}) to step {steps}")

    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    old_run = json.loads(run_file.read_text()).get("mlflow_run_id") if last and run_file.is_file() else None
    name = f"{Path(preset).stem}-{Path(str(data)).name}"
    tracker = Tracker(EXPERIMENT, run_name=name, tracking_uri=tracking_uri, enabled=track and main_rank,
                      tags={"ganprune.command": "train-teacher"})
    tracker.start(run_id=old_run)
    if main_rank:
        run_file.write_text(json.dumps({"mlflow_run_id": tracker.run_id,
                                        "tracking_uri": tracker.tracking_uri if tracker.enabled else None}))
    logged = {"n": sum(1 for h in trainer.history if h["step"] <= trainer.step)} if last else {"n": 0}

    def on_checkpoint(t: Pix2PixTrainer) -> None:
        for rec in t.history[logged["n"]:]:
            tracker.log_metrics({k: v for k, v in rec.items() if k != "step"}, step=rec["step"])
        logged["n"] = len(t.history)
        G_ = t.generator
        was = G_.training
        G_.eval()
        with torch.no_grad():
            fake = G_(vx.to(next(G_.parameters()).device)).cpu()
        G_.train(was)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        png = gexport.save_image_grid([vx, fake, vy], out / "samples" / f"step_{t.step}.png")
        tracker.log_artifact(png, "samples")

    trainer.on_checkpoint = on_checkpoint
    status = "FAILED"
    try:
        tracker.log_params({"preset": preset, "data": data, "dataset_root": str(root), "size": size,
                            "generator": vars(g), "discriminator": vars(d_cfg),
                            "train": {k: v for k, v in tcfg.to_json().items() if k not in ("extra", "out_dir")}})
        say(f"training pix2pix teacher ({preset}: ResNet ngf {g.ngf} × {g.n_blocks} blocks, PatchGAN ndf "
            f"{d_cfg.ndf}) on {data} at {size}² for {steps} steps, backend {backend}"
            + (f"; MLflow run {tracker.run_id} at {tracker.tracking_uri}" if tracker.active else ""))
        t_fit = time.perf_counter()
        history = trainer.fit(loader)
        fit_s = time.perf_counter() - t_fit
        if not main_rank:
            status = "FINISHED"
            return {"rank": trainer.rank}

        (out / "history.json").write_text(json.dumps(history, indent=1))
        loss_curves(history, out / "loss_curves.png", keys=("loss_d", "loss_g", "gan_g", "l1"),
                    title=f"teacher {name}", tracker=tracker)
        tracker.log_artifact(out / "history.json")

        G_, D_ = trainer.generator.cpu().eval(), trainer.discriminator.cpu().eval()
        from gan.metrics.evaluate import evaluate_generator

        metrics = evaluate_generator(G_, val_ds, dataset_root=root, max_items=32)
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        tracker.log_metrics({f"val_{k}": v for k, v in metrics.items()}, step=trainer.step)
        with torch.no_grad():
            samples = [vx, G_(vx), vy]
        source = {"command": "train-teacher", "preset": preset, "data": data, "steps": trainer.step,
                  "mlflow_run_id": tracker.run_id}
        gexport.save(G_, out / "generator", size=size, samples=samples, source=source, onnx=True,
                     metrics={f"val_{k}": v for k, v in metrics.items()})
        gexport.save(D_, out / "discriminator", size=size, source=source, onnx=False)
        tracker.log_artifacts(out / "generator", "generator")
        tracker.log_artifacts(out / "discriminator", "discriminator")
        result = {"preset": preset, "data": data, "size": size, "generator": "generator",
                  "discriminator": "discriminator", "mlflow_run_id": tracker.run_id, "steps": trainer.step,
                  "backend": backend, "checkpoint": str(trainer.last_checkpoint),
                  "val_metrics": metrics, "steps_per_sec": trainer.steps_per_sec, "train_s": round(fit_s, 1),
                  "total_s": round(time.perf_counter() - t_start, 1),
                  "final_losses": {k: history[-1][k] for k in ("loss_d", "loss_g", "l1")} if history else {}}
        (out / "teacher.json").write_text(json.dumps(result, indent=1))
        tracker.log_artifact(out / "teacher.json")
        tracker.log_metrics({"train_s": fit_s, "steps_per_sec": trainer.steps_per_sec}, step=trainer.step)
        status = "FINISHED"
        say(f"teacher trained to step {trainer.step} in {fit_s:.0f} s ({trainer.steps_per_sec:.1f} steps/s); "
            f"val PSNR {metrics.get('psnr', float('nan')):.2f} dB, SSIM {metrics.get('ssim', float('nan')):.3f}; "
            f"exported to {out}/generator and {out}/discriminator")
        return {"out": str(out), **result}
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)
