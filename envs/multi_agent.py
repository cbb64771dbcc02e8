"""RLlib two-agent env (DESIGN "Multi-agent coupling"): ``generator`` then ``discriminator`` decide
their keep ratios in one episode; one backend call scores the pair; rewards are exchanged.

Turn order: the generator walks its groups, then the discriminator walks its groups (seeing the
generator's decisions of this episode in its peer features); the generator sees the
discriminator's decisions and reward of the previous episode.  At the end both get
``own + β × peer's own`` (β = 0 disables the exchange: the ablation).
"""
from __future__ import annotations

import os

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from envs.episode import GroupEpisode
from envs.problem import Problem, build_problem
from envs.task import OBS_DIM

AGENTS = ("generator", "discriminator")
PEER = {"generator": "discriminator", "discriminator": "generator"}


def exchange(own: dict[str, float], beta: float) -> dict[str, float]:
    """r̃_a = r_a + β · r_peer(a) (docs/methods.md, "MARL search")."""
    return {a: own[a] + beta * own[PEER[a]] for a in AGENTS}


class MultiAgentPruningEnv(MultiAgentEnv):
    """``config``: ProblemConfig fields plus ``beta`` (peer weight), ``peer_observation`` (bool) and
    ``episode_log`` (name of an ``EpisodeLog`` Ray actor that collects finished episodes)."""

    def __init__(self, config: dict | None = None, problem: Problem | None = None):
        super().__init__()
        config = dict(config or {})
        self.beta = float(config.pop("beta", 0.5))
        self.peer_observation = bool(config.pop("peer_observation", True))
        self.log_name = config.pop("episode_log", None)
        self.problem = problem if problem is not None else build_problem(config)
        self.episodes = {a: GroupEpisode(getattr(self.problem, a), self.problem.config.fill_budget)
                         for a in AGENTS}
        self.agents = self.possible_agents = list(AGENTS)
        box = spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
        self.observation_spaces = {a: box for a in AGENTS}
        self.action_spaces = {a: spaces.Box(0.0, 1.0, (1,), np.float32) for a in AGENTS}
        self.peer_view = {a: {} for a in AGENTS}       # what each agent sees of its peer
        self.last_own = dict.fromkeys(AGENTS, 0.0)
        self.turn, self.n_episodes, self.records = "generator", 0, []
        self._log = None

    # ------------------------------------------------------------------ helpers

    def _obs(self, agent: str) -> np.ndarray:
        peer = self.peer_view[agent] if self.peer_observation else {}
        return self.episodes[agent].observe(peer, self.last_own[agent])

    def _publish(self, record: dict) -> None:
        """Keep the record and, under Ray with an ``episode_log`` name, send it to the driver."""
        self.records.append(record)
        del self.records[:-100]
        if not self.log_name:
            return
        import ray

        if self._log is None:
            if not ray.is_initialized():
                return
            self._log = ray.get_actor(self.log_name)
        ray.get(self._log.add.remote(record))

    def recenter(self, ratios: dict[str, dict[str, float]]) -> None:
        """Per agent, the allocation a = 0.5 replays from now on (``PruningTask.recenter``)."""
        for a, r in ratios.items():
            getattr(self.problem, a).recenter(r)

    # ------------------------------------------------------------------ MultiAgentEnv API

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        for ep in self.episodes.values():
            ep.reset()
        self.turn = "generator"
        return {"generator": self._obs("generator")}, {"generator": {}}

    def step(self, action_dict):
        agent = self.turn
        if agent not in action_dict:
            raise ValueError(f"expected an action of {agent!r}, got {sorted(action_dict)}")
        self.episodes[agent].act(action_dict[agent])
        if not self.episodes[agent].done:
            return {agent: self._obs(agent)}, {agent: 0.0}, {"__all__": False}, {"__all__": False}, {}
        if agent == "generator":
            g = self.episodes["generator"]
            self.peer_view["discriminator"] = {**g.summary(g.counts), "reward": self.last_own["generator"]}
            self.turn = "discriminator"
            return ({"discriminator": self._obs("discriminator")}, {"generator": 0.0},
                    {"__all__": False}, {"__all__": False}, {})
        return self._finish()

    def _finish(self):
        counts = {a: self.episodes[a].final_counts() for a in AGENTS}
        tasks = {a: getattr(self.problem, a) for a in AGENTS}
        specs = {a: tasks[a].spec(counts[a]) for a in AGENTS}
        scores = self.problem.backend.evaluate(specs["generator"], specs["discriminator"])
        own = {"generator": float(scores.generator), "discriminator": float(scores.discriminator)}
        rewards = exchange(own, self.beta)
        summaries = {a: self.episodes[a].summary(counts[a]) for a in AGENTS}
        for a in AGENTS:
            self.peer_view[a] = {**summaries[PEER[a]], "reward": own[PEER[a]]}
        self.last_own = own
        self.n_episodes += 1
        record = {"episode": self.n_episodes, "pid": os.getpid(), "beta": self.beta,
                  "rewards": rewards, "own": own, "scores": scores.to_dict(),
                  **{f"{a}_counts": counts[a] for a in AGENTS},
                  **{f"{a}_ratios": tasks[a].ratios(counts[a]) for a in AGENTS},
                  **{f"{a}_macs": tasks[a].macs(counts[a]) for a in AGENTS},
                  **{f"{a}_macs_ratio": tasks[a].macs(counts[a]) / tasks[a].full_macs for a in AGENTS},
                  "generator_actions": list(self.episodes["generator"].actions),
                  "discriminator_actions": list(self.episodes["discriminator"].actions)}
        self._publish(record)
        obs = {a: tasks[a].observation(len(tasks[a].names) - 1, counts[a], self.episodes[a].prev_action,
                                       self.peer_view[a] if self.peer_observation else {}, own[a])
               for a in AGENTS}
        done = {a: True for a in AGENTS}
        return obs, rewards, {**done, "__all__": True}, {a: False for a in AGENTS} | {"__all__": False}, \
            {a: {"scores": record["scores"], "counts": counts[a]} for a in AGENTS}
