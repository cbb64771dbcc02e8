"""``ganprune import-teacher``: a generator trained by the reference pix2pix / CycleGAN code (a
released ``latest_net_G.pth``) as a teacher run that ``prune``, ``finetune`` and ``benchmark`` take
(docs/import_teacher.md).

Steps: read the file without running it (``gan.weights_file``), map its ``model.N…`` keys onto our
zoo model and check every shape (``gan.models.reference_layout``), check that the imported model
computes the reference network's function, then — without ``--discriminator``, the reference
releases ship generators only — warm a PatchGAN up against the frozen generator with the one
trainer (``TrainConfig.freeze_generator``), evaluate on val and export G and D as ``train-teacher``
does.  Every input is checked before ``--out`` is created: bad input leaves nothing behind.

Layout of ``out``: ``generator/``, ``discriminator/`` (gan.export), ``history.json`` (the D warm-up),
``teacher.json`` ({kind: pix2pix, data, size, generator, discriminator, steps, val_metrics,
imported: {arch, widths, files, check: max |ours − reference|, …}}).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from gan.determinism import controlled_run
from orchestration.errors import UsageError
from orchestration.requests import ImportTeacherRequest
from orchestration.rundir import clear_run_dir, write_json
from gan import data as gdata, export as gexport
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.reference_layout import ARCHS, Imported, NORMS, import_discriminator, import_generator, max_abs_difference
from gan.train.builder import build_trainer, train_config
from gan.train.kinds import KINDS, Pix2PixKind
from gan.weights_file import read_state_dict

DEFAULT_D_STEPS = 200
#: the imported model must compute the reference function to float rounding (measured 0 on CPU)
CHECK_ATOL = 1e-4
TRAIN_SIZE = {"unet_128": 128}  # the reference trains at 256² (``--crop_size 256``) otherwise


class ImportCheckError(RuntimeError):
    """The imported model does not compute the reference function: our bug (exit 1), not bad input."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_flags(r: ImportTeacherRequest) -> tuple[int, int]:
    """(size, D warm-up steps) after the flag checks."""
    if r.arch not in ARCHS:
        raise UsageError(f"unknown --arch {r.arch!r}; choose one of {', '.join(ARCHS)}")
    if r.norm not in NORMS:
        raise UsageError(f"unknown --norm {r.norm!r}; choose one of {', '.join(NORMS)}")
    if r.backend not in ("deepspeed", "torch"):
        raise UsageError(f"--backend must be deepspeed or torch, got {r.backend!r}")
    family, depth = ARCHS[r.arch]
    size = r.size or TRAIN_SIZE.get(r.arch, 256)
    step = 2 ** depth if family == "unet" else 4
    if size < step or size % step:
        raise UsageError(f"--size {size} does not fit --arch {r.arch}, which halves the image "
                         f"{depth if family == 'unet' else 2} times; give a multiple of {step}")
    d_steps = r.d_steps if r.d_steps is not None else (0 if r.discriminator else DEFAULT_D_STEPS)
    if d_steps < 0:
        raise UsageError(f"--d-steps must be ≥ 0, got {d_steps}")
    if r.ndf < 1:
        raise UsageError(f"--ndf must be ≥ 1, got {r.ndf}")
    return size, d_steps


def _max_diff(model, state: dict, info: dict, x: torch.Tensor) -> float:
    return max_abs_difference(Imported(model, info), state, x)


@controlled_run
def import_teacher(request: ImportTeacherRequest, process: dict | None = None) -> dict:
    """Make ``request.out`` a pix2pix teacher run from the reference files; returns the summary also
    written to ``out/teacher.json``."""
    r = request
    t_start = time.perf_counter()
    say = (lambda m: None) if r.quiet else (lambda m: print(m, flush=True))
    size, d_steps = _check_flags(r)
    out = Path(r.out)
    if out.is_dir() and any(out.iterdir()) and not r.overwrite:
        raise UsageError(f"{out} is not empty; pass --overwrite to replace it, or choose another --out")

    g_file = Path(r.generator)
    g_state = read_state_dict(g_file)
    g = import_generator(g_state, r.arch, r.norm, r.dropout, source=str(g_file))
    cin, cout = g.info["input_nc"], g.info["output_nc"]
    d_state = d = None
    if r.discriminator:
        d_state = read_state_dict(r.discriminator)
        d = import_discriminator(d_state, r.norm, source=str(r.discriminator))
        if d.info["input_nc"] != cin + cout:
            raise UsageError(f"{r.discriminator} takes {d.info['input_nc']} input channels, a pix2pix D of this "
                             f"generator takes input + output = {cin + cout}; pass the conditional D trained with "
                             "it (CycleGAN D's judge images alone) or drop --discriminator to warm one up")

    root = gdata.resolve_dataset(r.data, size=size)
    layout = gdata.detect_layout(root)
    if KINDS[layout] != "pix2pix":
        raise UsageError(f"{r.data} is {layout} data; an imported teacher trains its D on paired data (aligned "
                         "A|B or labels→photo); pass a paired dataset")
    kind = Pix2PixKind(None, root, size, r.seed)
    if (int(kind.vx.shape[1]), int(kind.vy.shape[1])) != (cin, cout):
        raise UsageError(f"{r.data} has {int(kind.vx.shape[1])}-channel inputs and {int(kind.vy.shape[1])}-channel "
                         f"targets, {g_file} maps {cin} to {cout} channels; pass the dataset it was trained on")

    # the check: our modules vs the reference's layer order, on the val inputs (ours clamp to [-1, 1])
    diff_g = _max_diff(g.model, g_state, g.info, kind.vx)
    diff_d = _max_diff(d.model, d_state, d.info, torch.cat([kind.vx, kind.vy], 1)) if d else None
    for what, diff in (("generator", diff_g), ("discriminator", diff_d)):
        if diff is not None and diff > CHECK_ATOL:
            raise ImportCheckError(f"the imported {what} differs from the reference function by {diff:.3g}")

    clear_run_dir(out, r.overwrite, None, inputs=(g_file, r.discriminator, root))
    out.mkdir(parents=True, exist_ok=True)
    D = d.model if d else PatchGANDiscriminator(input_nc=cin + cout, ndf=r.ndf, n_layers=3, norm=r.norm)
    say(f"imported {r.arch} ({g.info['class']} ngf {g.info['ngf']}, --norm {r.norm}"
        f"{', dropout' if r.dropout else ''}) from {g_file}: max |ours − reference| = {diff_g:.3g}"
        + (f"; dropped {len(g.dropped)} legacy InstanceNorm statistics" if g.dropped else ""))
    history, t = [], SimpleNamespace(generator=g.model, discriminator=D)
    t_fit = time.perf_counter()
    if d_steps:
        say(f"warming {'the imported' if d else 'a PatchGAN ndf ' + str(r.ndf)} D up for {d_steps} steps "
            f"against the frozen generator on {r.data}")
        cfg = train_config("pix2pix", steps=d_steps, batch_size=1, backend=r.backend, freeze_generator=True,
                           seed=r.seed, quiet=r.quiet, log_every=max(1, min(10, d_steps // 20)),
                           extra={"command": "import-teacher", "data": r.data, "size": size})
        t = build_trainer("pix2pix", g.model, D.train(), cfg)
        loader = gdata.make_loader(kind.train_ds, batch_size=1, shuffle=True, seed=r.seed)
        history = t.fit(loader)
        write_json(out / "history.json", history)
    fit_s = time.perf_counter() - t_fit
    t.generator.cpu().eval()
    t.discriminator.cpu().eval()

    metrics = {k: v for k, v in kind.evaluate(t).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    files = {"generator": str(g_file.resolve()), "generator_sha256": _sha256(g_file)}
    if r.discriminator:
        files.update(discriminator=str(Path(r.discriminator).resolve()),
                     discriminator_sha256=_sha256(Path(r.discriminator)))
    source = {"command": "import-teacher", "kind": "pix2pix", "arch": r.arch, "norm": r.norm, "data": r.data,
              "d_steps": d_steps, **files}
    members = kind.export(t, out, source, {f"val_{k}": v for k, v in metrics.items()})
    exported = gexport.load(out / members["generator"])  # the check again, on what prune will load
    check = {"generator_max_abs_diff": _max_diff(exported, g_state, g.info, kind.vx), "atol": CHECK_ATOL,
             "inputs": f"{len(kind.vx)} val inputs at {size}²"}
    if d and not d_steps:
        check["discriminator_max_abs_diff"] = _max_diff(gexport.load(out / members["discriminator"]), d_state,
                                                        d.info, torch.cat([kind.vx, kind.vy], 1))
    if check["generator_max_abs_diff"] > CHECK_ATOL:
        raise ImportCheckError(f"the exported generator differs from the reference function by "
                               f"{check['generator_max_abs_diff']:.3g}")
    imported = {"generator": g.info, "discriminator": d.info if d else
                {"class": "PatchGANDiscriminator", "ndf": r.ndf, "n_layers": 3, "norm": r.norm, "warmed_up": True},
                "files": files, "dropped_legacy_keys": g.dropped + (d.dropped if d else []), "check": check}
    result = {"kind": "pix2pix", "preset": None, "data": r.data, "size": size, **members, "mlflow_run_id": None,
              "steps": d_steps, "batch_size": 1, "backend": r.backend, "num_procs": 1, "val_metrics": metrics,
              "d_warmup_s": round(fit_s, 1), "process": process, "imported": imported,
              "total_s": round(time.perf_counter() - t_start, 1),
              "final_losses": {k: history[-1][k] for k in ("loss_d", "loss_g", "l1")} if history else {}}
    write_json(out / "teacher.json", result)
    say(f"teacher run {out}: val PSNR {metrics.get('psnr', float('nan')):.2f} dB; "
        f"exported max |ours − reference| = {check['generator_max_abs_diff']:.3g}")
    return {"out": str(out), **result}
