"""Plots of a pruning search that people would rather look at than read."""
from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return path


def keep_ratios(history: list[dict], path, agents=("generator", "discriminator")) -> Path:
    """Per-group keep ratio over iterations, one panel per agent (the pruning dynamics): solid =
    mean of the sampled episodes, dashed = the policy's deterministic decision."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(agents), figsize=(6 * len(agents), 3.6), squeeze=False)
    its = [h["iteration"] for h in history]
    for ax, a in zip(axes[0], agents):
        groups = list(history[-1][f"{a}_mean_ratios"]) if history else []
        cmap = plt.get_cmap("tab20")
        for i, g in enumerate(groups):
            c = cmap(i % 20)
            ax.plot(its, [h[f"{a}_mean_ratios"].get(g) for h in history], color=c, lw=1.4, label=g)
            ax.plot(its, [h[f"{a}_greedy_ratios"].get(g) for h in history], color=c, lw=0.8, ls="--")
        ax.set_title(f"{a}: keep ratio per group", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def gd_balance(history: list[dict], path) -> Path:
    """G/D balance over iterations: the pruned D's loss on pruned-G samples vs the teacher D's on
    teacher samples, and each agent's own score and exchanged return."""
    plt = _plt()
    its = [h["iteration"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    axes[0].plot(its, [h["d_loss"] for h in history], label="L_D(D_S; G_S)")
    axes[0].plot(its, [h["d_loss_teacher"] for h in history], ls="--", label="L_D(D_T; G_T)")
    axes[0].set_title("G/D balance", fontsize=10)
    for a, ls in (("generator", "-"), ("discriminator", "-")):
        axes[1].plot(its, [h[f"{a}_own"] for h in history], ls=ls, label=f"{a} own")
        axes[2].plot(its, [h[f"{a}_return"] for h in history], ls=ls, label=f"{a} return (with peer)")
    axes[1].plot(its, [h["best_generator_own"] for h in history], ls=":", label="best generator")
    axes[1].set_title("own scores", fontsize=10)
    axes[2].set_title("returns (own + β·peer)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def search_history(history: list[dict], out) -> None:
    """The search's plots in ``out``: keep ratios per group and the G/D balance over iterations."""
    keep_ratios(history, Path(out) / "keep_ratios.png")
    gd_balance(history, Path(out) / "gd_balance.png")


def latency_model_error(rows: list[dict], path, title: str = "") -> Path:
    """Predicted against measured latency of random pruned specs, with the ±10 % band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    meas = [r["measured_ms"] for r in rows]
    ax.scatter(meas, [r["predicted_ms"] for r in rows], s=14)
    hi = max(max(meas), max(r["predicted_ms"] for r in rows)) * 1.05
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="0.85", label="±10 %")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="measured ms", ylabel="predicted ms", title=title)
    ax.legend(loc="upper left")
    return _save(fig, path)
