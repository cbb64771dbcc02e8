"""VEM (Kang et al., NeurIPS 2022): maximise I(G_T(x); G_S(x)) through a variational energy-based model.

docs/methods.md, "VEM". Barber–Agakov: I(T; S) ≥ H(T) + E[log q_θ(t|s)] with q_θ(t|s) ∝ exp(−E_θ(t, s)).
Each training step (i) samples t̃ ∼ q_θ(·|s) by Langevin dynamics started at the student output, (ii) takes
one step of the EBM on its own Adam to tighten the bound, (iii) adds λ_MI·[E_θ(t, G_S(x)) − E_θ(t̃, G_S(x))]
to the student's loss (gradient through the student output in both terms).

Why an ``extra_g_loss`` hook and not a trainer: VEM is an add-on to any host objective, so it is a
callable the pix2pix G step already calls; ``combine_hooks`` adds it to the host's hook. The EBM is not an
``aux_modules`` member because it has its own objective and optimiser (the EBM step), not the G loss.
Formulas, defaults and the EBM follow the first author's tutorial code (kminsoo/Genrative-Model-Tutorial);
no official code exists.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan.losses.hooks import combine

Energy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_EPS = 1e-12


# --------------------------------------------------------------------------------- spectral norm


class _SpectralNorm:
    """W / σ(W) with one power iteration per training forward (as ``torch.nn.utils.spectral_norm``).

    Why our own: the tutorial's second conv of each block uses the *bounded* form W / max(σ, 1), which
    keeps its near-zero initialisation near zero (plain SN would rescale it to σ = 1 and the residual
    blocks would no longer start as identity-plus-shortcut). σ is clamped at 1e-12 so an all-zero
    weight gives a zero map (a constant energy) instead of NaN."""

    def _sn_setup(self, bound: bool) -> None:
        mat = self.weight.detach().flatten(1)
        self.bound = bound
        self.register_buffer("sn_u", F.normalize(torch.randn(mat.shape[0]), dim=0, eps=_EPS))
        self.register_buffer("sn_v", torch.zeros(mat.shape[1]))
        self._power_iteration(20)

    @torch.no_grad()
    def _power_iteration(self, n: int) -> None:
        mat = self.weight.detach().flatten(1)
        u = self.sn_u
        for _ in range(n):
            v = F.normalize(mat.t() @ u, dim=0, eps=_EPS)
            u = F.normalize(mat @ v, dim=0, eps=_EPS)
        self.sn_u.copy_(u)
        self.sn_v.copy_(v)

    def sn_weight(self) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self._power_iteration(1)
        u, v = self.sn_u.clone(), self.sn_v.clone()  # clones: later in-place updates keep this graph valid
        sigma = torch.dot(u, self.weight.flatten(1) @ v).clamp_min(_EPS)
        return self.weight / (sigma.clamp_min(1.0) if self.bound else sigma)


class SNConv2d(_SpectralNorm, nn.Conv2d):
    def __init__(self, cin: int, cout: int, k: int = 3, padding: int = 1, bound: bool = False,
                 init_std: float = 1.0):
        nn.Conv2d.__init__(self, cin, cout, k, padding=padding)
        nn.init.normal_(self.weight, 0.0, init_std)
        nn.init.zeros_(self.bias)
        self._sn_setup(bound)

    def forward(self, x):
        return self._conv_forward(x, self.sn_weight(), self.bias)


class SNLinear(_SpectralNorm, nn.Linear):
    def __init__(self, fin: int, fout: int):
        nn.Linear.__init__(self, fin, fout)
        self._sn_setup(False)

    def forward(self, x):
        return F.linear(x, self.sn_weight(), self.bias)


# --------------------------------------------------------------------------------- energy network


def _pooled(side: int) -> int:
    """Side after the input AvgPool2d(3, stride 2, pad 1)."""
    return (side - 1) // 2 + 1


def n_blocks_for(image_size) -> int:
    """Number of 2×2-pooling residual blocks that take the pooled input down to 1×1 (7 at 256²)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    side, n = _pooled(min(h, w)), 0
    while side >= 2:
        side, n = side // 2, n + 1
    return n


class EBMBlock(nn.Module):
    """Residual down-block: conv-LReLU-conv (second conv near zero, bounded SN) + shortcut, 2×2 avg
    pool, LReLU. The 3×3 shortcut conv exists only when the width changes (identity otherwise)."""

    def __init__(self, cin: int, cout: int, slope: float):
        super().__init__()
        self.conv1 = SNConv2d(cin, cin)
        self.conv2 = SNConv2d(cin, cout, bound=True, init_std=1e-10)
        self.shortcut = SNConv2d(cin, cout) if cin != cout else nn.Identity()
        self.slope = slope

    def forward(self, x):
        h = self.conv2(F.leaky_relu(self.conv1(x), self.slope))
        return F.leaky_relu(F.avg_pool2d(self.shortcut(x) + h, 2), self.slope)


class EnergyNet(nn.Module):
    """E_θ(t, s) → one scalar per sample (the tutorial's EBM; low energy = t likely given s).

    t and s are each avg-pooled (3×3, s2, p1), concatenated, a 3×3 conv to ``c0`` + LReLU, then
    ``n_blocks`` residual down-blocks (widths c0 → 2c0 → 4c0, then constant) — by default as many as
    take ``image_size`` down to 1×1 (7 at 256², 4 at 32²) — final ReLU, global mean, linear. Spectral
    norm on every conv and the linear. ``slope`` 0.01 is the tutorial's ``nn.LeakyReLU()`` default."""

    def __init__(self, image_size=256, c0: int = 8, in_channels: int = 3, n_blocks: int | None = None,
                 slope: float = 0.01):
        super().__init__()
        n = n_blocks_for(image_size) if n_blocks is None else int(n_blocks)
        if n < 1 or c0 < 1:
            raise ValueError(f"EnergyNet needs c0 >= 1 and at least one block (got c0={c0}, n_blocks={n} "
                             f"for image_size={image_size}); use images of at least 4×4 and c0 >= 1")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
        self.image_size, self.c0, self.in_channels, self.n_blocks = size, c0, in_channels, n
        self.slope = slope
        self.stem = SNConv2d(2 * in_channels, c0)
        widths = [c0] + [c0 * min(2 ** (i + 1), 4) for i in range(n)]
        self.blocks = nn.ModuleList(EBMBlock(a, b, slope) for a, b in zip(widths[:-1], widths[1:]))
        self.head = SNLinear(widths[-1], 1)

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if t.shape != s.shape or t.dim() != 4 or t.shape[1] != self.in_channels:
            raise ValueError(f"EnergyNet takes two (B, {self.in_channels}, H, W) tensors of one shape, got "
                             f"{tuple(t.shape)} and {tuple(s.shape)}; pass teacher and student outputs")
        if _pooled(min(t.shape[-2:])) < 2 ** self.n_blocks:
            raise ValueError(f"{tuple(t.shape[-2:])} images are too small for this EnergyNet's "
                             f"{self.n_blocks} blocks; build it with image_size={tuple(t.shape[-2:])}")
        h = torch.cat([F.avg_pool2d(t, 3, 2, 1), F.avg_pool2d(s, 3, 2, 1)], 1)
        h = F.leaky_relu(self.stem(h), self.slope)
        for block in self.blocks:
            h = block(h)
        return self.head(F.relu(h).mean((2, 3))).squeeze(1)


# --------------------------------------------------------------------------------- sampling and losses


def langevin(energy: Energy, s: torch.Tensor, steps: int = 10, step_size: float = 1.0,
             noise: float = 0.005) -> torch.Tensor:
    """t̃ ∼ q_θ(·|s) by Langevin dynamics: chain from the detached student output,
    t̃ ← t̃ − η∇E(t̃, s) + σε; clamped to [−1, 1] once at the end (as the tutorial) and detached. Only
    ∇ w.r.t. t̃ is computed, so the energy's parameters collect no gradient."""
    s = s.detach()
    x = s.clone()
    with torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x, s).sum(), x)
            x = (x.detach() - step_size * grad + noise * torch.randn_like(x)).detach()
    return x.clamp(-1.0, 1.0).detach()


def ebm_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_EBM (the EBM step): lower the energy of real pairs, raise the sampled ones; α·E² keeps the
    energies from drifting (contrastive divergence has no anchor otherwise)."""
    return e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()


@dataclass
class VEMConfig:
    """The tutorial's defaults (α as its scripts; η = 1.0 is the U-Net pix2pix value, 100 CycleGAN)."""
    lambda_mi: float = 0.1
    alpha: float = 0.05
    ebm_lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.999)
    langevin_steps: int = 10
    step_size: float = 1.0
    noise: float = 0.005
    c0: int = 8
    positive: str = "teacher"   # "teacher": t = batch["B"] (G_T(x) under TeacherTargets); "gt": batch["GT"]
    seed: int = 0               # EBM initialisation (same on every rank, independent of the global RNG)

    def __post_init__(self):
        if self.positive not in ("teacher", "gt"):
            raise ValueError(f"VEMConfig.positive={self.positive!r} is unknown; use 'teacher' or 'gt'")
        if self.lambda_mi < 0 or self.alpha < 0 or self.ebm_lr < 0 or self.langevin_steps < 0 \
                or self.noise < 0 or self.c0 < 1:
            raise ValueError(f"VEMConfig has a negative weight/lr/steps/noise or c0 < 1 ({asdict(self)}); "
                             "fix the value")

    def to_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}


class VEMTerm:
    """``extra_g_loss`` hook adding the VEM term; owns the EBM (built on the first call from the student
    output's shape, on the trainer's device) and its Adam.

    One call per training step: Langevin t̃ (θ frozen), one EBM step on detached (t, s, t̃) with the
    gradients averaged over ranks, θ frozen again, then λ_MI·[mean E(t, fake) − mean E(t̃, fake)].
    Checkpoint it with ``state_dict``/``load_state_dict`` (tensors only: safetensors-ready); a state loaded
    before the first call is applied when the EBM is built."""

    def __init__(self, cfg: VEMConfig | None = None):
        self.cfg = cfg or VEMConfig()
        self.ebm: EnergyNet | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._pending: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ EBM

    def build(self, shape, device=None) -> EnergyNet:
        """Create the EBM for (C, H, W) images (idempotent); seeded by ``cfg.seed`` so every rank starts
        from the same θ without touching the global RNG stream."""
        if self.ebm is None:
            c, h, w = (int(v) for v in shape[-3:])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                ebm = EnergyNet((h, w), c0=self.cfg.c0, in_channels=c)
            self.ebm = ebm.to(device or "cpu").train().requires_grad_(False)
            self.optimizer = torch.optim.Adam(self.ebm.parameters(), lr=self.cfg.ebm_lr, betas=self.cfg.betas)
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self.load_state_dict(pending)
        return self.ebm

    def ebm_step(self, t: torch.Tensor, s: torch.Tensor, t_tilde: torch.Tensor,
                 world_size: int = 1) -> dict[str, torch.Tensor]:
        """One Adam step of θ on L_EBM with s, t, t̃ detached; θ is left frozen. Returns detached stats."""
        ebm, opt = self.ebm, self.optimizer
        ebm.requires_grad_(True)
        try:
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                s = s.detach()
                e_pos, e_neg = ebm(t.detach(), s), ebm(t_tilde.detach(), s)
                loss = ebm_loss(e_pos, e_neg, self.cfg.alpha)
                loss.backward()
            if world_size > 1:  # one collective for all θ gradients
                grads = [p.grad for p in ebm.parameters()]
                flat = torch.cat([g.flatten() for g in grads])
                torch.distributed.all_reduce(flat)
                flat /= world_size
                for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                    g.copy_(part.view_as(g))
            opt.step()
        finally:
            opt.zero_grad(set_to_none=True)
            ebm.requires_grad_(False)
        return {"ebm_loss": loss.detach(), "e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}

    # ------------------------------------------------------------------ the hook

    def positive(self, batch, trainer) -> torch.Tensor:
        """t: the teacher output (batch["B"], as ``TeacherTargets`` relabels it) or the ground truth."""
        if self.cfg.positive == "gt":
            if not (isinstance(batch, dict) and "GT" in batch):
                raise ValueError("VEMConfig.positive='gt' needs batches with a 'GT' key; wrap the loader "
                                 "in gan.train.distill.TeacherTargets or use positive='teacher'")
            t = batch["GT"]
        else:
            t = batch["B"] if isinstance(batch, dict) else batch[1]
        return trainer._local(t)

    def __call__(self, batch, fake: torch.Tensor, trainer) -> tuple[torch.Tensor, dict]:
        c = self.cfg
        if c.lambda_mi == 0:  # as the tutorial: no EBM work when the term is off
            z = fake.new_zeros(())
            return z, {"vem": z, "vem_ebm_loss": z, "vem_e_pos": z, "vem_e_neg": z}
        t = self.positive(batch, trainer)
        if t.shape != fake.shape:
            raise ValueError(f"VEM positive {tuple(t.shape)} and student output {tuple(fake.shape)} differ; "
                             "the teacher output must have the student's shape")
        device = getattr(getattr(trainer, "g", None), "device", fake.device)
        ebm = self.build(fake.shape, device)
        dtype = next(ebm.parameters()).dtype
        s, t = fake.to(device, dtype), t.to(device, dtype).detach()
        t_tilde = langevin(ebm, s, c.langevin_steps, c.step_size, c.noise)
        stats = self.ebm_step(t, s, t_tilde, getattr(trainer, "world_size", 1))
        gap = ebm(t, s).mean() - ebm(t_tilde, s).mean()  # θ frozen: ∇ only through s = G_S(x)
        return c.lambda_mi * gap, {"vem": gap.detach(), **{f"vem_{k}": v for k, v in stats.items()}}

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat {name: CPU tensor}: ``ebm.*`` weights and SN vectors, ``opt.<i>.<key>`` Adam state,
        ``meta.*`` the shape the EBM was built for. Empty before the EBM exists."""
        if self.ebm is None:
            return dict(self._pending or {})
        out = {f"ebm.{k}": v.detach().cpu().contiguous() for k, v in self.ebm.state_dict().items()}
        for i, st in self.optimizer.state_dict()["state"].items():
            for k, v in st.items():
                out[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        h, w = self.ebm.image_size
        out["meta.shape"] = torch.tensor([self.ebm.in_channels, h, w])
        out["meta.c0"] = torch.tensor(self.ebm.c0)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        if "meta.shape" not in state or int(state.get("meta.c0", -1)) != self.cfg.c0:
            raise ValueError(f"VEM state has no meta.shape or another c0 ({state.get('meta.c0')} vs "
                             f"{self.cfg.c0}); load a VEMTerm.state_dict() saved with the same VEMConfig.c0")
        if self.ebm is None:
            self._pending = dict(state)
            return
        if tuple(int(v) for v in state["meta.shape"]) != (self.ebm.in_channels, *self.ebm.image_size):
            raise ValueError(f"VEM state was built for {state['meta.shape'].tolist()} images, this EBM for "
                             f"{[self.ebm.in_channels, *self.ebm.image_size]}; resume at the same image size")
        self.ebm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ebm.")})
        opt_state: dict[int, dict] = {}
        for k, v in state.items():
            if k.startswith("opt."):
                _, i, key = k.split(".", 2)
                opt_state.setdefault(int(i), {})[key] = v.clone()
        self.optimizer.load_state_dict({"state": opt_state,
                                        "param_groups": self.optimizer.state_dict()["param_groups"]})


# --------------------------------------------------------------------------------- composing hooks


#: several ``extra_g_loss`` hooks summed into one (``gan.losses.hooks.combine``)
combine_hooks = combine


__all__ = ["EnergyNet", "EBMBlock", "SNConv2d", "SNLinear", "VEMConfig", "VEMTerm", "combine_hooks",
           "ebm_loss", "langevin", "n_blocks_for"]
