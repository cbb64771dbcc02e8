"""The state machine of one agent's episode: one step per channel group, then the finished counts.

Shared by the single-agent Gymnasium envs and the RLlib multi-agent env, so both take exactly the
same decisions from the same actions.
"""
from __future__ import annotations

import numpy as np

from envs.task import PruningTask


class GroupEpisode:
    def __init__(self, task: PruningTask, fill_budget: bool = True):
        self.task, self.fill_budget = task, fill_budget
        self.reset()

    def reset(self) -> None:
        self.t, self.counts, self.actions, self.prev_action = 0, {}, [], 1.0

    @property
    def length(self) -> int:
        return len(self.task.names)

    @property
    def done(self) -> bool:
        return self.t >= self.length

    def observe(self, peer: dict, own_last_reward: float) -> np.ndarray:
        return self.task.observation(self.t, self.counts, self.prev_action, peer, own_last_reward)

    def act(self, action) -> int:
        """Apply the keep-ratio action of the current group; returns the (budget-clipped) count."""
        if self.done:
            raise RuntimeError("episode finished: call reset()")
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0, 1.0))
        k = self.task.count_for(self.t, a, self.counts)
        self.counts[self.task.names[self.t]] = k
        self.actions.append(a)
        self.prev_action, self.t = a, self.t + 1
        return k

    def final_counts(self) -> dict[str, int]:
        """The decided counts, with the unused budget spent when ``fill_budget`` (see PruningTask.fill)."""
        if not self.done:
            raise RuntimeError("episode not finished")
        return self.task.fill(self.counts) if self.fill_budget else dict(self.counts)

    def summary(self, counts: dict[str, int]) -> dict:
        """What the peer sees: mean keep ratio (channel-weighted) and MACs fraction."""
        task = self.task
        kept = sum(counts.values())
        total = sum(g.size for g in task.groups)
        return {"keep": kept / total, "macs": task.macs(counts) / task.full_macs}
