"""``ganprune finetune``: prune a teacher (G, D) pair by a spec and fine-tune it from the teacher.

Inputs: a teacher run directory (``teacher.json`` naming its ``generator`` and ``discriminator``
export directories, its ``data`` and ``size``) and a spec JSON in one of three forms:

* ``{"generator": {group: [kept]}, "discriminator": {group: [kept]}}`` — both given;
* ``{"spec": {group: [kept]}, ...}`` (``ganprune demo``'s spec.json) or a plain ``{group: [kept]}``
  — a generator spec only. Then D is pruned to the *same overall keep ratio* (the spec's
  ``keep_ratio`` when present, else G's kept/total channels over all groups), uniform over D's
  groups by filter-L1 saliency (``gan.pruning.pair.split_spec``; docs/methods.md, "MARL search":
  the D budget defaults to the generator's).

Pruned G and D inherit the teacher's weights (``gan.pruning.physical.prune``) and are trained by
``gan.train.distill`` (objective "density" or the "l1" baseline). PSNR/SSIM vs the teacher on the
test split (``gan.data.splits.report_split``) are measured before and after; results go to
``out/finetune.json``.  A CycleGAN teacher run is its G_A and D_A (``gan.teacher_run``): the same
fine-tune on unpaired data, D unconditional and shown real domain-B images (docs/methods.md,
"Unpaired (CycleGAN) teachers"), fid_proxy vs the real B images beside PSNR/SSIM vs the teacher.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from gan.determinism import controlled_run
from gan.pruning.pair import SpecError, split_spec
from orchestration.errors import UsageError
from orchestration.requests import FinetuneRequest
from orchestration.specs import load_json
from gan import data as gdata, export as gexport
from gan.data.splits import report_split
from gan.losses.density import DensityConfig
from gan.losses.feature_distill import has_distill_taps, no_taps_notice
from gan.pruning.physical import prune
from gan.pruning.targets import spec_macs
from gan.teacher_run import load_teacher_run
from gan.train import checkpoint as ckpt
from gan.train.builder import build_trainer
from gan.train.distill import ADD_ONS, DistillConfig, OBJECTIVES, TeacherTargets, distill_hooks
from gan.train.pix2pix import TrainConfig
from orchestration.launch import is_main, main_first
from orchestration.rundir import claim_run_dir, clear_run_dir
from gan.metrics.evaluate import evaluate_generator

DEFAULT_STEPS = 200
EVAL_ITEMS = 32


def read_teacher(teacher_dir) -> dict:
    """teacher.json with the member paths resolved; G and D loaded (``gan.teacher_run``)."""
    run = load_teacher_run(teacher_dir)
    return {**run.meta, "G": run.generator, "D": run.discriminator, "dir": str(run.dir), "kind": run.kind,
            "paired": run.paired}


def _eval(model, teacher, dataset) -> dict:
    """PSNR/SSIM vs the teacher; fid_proxy vs the split's real targets (domain-B images for an
    unpaired teacher, with the teacher's own ``fid_proxy_teacher`` beside it)."""
    r = evaluate_generator(model, dataset, teacher=teacher, max_items=EVAL_ITEMS)
    return {k: float(r[k]) for k in ("psnr_vs_teacher", "ssim_vs_teacher", "fid_proxy", "fid_proxy_teacher",
                                     "psnr", "ssim") if k in r}


def _inputs(teacher_dir, spec_path, objective, add, steps, backend, init_generator, init_discriminator,
            lambda_gt: float = 0.0):
    """The checks of every input that need no training: (add-ons, steps, teacher, (G spec, D spec, how
    D's was made), pruned (G, D)); raises UsageError & co. on bad input."""
    add = tuple(dict.fromkeys(a for a in add if a))
    bad = [a for a in add if a not in ADD_ONS]
    if bad:
        raise UsageError(f"unknown --add {','.join(bad)}; choose from {', '.join(ADD_ONS)}")
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown --objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if backend not in ("deepspeed", "torch"):
        raise UsageError(f"unknown --backend {backend!r}; choose deepspeed or torch")
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 0:
        raise UsageError("--steps must be ≥ 0")
    t = read_teacher(teacher_dir)
    if lambda_gt and not t["paired"]:  # docs/methods.md, "Unpaired (CycleGAN) teachers"
        raise UsageError(f"lambda_gt {lambda_gt:g}: {t['dir']} is a {t['kind']} teacher, its unpaired data has no "
                         "ground truth to pull toward; set lambda_gt 0")
    teacher, teacher_d = t["G"].eval(), t["D"].eval()
    raw = load_json(Path(spec_path), "spec")
    try:
        specs = split_spec(raw, teacher, teacher_d)
    except SpecError as e:
        raise UsageError(str(e)) from None
    sources = []
    for init, member in ((init_generator, teacher), (init_discriminator, teacher_d)):
        src = member if init is None else gexport.load(init)
        if src.architecture() != member.architecture():
            raise UsageError(f"{init} does not have the teacher's architecture; pass an export of the same "
                             "model class and widths")
        sources.append(src)
    try:
        pruned = prune(sources[0], specs[0]), prune(sources[1], specs[1])
    except ValueError as e:
        raise UsageError(f"spec {spec_path}: {e}") from e
    return add, steps, t, specs, pruned


def _lambda_gt(r: FinetuneRequest) -> float:
    """The L1-to-ground-truth weight the fine-tune will use (a ``distill`` override wins)."""
    return float((r.distill or {}).get("lambda_gt", r.lambda_gt) or 0.0)


def check_inputs(request: FinetuneRequest) -> None:
    """``finetune``'s input checks without training or touching ``out`` (a launcher's driver runs them
    before it starts workers that would run them again)."""
    r = request
    _inputs(r.teacher_dir, r.spec_path, r.objective, r.add, r.steps, r.backend, r.init_generator,
            r.init_discriminator, _lambda_gt(r))
    claim_run_dir(r.out, r.resume, r.overwrite, ckpt.latest, "fine-tune", resume_empty=True)  # deletes nothing


@controlled_run
def finetune(request: FinetuneRequest, process: dict | None = None) -> dict:
    """Prune the teacher pair by the request's spec, fine-tune it from the teacher (the request's
    objective and add-ons), export G and D and measure PSNR/SSIM vs the teacher on the report split
    before and after.  Runs under ``gan.determinism.controlled(request.seed)`` (``process``: the
    recorded settings, see ``gan.determinism.controlled_run``)."""
    r = request
    teacher_dir, spec_path, objective, backend, quiet = r.teacher_dir, r.spec_path, r.objective, r.backend, r.quiet
    init_generator, init_discriminator, batch_size, seed = r.init_generator, r.init_discriminator, r.batch_size, r.seed
    add, steps, t, (gspec, dspec, d_how), (student, student_d) = _inputs(
        teacher_dir, spec_path, objective, r.add, r.steps, backend, init_generator, init_discriminator, _lambda_gt(r))
    size, teacher, teacher_d = int(t["size"]), t["G"].eval(), t["D"].eval()

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    gate = main_first()  # --num-procs: rank 0 checks and cleans --out and prepares the data first
    last = claim_run_dir(r.out, r.resume, r.overwrite, ckpt.latest, "fine-tune", expected=f"{r.out}/checkpoints/step_N/",
                         resume_empty=True)
    out = Path(r.out)

    root = gdata.resolve_dataset(r.data or t["data"], size=size)
    train_set = gdata.open_dataset(root, size=size, split="train")
    report = report_split(root)  # before/after figures on the report split, never on search items
    val_set = gdata.open_dataset(root, size=size, split=report)
    clear_run_dir(out, r.overwrite, last, inputs=(root, teacher_dir, spec_path, init_generator, init_discriminator))
    gate.release()
    full_macs = spec_macs(teacher, {}, size)
    macs = spec_macs(teacher, gspec, size)
    say(f"pruned generator: {macs / 1e6:.2f} M MACs ({macs / full_macs:.1%} of the teacher's); "
        f"discriminator spec: {d_how['discriminator_spec_source']}")

    if is_main():  # the other ranks of a --num-procs run only train
        before = _eval(student, teacher, val_set)
        say(f"before fine-tuning: PSNR vs teacher {before['psnr_vs_teacher']:.2f} dB")

    # a CycleGAN teacher (G_A, D_A): GAN Compression's unpaired recipe — pseudo pairs (x, G_T(x)) for
    # the objective, the unconditional D learns real domain-B images vs the student's outputs
    # (docs/methods.md, "Unpaired (CycleGAN) teachers")
    paired = t["paired"]  # unpaired batches carry no "GT" (a lambda_gt was refused by _inputs)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=r.lr, lambda_l1=10.0, backend=backend,
                      conditional_d=paired,
                      seed=seed, quiet=quiet, log_every=r.log_every or max(1, steps // 20), ckpt_every=int(r.ckpt_every),
                      keep_checkpoints=2, out_dir=str(out) if r.ckpt_every else None, extra={"objective": objective, "teacher": t["dir"]})
    dcfg = DistillConfig(**{"objective": objective, "lambda_rec": cfg.lambda_l1, "lambda_gt": r.lambda_gt,
                            "add": add, **(r.distill or {})})
    dens_cfg = DensityConfig(**(r.density or {}))
    cfg.extra.update(distill=dataclasses.asdict(dcfg), density=dens_cfg.to_dict())
    hooks = distill_hooks(dcfg, teacher, teacher_d, dens_cfg, student=student, size=size)
    # "distill" on a teacher without distillation taps (a U-Net): the L1-to-teacher + GAN terms alone,
    # said here and recorded (docs/methods.md, "GAN Compression")
    feature_distill = {"feature_distill": has_distill_taps(teacher)} if objective == "distill" else {}
    if feature_distill and not feature_distill["feature_distill"]:
        say(no_taps_notice(teacher, "the distill fine-tune"))
    trainer = build_trainer("pix2pix", student.train(), student_d.train(), cfg, hooks)
    device = trainer.g.device
    teacher.to(device)
    loader = TeacherTargets(gdata.make_loader(train_set, batch_size, shuffle=True, seed=seed), teacher,
                            device=device, paired=paired)
    if last is not None:
        trainer.resume(last)
        say(f"resuming the fine-tune at step {trainer.step} of {steps} from {last}")
    t0 = time.perf_counter()
    if steps:
        trainer.fit(loader)
    train_s = time.perf_counter() - t0
    if trainer.rank != 0:
        return {"rank": trainer.rank}
    student, student_d, teacher = (m.cpu().eval() for m in (trainer.generator, trainer.discriminator,
                                                             teacher))
    after = _eval(student, teacher, val_set)
    say(f"after {steps} steps ({objective}): PSNR vs teacher {after['psnr_vs_teacher']:.2f} dB "
        f"({train_s:.1f} s)")

    xs = torch.stack([val_set[i]["A"] for i in range(min(4, len(val_set)))])
    with torch.no_grad():
        samples = [xs, teacher(xs), student(xs)]
    source = {"teacher": t["dir"], "spec": str(Path(spec_path).resolve()), "objective": objective,
              "add": list(add), "init_generator": str(init_generator) if init_generator else None}
    gexport.save(student, out / "generator", size=size, samples=samples, source=source, onnx=r.export_onnx)
    gexport.save(student_d, out / "discriminator", size=size, source=source, onnx=False)
    result = {
        "out": str(out), "teacher": t["dir"], "objective": objective, "add": list(add), "steps": steps,
        "backend": backend, "kind": t["kind"], "init_generator": str(init_generator) if init_generator else None,
        "num_procs": trainer.world_size,
        "size": size, "data": str(root), "macs": macs, "teacher_macs": full_macs,
        "generator_spec": {k: len(v) for k, v in gspec.items()},
        "discriminator_spec": {k: len(v) for k, v in dspec.items()}, **d_how,
        "distill": cfg.extra["distill"], **feature_distill,
        "density": cfg.extra["density"] if objective == "density" else None,
        "before": before, "after": after, "train_seconds": train_s,
        "steps_per_sec": trainer.steps_per_sec, "eval_split": report, "eval_items": EVAL_ITEMS, "process": process,
        "history": trainer.history,
    }
    (out / "finetune.json").write_text(json.dumps(result, indent=1, default=float))
    say(f"wrote {out / 'generator'} and {out / 'finetune.json'}")
    return result
