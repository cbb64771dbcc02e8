"""Summing loss hooks: the trainer calls one ``extra_g_loss`` hook; objectives and add-ons are several."""
from __future__ import annotations

from typing import Callable


def combine(*hooks: Callable | None) -> Callable | None:
    """Sum ``extra_g_loss`` hooks: losses added, stats merged (a clashing name gets the hook's index);
    ``None`` skipped."""
    hooks = [h for h in hooks if h is not None]
    if len(hooks) <= 1:
        return hooks[0] if hooks else None

    def extra(batch, fake, trainer):
        total, stats = None, {}
        for i, h in enumerate(hooks):
            loss, st = h(batch, fake, trainer)
            total = loss if total is None else total + loss
            stats.update({(f"{k}_{i}" if k in stats else k): v for k, v in st.items()})
        return total, stats

    return extra
