"""How balanced and stable a G/D fine-tune was, from the trainer's per-step history (issue #15 item 3;
docs/methods.md, "G/D balance in fine-tuning").

MGGC's claim is that a D pruned with G (by its own agent, with peer feedback) keeps the pair balanced.
Three numbers per run say whether it did:

* the **D/G loss ratio** r_t = loss_d / loss_g per step: its drift (least-squares slope per 100 steps)
  and its variance over the second half (after the start-up transient);
* **D accuracy** a_t: the mean of the fraction of real patches D scores above the GAN loss's decision
  threshold and the fraction of fake patches it scores below it (``d_acc`` in the history);
* **saturated steps**: how many steps D separates (nearly) every patch, a_t ≥ ``saturation`` (D has
  won; G's adversarial gradient vanishes or explodes there).
"""
from __future__ import annotations

import math

import numpy as np

SATURATION = 0.99


def balance(history: list[dict], saturation: float = SATURATION) -> dict:
    """Stability figures of one fine-tune's ``history`` (records with ``step``, ``loss_d``, ``loss_g``
    and ``d_acc``; logged every step for per-step figures). Records without ``d_acc`` give NaN accuracy
    figures."""
    if not history:
        raise ValueError("an empty history has no balance; fine-tune at least one step")
    steps = np.array([h["step"] for h in history], dtype=float)
    ratio = np.array([h["loss_d"] / h["loss_g"] if h["loss_g"] else math.nan for h in history])
    late = ratio[len(ratio) // 2:]
    drift = float(np.polyfit(steps, ratio, 1)[0] * 100) if len(ratio) > 1 and np.isfinite(ratio).all() else math.nan
    acc = np.array([h.get("d_acc", math.nan) for h in history], dtype=float)
    every = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
    return {"ratio_mean": float(np.mean(ratio)), "ratio_drift_per_100": drift,
            "ratio_var_late": float(np.var(late)), "d_acc_mean": float(np.mean(acc)),
            "d_saturated_steps": int(round(float(np.sum(acc >= saturation)) * every)) if np.isfinite(acc).all()
            else None,
            "steps": int(steps[-1]), "logged_every": every}
