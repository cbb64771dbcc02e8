"""``ganprune train-teacher``: train the dense teacher that pruning starts from; the dataset's layout
picks the kind — paired (aligned A|B, labels→photo) → pix2pix, unaligned → CycleGAN, class folders →
class-conditional GAN.

Layout of ``out``::

    checkpoints/step_N/   pickle-free trainer checkpoints (every ``ckpt_every`` steps and the last)
    samples/step_N.png    a sample grid on fixed val inputs, at every checkpoint
                          (pix2pix: input | output | target; CycleGAN: a | G_A(a) | G_B(G_A(a)) | b | G_B(b);
                          conditional: one row per fixed z, one column per class, then real val images)
    loss_curves.png       losses over the run
    history.json          the trainer's history (one entry per ``log_every`` steps)
    generator/            gan.export of G (safetensors + ONNX + metrics + samples.png); CycleGAN: G_A (A→B)
    discriminator/        gan.export of D (safetensors, no ONNX); CycleGAN: D_A (judges B images)
    generator_B/, discriminator_B/   CycleGAN only: G_B (B→A) and D_B
    teacher.json          {kind, preset, data, size, generator, discriminator, mlflow_run_id, steps, metrics}

The kinds themselves — data, models, trainer, sample grids, metrics, exports (the A→B pair of a
CycleGAN as ``generator/`` + ``discriminator/``) — are ``gan.train.kinds``; this module is the
command: run directory, resume, MLflow, printing.

Why checkpoints drive the samples: ``Pix2PixTrainer.save_checkpoint`` (shared by the CycleGAN and
conditional trainers) runs every ``ckpt_every`` steps and at the end, so its ``on_checkpoint`` hook
gives sample grids and MLflow metrics at the same cadence without a second copy of the training loop.
``--resume`` continues the same MLflow run (its id is kept in ``run.json`` from the first start).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from gan import data as gdata
from gan import export as gexport
from gan.determinism import controlled_run
from gan.train import checkpoint as ckpt
from gan.train.kinds import DEFAULT_BATCH, KIND_CLASSES, KINDS
from gan.train.pix2pix import Pix2PixTrainer
from orchestration.config import load_preset
from orchestration.errors import UsageError
from orchestration.launch import main_first, per_world
from orchestration.requests import TeacherRequest
from orchestration.rundir import claim_run_dir, clear_run_dir, write_json
from orchestration.tracking import Tracker, check_reachable, loss_curves, resolve_tracking_uri

#: default steps and checkpoint interval per preset (tiny: ~1.5 min on 2 CPU cores, see README)
DEFAULT_STEPS = {"tiny": 2000, "small": 5000, "paper": 200_000}
EXPERIMENT = "teacher"
KEEP_CHECKPOINTS = 2  # the newest N only: a paper run would fill the disk


def default_steps(preset: str) -> int:
    return DEFAULT_STEPS.get(Path(preset).stem if Path(preset).suffix else preset, DEFAULT_STEPS["tiny"])


# ------------------------------------------------------------------------------------------ command

@controlled_run
def train_teacher(request: TeacherRequest, process: dict | None = None) -> dict:
    """Train (or continue) a teacher as ``request`` asks; returns the summary also written to
    ``out/teacher.json``.  ``process``: see ``gan.determinism.controlled_run`` (the settings are
    recorded)."""
    r = request
    preset, data, out, steps, resume, overwrite = r.preset, r.data, r.out, r.steps, r.resume, r.overwrite
    tracking_uri, backend, ckpt_every, batch_size = r.tracking_uri, r.backend, r.ckpt_every, r.batch_size
    seed, quiet, track = r.seed, r.quiet, r.track

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    t_start = time.perf_counter()
    cfg = load_preset(preset) if preset else None  # a bad preset fails before --out is touched
    out = Path(out)
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be ≥ 1, got {steps}")
    if backend not in ("deepspeed", "torch"):
        raise UsageError(f"--backend must be deepspeed or torch, got {backend!r}")
    if track:  # a dead tracking server fails now, not after the dataset is built
        check_reachable(resolve_tracking_uri(tracking_uri))
    gate = main_first()  # --num-procs: rank 0 checks, cleans --out and prepares the data first
    last = claim_run_dir(out, resume, overwrite, ckpt.latest, "training",
                         expected=f"{out}/checkpoints/step_N/", resume_empty=True)
    saved = ckpt.read_json(last / ckpt.STATE) if last else None
    saved_extra = (saved or {}).get("config", {}).get("extra", {})
    if cfg is None:  # a resume continues with the run's own preset: another one's widths cannot load
        preset = saved_extra.get("preset") or "tiny"
        cfg = load_preset(preset)
    data = data or saved_extra.get("data") or cfg.dataset  # a resume continues on the run's own data
    size = cfg.resolution

    root = gdata.resolve_dataset(data, size=size)
    kind_name = KINDS[gdata.detect_layout(root)]
    clear_run_dir(out, overwrite, last, inputs=(root,))  # --overwrite: the old run goes now the data is good
    gate.release()
    if saved and saved_extra.get("kind", "pix2pix") != kind_name:
        raise UsageError(f"{last} is a {saved_extra.get('kind', 'pix2pix')} teacher but {data} is data for a "
                         f"{kind_name} teacher; resume with the run's own --data {saved_extra.get('data')}")
    kind = KIND_CLASSES[kind_name](cfg, root, size, seed)

    if steps is None:
        steps = int(saved["config"]["steps"]) if saved else default_steps(preset)
    if saved and steps < int(saved["step"]):
        raise UsageError(f"--steps {steps} is below the checkpoint's step {saved['step']} in {last}; "
                         "pass a larger --steps")
    if batch_size is None:
        batch_size = int(saved["config"]["batch_size"]) if saved else per_world(DEFAULT_BATCH[kind_name])
    ckpt_every = ckpt_every or max(10, steps // 10)

    torch.manual_seed(seed)
    tcfg = dict(steps=steps, batch_size=batch_size, backend=backend, log_every=max(1, min(10, steps // 50)),
                ckpt_every=ckpt_every, seed=seed, out_dir=str(out), quiet=quiet,
                extra={"preset": preset, "data": data, "size": size, "kind": kind_name})
    trainer = kind.trainer(tcfg)
    main_rank = trainer.rank == 0
    train_ds = kind.train_ds
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
                      tags={"ganprune.command": "train-teacher", "ganprune.teacher_kind": kind_name})
    tracker.start(run_id=old_run)
    if main_rank:
        write_json(run_file, {"mlflow_run_id": tracker.run_id,
                              "tracking_uri": tracker.tracking_uri if tracker.enabled else None})
    logged = {"n": sum(1 for h in trainer.history if h["step"] <= trainer.step)} if last else {"n": 0}

    def on_checkpoint(t: Pix2PixTrainer) -> None:
        ckpt.remove_old(out, KEEP_CHECKPOINTS)
        for rec in t.history[logged["n"]:]:
            tracker.log_metrics({k: v for k, v in rec.items() if k != "step"}, step=rec["step"])
        logged["n"] = len(t.history)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        png = gexport.save_image_grid(kind.sample_rows(t), out / "samples" / f"step_{t.step}.png")
        tracker.log_artifact(png, "samples")

    trainer.on_checkpoint = on_checkpoint
    status = "FAILED"
    g, d_cfg = cfg.generator, cfg.discriminator
    try:
        tracker.log_params({"preset": preset, "data": data, "dataset_root": str(root), "size": size,
                            "kind": kind_name, "generator": vars(g), "discriminator": vars(d_cfg),
                            "train": {k: v for k, v in trainer.cfg.to_json().items()
                                      if k not in ("extra", "out_dir")}, "process": process})
        say(f"training {kind.describe} on {data} at {size}² for {steps} steps, batch {batch_size}, "
            f"backend {backend}"
            + (f"; MLflow run {tracker.run_id} at {tracker.tracking_uri}" if tracker.active else ""))
        t_fit = time.perf_counter()
        history = trainer.fit(loader)
        fit_s = time.perf_counter() - t_fit
        if not main_rank:
            status = "FINISHED"
            return {"rank": trainer.rank}

        (out / "history.json").write_text(json.dumps(history, indent=1))
        loss_curves(history, out / "loss_curves.png", keys=kind.loss_keys,
                    title=f"{kind_name} teacher {name}", tracker=tracker)
        tracker.log_artifact(out / "history.json")

        trainer.generator.cpu().eval()
        trainer.discriminator.cpu().eval()
        metrics = kind.evaluate(trainer)
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        tracker.log_metrics({f"val_{k}": v for k, v in metrics.items()}, step=trainer.step)
        source = {"command": "train-teacher", "kind": kind_name, "preset": preset, "data": data,
                  "steps": trainer.step, "mlflow_run_id": tracker.run_id}
        members = kind.export(trainer, out, source, {f"val_{k}": v for k, v in metrics.items()})
        for member in members.values():
            tracker.log_artifacts(out / member, member)
        result = {"kind": kind_name, "preset": preset, "data": data, "size": size, **members,
                  "mlflow_run_id": tracker.run_id, "steps": trainer.step, "batch_size": batch_size,
                  "backend": backend, "num_procs": trainer.world_size, "checkpoint": str(trainer.last_checkpoint),
                  "val_metrics": metrics, "steps_per_sec": trainer.steps_per_sec, "train_s": round(fit_s, 1),
                  "process": process,
                  "total_s": round(time.perf_counter() - t_start, 1),
                  "final_losses": {k: history[-1][k] for k in kind.final_keys} if history else {}}
        (out / "teacher.json").write_text(json.dumps(result, indent=1))
        tracker.log_artifact(out / "teacher.json")
        tracker.log_metrics({"train_s": fit_s, "steps_per_sec": trainer.steps_per_sec}, step=trainer.step)
        status = "FINISHED"
        say(f"{kind_name} teacher trained to step {trainer.step} in {fit_s:.0f} s "
            f"({trainer.steps_per_sec:.1f} steps/s); {kind.summary(metrics)}; "
            f"exported to {', '.join(f'{out}/{m}' for m in members.values())}")
        return {"out": str(out), **result}
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)
