"""The one place a trainer is made: ``build_trainer(kind, G, D, cfg, hooks)`` (issue #14).

Why one builder: the pix2pix, CycleGAN and class-conditional trainers share one loop
(``Pix2PixTrainer``) and differ only in their step; what a caller adds is the config and the loss
hooks of its objective (``gan.train.distill.DistillHooks``: ``g`` → ``extra_g_loss``, ``d`` →
``extra_d_loss``, ``aux`` → ``aux_modules``, ``stateful``).  Wired by hand at every call site (teacher
training, fine-tune, the local backend, PPCD, GAN Compression) one site or another would drop a hook
— e.g. ``stateful``, and with it VEM's EBM from the checkpoints (docs/methods.md, "VEM").
"""
from __future__ import annotations

from gan.train.conditional import ConditionalConfig, ConditionalGANTrainer
from gan.train.cyclegan import CycleGANConfig, CycleGANTrainer
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig

#: trainer kind → (trainer class, its config class)
TRAINERS = {"pix2pix": (Pix2PixTrainer, TrainConfig), "cyclegan": (CycleGANTrainer, CycleGANConfig),
            "conditional": (ConditionalGANTrainer, ConditionalConfig)}


def _entry(kind: str):
    try:
        return TRAINERS[kind]
    except KeyError:
        raise ValueError(f"unknown trainer kind {kind!r}; choose one of {', '.join(TRAINERS)}") from None


def train_config(kind: str, **fields) -> TrainConfig:
    """The config of ``kind``'s trainer with ``fields`` set (the kind's own defaults for the rest:
    CycleGAN LSGAN, conditional hinge with Adam β = (0, 0.999))."""
    return _entry(kind)[1](**fields)


def build_trainer(kind: str, generator, discriminator, cfg: TrainConfig | dict | None = None,
                  hooks=None) -> Pix2PixTrainer:
    """The ``kind`` trainer ("pix2pix", "cyclegan" or "conditional") of ``generator`` and ``discriminator``.

    For "cyclegan" both are pairs: ``(G_A, G_B)`` and ``(D_A, D_B)``.  ``cfg``: the kind's config
    (``train_config``), a dict of its fields, or None for its defaults.  ``hooks``: a
    ``gan.train.distill.DistillHooks`` (anything with ``g``, ``d``, ``aux``, ``stateful``), or None for
    the plain GAN objective; the conditional trainer has no D-side hook, the CycleGAN trainer no hooks."""
    cls, cfg_cls = _entry(kind)
    if cfg is None or isinstance(cfg, dict):
        cfg = cfg_cls(**(cfg or {}))
    elif not isinstance(cfg, cfg_cls):
        raise TypeError(f"a {kind} trainer takes a {cfg_cls.__name__}, got {type(cfg).__name__}")
    kw = {}
    if hooks is not None:
        if kind == "cyclegan":
            raise ValueError("the CycleGAN trainer takes no loss hooks")
        if kind == "conditional" and hooks.d is not None:
            raise ValueError("the conditional trainer has no D-side loss hook")
        kw = dict(extra_g_loss=hooks.g, aux_modules=hooks.aux, stateful=hooks.stateful)
        if kind == "pix2pix":
            kw["extra_d_loss"] = hooks.d
    if kind == "cyclegan":
        return cls(*generator, *discriminator, cfg)
    return cls(generator, discriminator, cfg, **kw)
