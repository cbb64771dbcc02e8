"""Single-agent Gymnasium env for one network's channel selection (AMC-style, DESIGN "Environment").

One step = the keep ratio of one channel group (Box [0, 1] mapped to [lbound, 1]), clipped so the
MACs target stays reachable; the reward arrives at the episode's end from the backend, which scores
this network's spec together with a fixed ``peer_spec`` for the other network.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.episode import GroupEpisode
from envs.problem import Problem, build_problem
from envs.task import OBS_DIM


class ChannelPruningEnv(gym.Env):
    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    role = "generator"  # which network this env prunes; the other one is the (fixed) peer

    def __init__(self, problem: Problem | None = None, config: dict | None = None,
                 peer_spec: dict | None = None, render_mode: str | None = None):
        self.problem = problem if problem is not None else build_problem(config)
        self.task = getattr(self.problem, self.role)
        self.episode = GroupEpisode(self.task, self.problem.config.fill_budget)
        self.peer_spec = dict(peer_spec or {})  # default: the peer network unpruned
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.last_reward, self.last_info = 0.0, {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode.reset()
        return self.episode.observe({}, self.last_reward), {}

    def step(self, action):
        count = self.episode.act(action)
        if not self.episode.done:
            return self.episode.observe({}, self.last_reward), 0.0, False, False, {"count": count}
        counts = self.episode.final_counts()
        spec = self.task.spec(counts)
        pair = (spec, self.peer_spec) if self.role == "generator" else (self.peer_spec, spec)
        scores = self.problem.backend.evaluate(*pair)
        reward = float(getattr(scores, self.role))
        self.last_reward = reward
        self.last_info = {"counts": counts, "ratios": self.task.ratios(counts),
                          "macs": self.task.macs(counts), "macs_ratio": self.task.macs(counts) / self.task.full_macs,
                          "target_macs": self.task.target_macs, "scores": scores.to_dict()}
        obs = self.task.observation(self.episode.length - 1, counts, self.episode.prev_action, {}, reward)
        return obs, reward, True, False, self.last_info

    def render(self):
        if self.render_mode == "ansi":
            c = self.episode.counts
            return " ".join(f"{n}:{c[n]}/{g.size}" for n, g in zip(self.task.names, self.task.groups) if n in c)
        return None
