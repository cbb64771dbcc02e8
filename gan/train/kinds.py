"""Teacher kinds: what a dense teacher of each data layout trains, samples, scores and exports.

The dataset's layout picks the kind — paired (aligned A|B, labels→photo) → pix2pix, unaligned →
CycleGAN, class folders → class-conditional GAN (``KINDS``).  A kind opens the train/val splits,
builds its models from a preset's ``generator``/``discriminator`` settings and its trainer
(``gan.train.builder``), draws the sample-grid rows, evaluates the trained models and exports them;
the ``train-teacher`` command (``orchestration/teacher.py``) adds the run directory, MLflow, resume
and printing.

Why here and not in the command: the kinds are model and data knowledge (which networks, which
metrics, which members are exported where), needed by anything that trains a teacher (issue #14).
Bad input raises ``TeacherConfigError`` or ``gan.data.DatasetError`` (both exit 2 on the CLI).

The A→B pair of a CycleGAN goes to ``generator/`` + ``discriminator/`` because that is the direction
pruning compresses (docs/methods.md, "Teacher training": horse→zebra is A→B).
"""
from __future__ import annotations

from pathlib import Path

import torch

from gan import data as gdata
from gan import export as gexport
from gan.train.builder import build_trainer
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.inception import InceptionGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.metrics import evaluate_fidelity
from gan.metrics.evaluate import evaluate_generator, generate

N_SAMPLES = 4
EVAL_ITEMS = 32
CONDITIONAL_EVAL_ITEMS = 64  # val class folders are sorted by class: 32 items would miss classes
#: dataset layout (``gan.data.detect_layout``) → teacher kind
KINDS = {"aligned": "pix2pix", "labels": "pix2pix", "unaligned": "cyclegan", "classes": "conditional"}
#: global batch per kind: pix2pix and CycleGAN train with batch 1; the conditional G has BatchNorm
#: (docs/methods.md, "Teacher training")
DEFAULT_BATCH = {"pix2pix": 1, "cyclegan": 1, "conditional": 16}


class TeacherConfigError(ValueError):
    """A preset / resolution a teacher kind cannot build: one line naming the setting (bad input)."""


def build_generator(g, input_nc: int = 3, output_nc: int = 3):
    """The image-to-image generator of a preset's ``GeneratorConfig``: ResNet, or CAT's
    inception-residual generator (``arch: inception``; channels_reduction_factor 6 as CAT;
    docs/methods.md, "CAT")."""
    cls = InceptionGenerator if g.arch == "inception" else ResnetGenerator
    return cls(input_nc=input_nc, output_nc=output_nc, ngf=g.ngf, n_blocks=g.n_blocks, norm=g.norm)


def describe_generator(g) -> str:
    return f"{'CAT inception' if g.arch == 'inception' else 'ResNet'} ngf {g.ngf} × {g.n_blocks} blocks"


def seed_of(seed: int) -> int:
    """The seed of the fixed sample / evaluation latents (independent of the training RNG)."""
    return 1000 + int(seed)


@torch.no_grad()
def eval_forward(model, *inputs):
    """``model(*inputs)`` in eval mode on the model's device (output on CPU); the mode is restored."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = model(*(t.to(dev) for t in inputs))
    model.train(was)
    return out.cpu()


class TeacherKind:
    """What differs between teacher kinds: data, models, trainer, sample grid, metrics, exports.

    ``preset``: anything with ``generator`` and ``discriminator`` settings (``orchestration.config``'s
    presets); ``root``: a prepared dataset of the kind's layout."""

    name = ""
    loss_keys: tuple[str, ...] = ()
    final_keys: tuple[str, ...] = ()
    describe = ""  # set by ``trainer``: one line naming the models

    def __init__(self, preset, root, size: int, seed: int):
        self.preset, self.root, self.size, self.seed = preset, root, size, seed
        self.train_ds = gdata.open_dataset(root, size=size, split="train", augment=True, seed=seed)
        self.val_ds = gdata.open_dataset(root, size=size, split="val")

    def _first(self, n: int) -> list[dict]:
        return [self.val_ds[i] for i in range(min(n, len(self.val_ds)))]

    def trainer(self, tcfg: dict):
        """The kind's models (from the current global RNG, then seeded by the trainer) and trainer."""
        raise NotImplementedError

    def sample_rows(self, t) -> list:
        raise NotImplementedError

    def evaluate(self, t) -> dict:
        raise NotImplementedError

    def export(self, t, out: Path, source: dict, metrics: dict) -> dict:
        """Export the members under ``out``; returns {teacher.json key: folder}."""
        raise NotImplementedError

    def summary(self, m: dict) -> str:
        raise NotImplementedError


class Pix2PixKind(TeacherKind):
    name = "pix2pix"
    loss_keys = ("loss_d", "loss_g", "gan_g", "l1")
    final_keys = ("loss_d", "loss_g", "l1")

    def __init__(self, *args):
        super().__init__(*args)
        fixed = self._first(N_SAMPLES)
        self.vx, self.vy = torch.stack([b["A"] for b in fixed]), torch.stack([b["B"] for b in fixed])

    def trainer(self, tcfg: dict):
        g, d = self.preset.generator, self.preset.discriminator
        in_nc = int(self.vx.shape[1])
        G = build_generator(g, input_nc=in_nc, output_nc=3)
        D = PatchGANDiscriminator(input_nc=in_nc + 3, ndf=d.ndf, n_layers=d.n_layers, norm=d.norm)
        self.describe = f"pix2pix teacher ({describe_generator(g)}, PatchGAN ndf {d.ndf})"
        return build_trainer(self.name, G, D, tcfg)

    def sample_rows(self, t) -> list:
        return [self.vx, eval_forward(t.generator, self.vx), self.vy]

    def evaluate(self, t) -> dict:
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


class CycleGANKind(TeacherKind):
    name = "cyclegan"
    loss_keys = ("loss_d", "loss_g", "gan_g", "cycle", "idt")
    final_keys = ("loss_d", "loss_g", "cycle", "idt")

    def __init__(self, *args):
        super().__init__(*args)
        fixed = self._first(N_SAMPLES)
        self.va, self.vb = torch.stack([b["A"] for b in fixed]), torch.stack([b["B"] for b in fixed])

    def trainer(self, tcfg: dict):
        g, d = self.preset.generator, self.preset.discriminator
        G = [build_generator(g) for _ in "AB"]
        D = [PatchGANDiscriminator(input_nc=3, ndf=d.ndf, n_layers=d.n_layers, norm=d.norm) for _ in "AB"]
        self.describe = (f"CycleGAN teacher (2 × {describe_generator(g)}, 2 × PatchGAN "
                         f"ndf {d.ndf}; LSGAN, cycle λ 10, identity 0.5)")
        return build_trainer(self.name, G, D, tcfg)

    def sample_rows(self, t) -> list:
        fake_b = eval_forward(t.g_a, self.va)
        return [self.va, fake_b, eval_forward(t.g_b, fake_b), self.vb, eval_forward(t.g_b, self.vb)]

    def evaluate(self, t) -> dict:
        """fid/kid_proxy of G_A(val A) against val B images, and of the untranslated A images
        (``*_input``: what doing nothing scores) for reference."""
        res = evaluate_generator(t.g_a, self.val_ds, max_items=EVAL_ITEMS)
        x = generate(torch.nn.Identity(), self.val_ds, max_items=EVAL_ITEMS)[0]
        ref = evaluate_fidelity(x, real=self.val_ds.domain_b(EVAL_ITEMS), paired=False,
                                kid_subset_size=min(1000, len(x)))
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


class ConditionalKind(TeacherKind):
    name = "conditional"
    loss_keys = ("loss_d", "loss_g", "d_real", "d_fake")
    final_keys = ("loss_d", "loss_g")
    Z_DIM = 64

    def __init__(self, *args):
        super().__init__(*args)
        self.classes = list(self.train_ds.classes)
        if list(self.val_ds.classes) != self.classes:
            raise gdata.DatasetError(f"{self.root}: val classes {self.val_ds.classes} differ from train classes "
                                     f"{self.classes}; class-folder splits need the same class folders", self.root)
        per_class = {}
        for i, (_, k) in enumerate(self.val_ds.items):
            per_class.setdefault(k, i)
        self.real_row = torch.stack([self.val_ds[per_class[k]]["image"] for k in sorted(per_class)])
        self.grid_labels = torch.arange(min(len(self.classes), 10))
        gen = torch.Generator().manual_seed(seed_of(self.seed))
        self.grid_z = torch.randn(N_SAMPLES, self.Z_DIM, generator=gen)

    def trainer(self, tcfg: dict):
        g, d = self.preset.generator, self.preset.discriminator
        try:
            G = ConditionalGenerator(z_dim=self.Z_DIM, num_classes=len(self.classes), ngf=g.ngf, img_size=self.size)
            D = ConditionalDiscriminator(num_classes=len(self.classes), ndf=d.ndf, img_size=self.size)
        except ValueError as e:
            raise TeacherConfigError(f"class-conditional teacher at {self.size}²: {e}") from None
        self.describe = (f"class-conditional teacher ({len(self.classes)} classes; G ngf {g.ngf} with "
                         f"conditional BN, projection D ndf {d.ndf}; hinge)")
        return build_trainer(self.name, G, D, tcfg)

    def _grid(self, G) -> list[torch.Tensor]:
        n = len(self.grid_labels)
        return [eval_forward(G, z.expand(n, -1), self.grid_labels) for z in self.grid_z]

    def sample_rows(self, t) -> list:
        return [*self._grid(t.generator), self.real_row[:len(self.grid_labels)]]

    def evaluate(self, t) -> dict:
        """fid/kid_proxy of generated images (the val labels, fixed z) vs the val images, and of the
        train images with the same labels vs val (``*_train``: the floor a perfect G approaches)."""
        n = min(len(self.val_ds), CONDITIONAL_EVAL_ITEMS)
        items = [self.val_ds[i] for i in range(n)]
        real, labels = torch.stack([b["image"] for b in items]), torch.tensor([b["label"] for b in items])
        gen = torch.Generator().manual_seed(seed_of(self.seed) + 1)
        fake = eval_forward(t.generator, torch.randn(n, self.Z_DIM, generator=gen), labels)
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


#: teacher kind name → its class
KIND_CLASSES = {k.name: k for k in (Pix2PixKind, CycleGANKind, ConditionalKind)}

