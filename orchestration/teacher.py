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

The A→B pair of a CycleGAN goes to ``generator/`` + ``discriminator/`` because that is the direction
pruning compresses (METHODS.md §1.7: horse→zebra is A→B).

Why checkpoints drive the samples: ``Pix2PixTrainer.save_checkpoint`` (shared by the CycleGAN and
conditional trainers) runs every ``ckpt_every`` steps and at the end, so hooking it gives sample grids
and MLflow metrics at the same cadence without a second copy of the training loop.  ``--resume``
continues the same MLflow run (its id is kept in ``run.json`` from the first start).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from gan import data as gdata
from gan import export as gexport
from gan.determinism import controlled_run
from gan.train import checkpoint as ckpt
from gan.train.conditional import ConditionalConfig, ConditionalGANTrainer
from gan.train.cyclegan import CycleGANConfig, CycleGANTrainer
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig
from orchestration.config import load_preset
from orchestration.errors import UsageError
from orchestration.launch import main_first, per_world
from orchestration.rundir import claim_run_dir, clear_run_dir, write_json
from orchestration.tracking import Tracker, check_reachable, loss_curves, resolve_tracking_uri

#: default steps and checkpoint interval per preset (tiny: ~1.5 min on 2 CPU cores, see README)
DEFAULT_STEPS = {"tiny": 2000, "small": 5000, "paper": 200_000}
EXPERIMENT = "teacher"
N_SAMPLES = 4
EVAL_ITEMS = 32
CONDITIONAL_EVAL_ITEMS = 64  # val class folders are sorted by class: 32 items would miss classes
KINDS = {"aligned": "pix2pix", "labels": "pix2pix", "unaligned": "cyclegan", "classes": "conditional"}
#: global batch per kind: pix2pix and CycleGAN train with batch 1 (§1.5); the conditional G has BatchNorm
DEFAULT_BATCH = {"pix2pix": 1, "cyclegan": 1, "conditional": 16}


def default_steps(preset: str) -> int:
    return DEFAULT_STEPS.get(Path(preset).stem if Path(preset).suffix else preset, DEFAULT_STEPS["tiny"])


def build_generator(g, input_nc: int = 3, output_nc: int = 3):
    """The image-to-image generator of a preset's ``GeneratorConfig``: ResNet, or CAT's
    inception-residual generator (``arch: inception``; channels_reduction_factor 6 as CAT)."""
    from gan.models.inception import InceptionGenerator
    from gan.models.resnet import ResnetGenerator

    cls = InceptionGenerator if g.arch == "inception" else ResnetGenerator
    return cls(input_nc=input_nc, output_nc=output_nc, ngf=g.ngf, n_blocks=g.n_blocks, norm=g.norm)


def _describe_generator(g) -> str:
    return f"{'CAT inception' if g.arch == 'inception' else 'ResNet'} ngf {g.ngf} × {g.n_blocks} blocks"


class _CheckpointHooks:
    """Mixed into a trainer: checkpoints also write a sample grid and push new history to MLflow."""

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


class _TeacherTrainer(_CheckpointHooks, Pix2PixTrainer):
    pass


class _CycleGANTeacher(_CheckpointHooks, CycleGANTrainer):
    pass


class _ConditionalTeacher(_CheckpointHooks, ConditionalGANTrainer):
    pass


@torch.no_grad()
def _eval_forward(model, *inputs):
    """``model(*inputs)`` in eval mode on the model's device (output on CPU); the mode is restored."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = model(*(t.to(dev) for t in inputs))
    model.train(was)
    return out.cpu()


# ------------------------------------------------------------------------------------ the three kinds

class _Kind:
    """What differs between teacher kinds: data, models, trainer, sample grid, metrics, exports."""

    name = ""
    loss_keys: tuple[str, ...] = ()
    final_keys: tuple[str, ...] = ()

    def __init__(self, preset, root, size: int, seed: int):
        self.preset, self.root, self.size, self.seed = preset, root, size, seed
        self.train_ds = gdata.open_dataset(root, size=size, split="train", augment=True, seed=seed)
        self.val_ds = gdata.open_dataset(root, size=size, split="val")

    def _first(self, n: int) -> list[dict]:
        return [self.val_ds[i] for i in range(min(n, len(self.val_ds)))]


class _Pix2Pix(_Kind):
    name = "pix2pix"
    loss_keys = ("loss_d", "loss_g", "gan_g", "l1")
    final_keys = ("loss_d", "loss_g", "l1")

    def __init__(self, *args):
        super().__init__(*args)
        fixed = self._first(N_SAMPLES)
        self.vx, self.vy = torch.stack([b["A"] for b in fixed]), torch.stack([b["B"] for b in fixed])

    def trainer(self, tcfg: dict):
        from gan.models.patchgan import PatchGANDiscriminator

        g, d = self.preset.generator, self.preset.discriminator
        in_nc = int(self.vx.shape[1])
        G = build_generator(g, input_nc=in_nc, output_nc=3)
        D = PatchGANDiscriminator(input_nc=in_nc + 3, ndf=d.ndf, n_layers=d.n_layers, norm=d.norm)
        self.describe = f"pix2pix teacher ({_describe_generator(g)}, PatchGAN ndf {d.ndf})"
        return _TeacherTrainer(G, D, TrainConfig(**tcfg))

    def sample_rows(self, t) -> list:
        return [self.vx, _eval_forward(t.generator, self.vx), self.vy]

    def evaluate(self, t) -> dict:
        from gan.metrics.evaluate import evaluate_generator

        return evaluate_generator(t.generator, self.val_ds, dataset_root=self.root, max_items=EVAL_ITEMS)

    def export(self, t, out: Path, source: dict, metrics: dict) -> dict:
        G_, D_ = t.generator, t.discriminator
        with torch.no_grad():
            samples = [self.vx, G_(self.vx), self.vy]
        gexport.save(G_, out / "generator", size=self.size, samples=samples, source=source, onnx=True,
                     metrics=metrics)
        gexport.save(D_, out / "discriminator", size=self.size, source=source, onnx=False)
        return {"generator": "generator", "discriminator": "discriminator"}

    def summary(self, m: dict) -> str:
        return (f"val PSNR {m.get('psnr', float('nan')):.2f} dB, SSIM {m.get('ssim', float('nan')):.3f}")


class _CycleGAN(_Kind):
    name = "cyclegan"
    loss_keys = ("loss_d", "loss_g", "gan_g", "cycle", "idt")
    final_keys = ("loss_d", "loss_g", "cycle", "idt")

    def __init__(self, *args):
        super().__init__(*args)
        fixed = self._first(N_SAMPLES)
        self.va, self.vb = torch.stack([b["A"] for b in fixed]), torch.stack([b["B"] for b in fixed])

    def trainer(self, tcfg: dict):
        from gan.models.patchgan import PatchGANDiscriminator

        g, d = self.preset.generator, self.preset.discriminator
        G = [build_generator(g) for _ in "AB"]
        D = [PatchGANDiscriminator(input_nc=3, ndf=d.ndf, n_layers=d.n_layers, norm=d.norm) for _ in "AB"]
        self.describe = (f"CycleGAN teacher (2 × {_describe_generator(g)}, 2 × PatchGAN "
                         f"ndf {d.ndf}; LSGAN, cycle λ 10, identity 0.5)")
        return _CycleGANTeacher(*G, *D, CycleGANConfig(**tcfg))

    def sample_rows(self, t) -> list:
        fake_b = _eval_forward(t.g_a, self.va)
        return [self.va, fake_b, _eval_forward(t.g_b, fake_b), self.vb, _eval_forward(t.g_b, self.vb)]

    def evaluate(self, t) -> dict:
        """fid/kid_proxy of G_A(val A) against val B images, and of the untranslated A images
        (``*_input``: what doing nothing scores) for reference."""
        from gan.metrics import evaluate_fidelity
        from gan.metrics.evaluate import evaluate_generator, generate

        res = evaluate_generator(t.g_a, self.val_ds, max_items=EVAL_ITEMS)
        x, _, real, _ = generate(torch.nn.Identity(), self.val_ds, max_items=EVAL_ITEMS)
        ref = evaluate_fidelity(x, real=real, paired=False, kid_subset_size=min(1000, len(x)))
        res.update({f"{k}_input": v for k, v in ref.items() if k != "n"})
        return res

    def export(self, t, out: Path, source: dict, metrics: dict) -> dict:
        with torch.no_grad():
            samples_a, samples_b = [self.va, t.g_a(self.va)], [self.vb, t.g_b(self.vb)]
        gexport.save(t.g_a, out / "generator", size=self.size, samples=samples_a,
                     source={**source, "member": "G_A", "direction": "A→B"}, onnx=True, metrics=metrics)
        gexport.save(t.d_a, out / "discriminator", size=self.size,
                     source={**source, "member": "D_A", "judges": "B"}, onnx=False)
        gexport.save(t.g_b, out / "generator_B", size=self.size, samples=samples_b,
                     source={**source, "member": "G_B", "direction": "B→A"}, onnx=True)
        gexport.save(t.d_b, out / "discriminator_B", size=self.size,
                     source={**source, "member": "D_B", "judges": "A"}, onnx=False)
        return {"generator": "generator", "discriminator": "discriminator",
                "generator_B": "generator_B", "discriminator_B": "discriminator_B"}

    def summary(self, m: dict) -> str:
        return (f"val fid_proxy(G_A(A), B) {m.get('fid_proxy', float('nan')):.2f} "
                f"(untranslated A: {m.get('fid_proxy_input', float('nan')):.2f})")


class _Conditional(_Kind):
    name = "conditional"
    loss_keys = ("loss_d", "loss_g", "d_real", "d_fake")
    final_keys = ("loss_d", "loss_g")
    Z_DIM = 64

    def __init__(self, *args):
        super().__init__(*args)
        self.classes = list(self.train_ds.classes)
        if list(self.val_ds.classes) != self.classes:
            raise UsageError(f"{self.root}: val classes {self.val_ds.classes} differ from train classes "
                             f"{self.classes}; class-folder splits need the same class folders")
        per_class = {}
        for i, (_, k) in enumerate(self.val_ds.items):
            per_class.setdefault(k, i)
        self.real_row = torch.stack([self.val_ds[per_class[k]]["image"] for k in sorted(per_class)])
        self.grid_labels = torch.arange(min(len(self.classes), 10))
        gen = torch.Generator().manual_seed(seed_of(self.seed))
        self.grid_z = torch.randn(N_SAMPLES, self.Z_DIM, generator=gen)

    def trainer(self, tcfg: dict):
        from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator

        g, d = self.preset.generator, self.preset.discriminator
        try:
            G = ConditionalGenerator(z_dim=self.Z_DIM, num_classes=len(self.classes), ngf=g.ngf, img_size=self.size)
            D = ConditionalDiscriminator(num_classes=len(self.classes), ndf=d.ndf, img_size=self.size)
        except ValueError as e:
            raise UsageError(f"class-conditional teacher at {self.size}²: {e}") from None
        self.describe = (f"class-conditional teacher ({len(self.classes)} classes; G ngf {g.ngf} with "
                         f"conditional BN, projection D ndf {d.ndf}; hinge)")
        return _ConditionalTeacher(G, D, ConditionalConfig(**tcfg))

    def _grid(self, G) -> list[torch.Tensor]:
        n = len(self.grid_labels)
        return [_eval_forward(G, z.expand(n, -1), self.grid_labels) for z in self.grid_z]

    def sample_rows(self, t) -> list:
        return [*self._grid(t.generator), self.real_row[:len(self.grid_labels)]]

    def evaluate(self, t) -> dict:
        """fid/kid_proxy of generated images (the val labels, fixed z) vs the val images, and of the
        train images with the same labels vs val (``*_train``: the floor a perfect G approaches)."""
        from gan.metrics import evaluate_fidelity

        n = min(len(self.val_ds), CONDITIONAL_EVAL_ITEMS)
        items = [self.val_ds[i] for i in range(n)]
        real, labels = torch.stack([b["image"] for b in items]), torch.tensor([b["label"] for b in items])
        gen = torch.Generator().manual_seed(seed_of(self.seed) + 1)
        fake = _eval_forward(t.generator, torch.randn(n, self.Z_DIM, generator=gen), labels)
        res = evaluate_fidelity(fake, real=real, paired=False, kid_subset_size=min(1000, n))
        train = gdata.open_dataset(self.root, size=self.size, split="train")  # no augmentation
        by_class = {}
        for i, (_, k) in enumerate(train.items):
            by_class.setdefault(k, []).append(i)
        picks = [by_class[int(k)][j % len(by_class[int(k)])] for j, k in enumerate(labels)]
        train_imgs = torch.stack([train[i]["image"] for i in picks])
        ref = evaluate_fidelity(train_imgs, real=real, paired=False, kid_subset_size=min(1000, n))
        res.update({f"{k}_train": v for k, v in ref.items() if k != "n"})
        return res

    def export(self, t, out: Path, source: dict, metrics: dict) -> dict:
        src = {**source, "classes": self.classes}
        gexport.save(t.generator, out / "generator", size=self.size, samples=self.sample_rows(t), source=src,
                     onnx=True, metrics=metrics)
        gexport.save(t.discriminator, out / "discriminator", size=self.size, source=src, onnx=False)
        return {"generator": "generator", "discriminator": "discriminator"}

    def summary(self, m: dict) -> str:
        return (f"val fid_proxy(G, val) {m.get('fid_proxy', float('nan')):.2f} "
                f"(train images: {m.get('fid_proxy_train', float('nan')):.2f})")


def seed_of(seed: int) -> int:
    """The seed of the fixed sample / evaluation latents (independent of the training RNG)."""
    return 1000 + int(seed)


KIND_CLASSES = {k.name: k for k in (_Pix2Pix, _CycleGAN, _Conditional)}


# ------------------------------------------------------------------------------------------ command

@controlled_run
def train_teacher(preset: str | None = "tiny", data: str | None = None, out="runs/teacher", steps: int | None = None,
                  resume: bool = False, overwrite: bool = False, tracking_uri: str | None = None,
                  backend: str = "deepspeed", ckpt_every: int | None = None, batch_size: int | None = None,
                  seed: int = 0, quiet: bool = False, track: bool = True, threads: int | None = None,
                  process: dict | None = None) -> dict:
    """Train (or continue) a teacher; returns the summary also written to ``out/teacher.json``.

    ``preset=None``: the run's own preset on ``resume`` (its checkpoint's widths), else tiny.
    ``threads``/``process``: see ``gan.determinism.controlled_run`` (the settings are recorded)."""
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
