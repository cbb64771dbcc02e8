"""MGGC-style local density-structure objective — OUR design, not the paper's.

The paper's equations are unread, so every choice here is a knob of ``DensityConfig`` and is
listed in docs/methods.md, "MGGC density objective". Idea: around each input x_i, K neighbours give a
small neighbourhood on the generator's manifold; the teacher's soft neighbour distribution p_i
(Gaussian kernel on feature distances) must be kept by the student (KL), plus the distance scale the
softmax drops. Neighbours are K jittered copies of x_i (``neighbors="jitter"``) or the K other
training inputs nearest to x_i in the teacher's feature space, drawn from a memory bank of recent
batches (``neighbors="memory"``, issue #15 item 4).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
_EPS = 1e-12


@dataclass
class DensityConfig:
    """Every UNVERIFIED choice of the density objective (docs/methods.md, "MGGC density objective")."""
    k_neighbors: int = 4          # K neighbours per center
    neighbors: str = "memory"     # "memory": nearest bank inputs (jitter until the bank holds K); "jitter":
                                  # shifted/noisy copies of x_i (lost 0.81 ± 0.15 dB to memory, docs/methods.md)
    bank_size: int = 64           # "memory": inputs of recent batches kept to draw neighbours from
    shift_px: int = 8             # max |shift|; capped at min(H, W) // 8 for small images
    noise_sigma: float = 0.05     # Gaussian input noise (inputs in [-1, 1])
    geometric_only: bool = False  # label maps: shift only, no noise
    bandwidth_factor: float = 1.0  # h² = median(teacher d) × factor ("median"), or per-row h² × factor
    bandwidth_mode: str = "median"  # "median": one h² per batch; "perplexity": per row, SNE-calibrated
    perplexity: float = 2.0       # target perplexity of each teacher row (1 < · < K), mode "perplexity"
    gamma: float = 0.1            # weight of the distance-scale term
    kde_weight: float = 0.0       # optional KDE likelihood term (off by default)
    feature: Union[str, FeatureFn] = "disc"  # "disc" = frozen teacher-D penultimate map, GAP; or callable
    conditional: bool | None = None  # φ / adversarial D see cat(x, y); None = infer from D's in_channels
    adv_center: bool = False      # neighbourhood D also receives the center output on channels
    seed: int = 0                 # seed of DensityObjective's own jitter generator

    def __post_init__(self):
        if self.neighbors not in ("jitter", "memory"):
            raise ValueError(f"unknown neighbors {self.neighbors!r}; use 'jitter' or 'memory'")
        if self.neighbors == "memory" and self.bank_size < self.k_neighbors:
            raise ValueError(f"bank_size must be ≥ k_neighbors ({self.k_neighbors}) to hold a neighbourhood, "
                             f"got {self.bank_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if callable(d["feature"]):
            d["feature"] = getattr(d["feature"], "__name__", "callable")
        return d


def max_shift(cfg: DensityConfig, height: int, width: int) -> int:
    """Shift bound scaled for small images so a jitter stays "meaning-preserving"."""
    return max(0, min(cfg.shift_px, min(height, width) // 8))


def make_neighbors(x: torch.Tensor, cfg: DensityConfig, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) → (B, K, C, H, W): random shift (reflect-pad + crop, no wrap-around seam) and,
    unless ``geometric_only``, Gaussian noise. Deterministic given ``generator``'s state."""
    b, c, h, w = x.shape
    k, s = cfg.k_neighbors, max_shift(cfg, h, w)
    gdev = generator.device
    shifts = torch.randint(-s, s + 1, (b, k, 2), generator=generator, device=gdev).tolist()
    padded = F.pad(x, (s, s, s, s), mode="reflect") if s else x
    out = torch.stack([torch.stack([padded[i, :, s + dy:s + dy + h, s + dx:s + dx + w]
                                    for dy, dx in shifts[i]]) for i in range(b)])
    if not cfg.geometric_only and cfg.noise_sigma > 0:
        noise = torch.randn(out.shape, generator=generator, device=gdev, dtype=out.dtype)
        out = out + cfg.noise_sigma * noise.to(x.device)
    return out


class NeighbourBank:
    """FIFO memory of recent training inputs with their teacher outputs and teacher features, so a
    neighbourhood can be made of *other real samples* near x_i on the teacher's manifold rather than
    jittered copies of x_i (docs/methods.md, "MGGC density objective"). Checkpointed as trainer hook
    state (``state_dict``), so a resumed fine-tune draws the neighbours an uninterrupted one draws."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"bank_size must be ≥ 1, got {size}")
        self.size = int(size)
        self.x = self.t = self.f = None

    def __len__(self) -> int:
        return 0 if self.x is None else len(self.x)

    def nearest(self, x: torch.Tensor, t: torch.Tensor, f: torch.Tensor, k: int):
        """For each row i of the batch, the K inputs (and teacher outputs) nearest in feature distance
        among the bank and the batch's other rows: ((B, K, C, H, W), (B, K, C', H, W)), or None while
        fewer than K candidates exist. A candidate at feature distance 0 is the same input again, never a
        neighbour. Ties break by position (deterministic)."""
        b = len(x)
        if self.x is not None and self.x.device != x.device:  # e.g. loaded from a checkpoint on CPU
            self.x, self.t, self.f = self.x.to(x.device), self.t.to(x.device), self.f.to(x.device)
        pool_x = x if self.x is None else torch.cat([self.x, x])
        pool_t = t if self.t is None else torch.cat([self.t, t])
        pool_f = f if self.f is None else torch.cat([self.f, f])
        if len(pool_x) - 1 < k:
            return None
        # exact distances (no matrix-product shortcut, which cdist takes above 25 rows): an input seen again
        # is then at distance 0, and the order is the one the features give
        d = torch.cdist(f.double(), pool_f.double(), compute_mode="donot_use_mm_for_euclid_dist")
        own = torch.arange(b, device=d.device) + len(pool_x) - b
        d[torch.arange(b, device=d.device), own] = float("inf")
        d[d == 0] = float("inf")  # the same item seen again (a small, unaugmented set) is x_i, not a neighbour
        if bool((torch.isfinite(d).sum(1) < k).any()):
            return None
        idx = torch.sort(d, dim=1, stable=True).indices[:, :k]
        return pool_x[idx], pool_t[idx]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{"x", "t", "f"} as CPU tensors; empty while the bank is."""
        if self.x is None:
            return {}
        return {k: getattr(self, k).detach().cpu().contiguous() for k in ("x", "t", "f")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            self.x = self.t = self.f = None
            return
        if set(state) != {"x", "t", "f"} or len(state["x"]) > self.size:
            raise ValueError(f"not a NeighbourBank state of at most {self.size} items: keys {sorted(state)}")
        self.x, self.t, self.f = state["x"], state["t"], state["f"]

    def add(self, x: torch.Tensor, t: torch.Tensor, f: torch.Tensor) -> None:
        x, t, f = x.detach(), t.detach(), f.detach()
        if self.x is not None:
            x, t, f = torch.cat([self.x, x]), torch.cat([self.t, t]), torch.cat([self.f, f])
        self.x, self.t, self.f = x[-self.size:], t[-self.size:], f[-self.size:]


def _features(feature_fn: FeatureFn, y: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """φ of a batch of outputs (optionally conditioned on inputs by channel concat), flattened."""
    z = y if cond is None else torch.cat([cond, y], 1)
    return feature_fn(z).flatten(1)


def _sq_dists(feature_fn, center, neighbors, cond=None, cond_neighbors=None) -> torch.Tensor:
    """d_ik = ||φ(c_i) − φ(n_i^k)||², shape (B, K); one φ call over center + neighbours."""
    b, k = neighbors.shape[:2]
    y = torch.cat([center, neighbors.flatten(0, 1)])
    c = None if cond is None else torch.cat([cond, cond_neighbors.flatten(0, 1)])
    f = _features(feature_fn, y, c)
    fc, fn = f[:b], f[b:].view(b, k, -1)
    return (fc.unsqueeze(1) - fn).pow(2).sum(-1), fn


def bandwidth(d_teacher: torch.Tensor, cfg: DensityConfig) -> torch.Tensor:
    """Detached h² = median(teacher d) × factor; falls back to the mean when the median is ~0
    (more than half the neighbours coincide) and to 1 when all d are 0 (then every row is uniform
    anyway). Relative guard: φ scales vary by orders of magnitude (≈1e-7 for a freshly initialised D).
    Mode "perplexity": per-row h_i² of shape (B, 1), see ``perplexity_bandwidth``."""
    d = d_teacher.detach()
    if cfg.bandwidth_mode == "perplexity":
        return perplexity_bandwidth(d, cfg.perplexity) * cfg.bandwidth_factor
    if cfg.bandwidth_mode != "median":
        raise ValueError(f"unknown bandwidth_mode {cfg.bandwidth_mode!r}; use 'median' or 'perplexity'")
    med, mean = d.median(), d.mean()
    base = torch.where(med > 1e-3 * mean, med, mean)
    return torch.where(base > 0, base, torch.ones_like(base)) * cfg.bandwidth_factor


def perplexity_bandwidth(d: torch.Tensor, perplexity: float, iters: int = 64) -> torch.Tensor:
    """Per-row h_i² (B, 1) such that softmax_k(−d_ik / 2h_i²) has perplexity exp(H) = ``perplexity``,
    as SNE / t-SNE calibrate their Gaussians (bisection on log β, β = 1/2h², per row). Why: the softmax
    only sees the spread of a row, d_ik − min_k d_ik; a bandwidth from the *level* of d (the median)
    leaves the rows ≈ uniform whenever the K neighbours are about equally far — the usual case in a
    high-dimensional feature space — and the KL then carries no signal. Rows with no spread (all d
    equal) are uniform for any h²; they get the median rule's h²."""
    d = d.detach().double()
    k = d.shape[1]
    if not 1.0 < perplexity < k:
        raise ValueError(f"perplexity must lie in (1, K={k}), got {perplexity}")
    spread = (d.max(1, keepdim=True).values - d.min(1, keepdim=True).values)
    flat = spread <= 1e-12 * d.abs().max().clamp_min(_EPS)
    scale = torch.where(flat, torch.ones_like(spread), spread)
    lo, hi = torch.full_like(spread, -20.0), torch.full_like(spread, 20.0)  # log(β·spread)
    target = torch.log(torch.tensor(perplexity, dtype=d.dtype))
    z = (d - d.min(1, keepdim=True).values) / scale  # in [0, 1]
    for _ in range(iters):
        mid = (lo + hi) / 2
        logp = F.log_softmax(-mid.exp() * z, dim=1)
        entropy = -(logp.exp() * logp).sum(1, keepdim=True)
        too_flat = entropy > target  # β too small
        lo, hi = torch.where(too_flat, mid, lo), torch.where(too_flat, hi, mid)
    beta = ((lo + hi) / 2).exp() / scale
    h2 = (1 / (2 * beta)).to(torch.float32)
    fallback = bandwidth(d.float(), DensityConfig()).expand_as(h2)
    return torch.where(flat, fallback, h2)


def density_loss(student_center: torch.Tensor, student_neighbors: torch.Tensor,
                 teacher_center: torch.Tensor, teacher_neighbors: torch.Tensor,
                 feature_fn: FeatureFn, cfg: DensityConfig,
                 cond: torch.Tensor | None = None, cond_neighbors: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, dict]:
    """Kernel rows, KL and scale term. Centers (B, C, H, W), neighbours (B, K, C, H, W);
    ``cond``/``cond_neighbors`` are the inputs for a conditional φ. ``feature_fn`` must be frozen (see
    ``FrozenFeatures``); teacher tensors are detached here. Returns (loss, stats of floats)."""
    tc, tn = teacher_center.detach(), teacher_neighbors.detach()
    with torch.no_grad():
        d_t, fn_t = _sq_dists(feature_fn, tc, tn, cond, cond_neighbors)
    d_s, fn_s = _sq_dists(feature_fn, student_center, student_neighbors, cond, cond_neighbors)
    h2 = bandwidth(d_t, cfg)
    log_p = F.log_softmax(-d_t / (2 * h2), dim=1)
    log_q = F.log_softmax(-d_s / (2 * h2), dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean()
    scale = (d_t - d_s).abs().mean() / d_t.mean().clamp_min(_EPS)
    loss = kl + cfg.gamma * scale
    stats = {"kl": kl.item(), "scale": scale.item(), "h2": h2.mean().item(),
             "d_teacher": d_t.mean().item(), "d_student": d_s.detach().mean().item()}
    if cfg.kde_weight:
        # −log (1/K) Σ_j exp(−||φ(n̂_ik) − φ(n_ij)||² / 2h²), mean over i, k: student neighbours
        # should be likely under the teacher neighbourhood's KDE. Not 0 at G_S ≡ G_T.
        d_x = (fn_s.unsqueeze(2) - fn_t.unsqueeze(1)).pow(2).sum(-1)  # (B, K, K)
        k = d_x.shape[-1]
        h2_x = h2.unsqueeze(-1) if h2.dim() else h2  # per-row h² → (B, 1, 1)
        kde = -(torch.logsumexp(-d_x / (2 * h2_x), dim=2) - torch.log(torch.tensor(float(k)))).mean()
        loss = loss + cfg.kde_weight * kde
        stats["kde"] = kde.item()
    stats["loss"] = loss.item()
    return loss, stats


class FrozenFeatures(nn.Module):
    """Private eval-mode copy of a discriminator with no trainable parameters: gradients flow to its
    input only, never to the original D, and BatchNorm stats are neither used per batch nor updated.
    φ(z) = global average pool of ``disc.features(z)``."""

    def __init__(self, disc: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(disc).eval().requires_grad_(False)
        self.in_channels = getattr(disc, "in_channels", None)

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.features(z).mean((2, 3))


def neighborhood_batches(teacher_neighbors: torch.Tensor, student_neighbors: torch.Tensor,
                         x_neighbors: torch.Tensor | None = None,
                         teacher_center: torch.Tensor | None = None,
                         student_center: torch.Tensor | None = None,
                         x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbourhood adversarial term: (real, fake) batches of shape (B·K, C', H, W) for the D.
    real = teacher neighbours (detached), fake = student neighbours (grad kept; detach for the D
    step). With ``x_neighbors`` (pix2pix) each is cat(x_ik, y_ik) on channels; with centers each side
    also carries its own center output (then x too, if conditional): cat([x_ik], [x_i, c_i], y_ik)."""
    b, k = teacher_neighbors.shape[:2]

    def rep(t):  # (B, ...) → (B·K, ...) aligned with the flattened neighbours
        return t.unsqueeze(1).expand(b, k, *t.shape[1:]).flatten(0, 1)

    def side(yn, center):
        parts = [] if x_neighbors is None else [x_neighbors.flatten(0, 1)]
        if center is not None:
            parts += ([] if x is None else [rep(x)]) + [rep(center)]
        return torch.cat(parts + [yn.flatten(0, 1)], 1)

    if (teacher_center is None) != (student_center is None):
        raise ValueError("give both teacher_center and student_center, or neither")
    real = side(teacher_neighbors.detach(),
                None if teacher_center is None else teacher_center.detach())
    return real, side(student_neighbors, student_center)


@dataclass
class DensityResult:
    """Loss, stats and every tensor of one evaluation, so the trainer reuses the forwards."""
    loss: torch.Tensor
    stats: dict
    x: torch.Tensor
    x_neighbors: torch.Tensor
    teacher_center: torch.Tensor
    teacher_neighbors: torch.Tensor
    student_center: torch.Tensor
    student_neighbors: torch.Tensor
    conditional: bool
    adv_center: bool

    def adversarial_batches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, fake) for the neighbourhood D, per the config's conditional / adv_center."""
        cond = self.conditional
        return neighborhood_batches(
            self.teacher_neighbors, self.student_neighbors, self.x_neighbors if cond else None,
            self.teacher_center if self.adv_center else None,
            self.student_center if self.adv_center else None, self.x if cond else None)


class DensityObjective:
    """Teacher G (kept frozen by the caller, in eval mode) + feature network → density loss of a
    student on a batch x. ``features``: a discriminator (with ``cfg.feature == "disc"``; wrapped in
    ``FrozenFeatures``) or a callable φ; a callable ``cfg.feature`` takes precedence."""

    def __init__(self, teacher: nn.Module, features: nn.Module | FeatureFn | None = None,
                 cfg: DensityConfig | None = None):
        self.teacher, self.cfg = teacher, cfg or DensityConfig()
        f = self.cfg.feature
        if callable(f):
            self.feature_fn = f
        elif f == "disc":
            if not hasattr(features, "features"):
                if callable(features):
                    self.feature_fn = features
                else:
                    raise ValueError('feature="disc" needs a discriminator with .features(x)')
            else:
                self.feature_fn = FrozenFeatures(features)
        else:
            raise ValueError(f"unknown feature {f!r}; use 'disc' or a callable")
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.bank = NeighbourBank(self.cfg.bank_size) if self.cfg.neighbors == "memory" else None

    def _conditional(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        if self.cfg.conditional is not None:
            return self.cfg.conditional
        nc = getattr(self.feature_fn, "in_channels", None)
        return nc is not None and nc == x.shape[1] + y.shape[1]

    def __call__(self, student: nn.Module, x: torch.Tensor,
                 generator: torch.Generator | None = None) -> DensityResult:
        """One neighbourhood per input (jittered copies, or the nearest bank inputs once the bank holds
        K candidates: until then, jitter); one teacher (no grad) and one student forward over centers +
        neighbours together (bank neighbours reuse their stored teacher outputs)."""
        found = None
        if self.bank is not None:
            with torch.no_grad():
                tc = self.teacher(x)
                cond = self._conditional(x, tc)
                f = _features(self.feature_fn, tc, x if cond else None)
            found = self.bank.nearest(x, tc, f, self.cfg.k_neighbors)
            self.bank.add(x, tc, f)
        if found is None:
            xn = make_neighbors(x, self.cfg, generator or self.generator)
            b, k = xn.shape[:2]
            inputs = torch.cat([x, xn.flatten(0, 1)])
            with torch.no_grad():
                t = self.teacher(inputs)
            tc, tn = t[:b], t[b:].view(b, k, *t.shape[1:])
        else:
            xn, tn = found
            b, k = xn.shape[:2]
            inputs = torch.cat([x, xn.flatten(0, 1)])
        s = student(inputs)
        sc, sn = s[:b], s[b:].view(b, k, *s.shape[1:])
        cond = self._conditional(x, tc)
        loss, stats = density_loss(sc, sn, tc, tn, self.feature_fn, self.cfg,
                                   x if cond else None, xn if cond else None)
        return DensityResult(loss, stats, x, xn, tc, tn, sc, sn, cond, self.cfg.adv_center)
