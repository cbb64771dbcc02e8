"""Two cooperating pruning agents trained by RLlib PPO (new API stack): ``generator`` and
``discriminator`` policies over ``envs.multi_agent.MultiAgentPruningEnv``.

The driver loop: ``algo.train()`` → drain the episodes the env runners finished (``EpisodeLog``
actor) → greedy rollout of both policies (their deterministic decisions) → keep the best pair →
hand a per-iteration summary to ``on_iteration`` (the CLI logs it to MLflow) → checkpoint every
``ckpt_every`` iterations (``save_to_path`` into a temp dir, then rename: a kill never leaves a half
checkpoint).  ``resume`` restores the algorithm and the search state from the newest checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from agents.cluster import check_cpus, init_ray
from gan.determinism import ProcessSettings
from gan.progress import progress
from envs.multi_agent import AGENTS, MultiAgentPruningEnv
from envs import episode_log
from envs.backends.remote import start_pool
from envs.problem import problem_backend

CKPT_PREFIX = "iter_"
STATE = "search_state.json"


@dataclass
class MarlConfig:
    iterations: int = 10
    beta: float = 0.5                  # peer-reward weight (0: no exchange, the ablation)
    peer_observation: bool = True      # the peer's last decisions and reward in each observation
    episodes_per_iteration: int = 8
    minibatch_size: int = 32
    num_epochs: int = 8
    lr: float = 1e-3
    gamma: float = 1.0                 # AMC: undiscounted, reward at the episode's end
    entropy_coeff: float = 0.0
    hidden: tuple = (64, 64)
    initial_log_std: float | None = None  # a state-free log σ starting here (None: σ is an output of the net)
    recenter: bool = False             # actions scale the best pair found so far instead of the L1 prior
    num_env_runners: int = 0           # 0: sample in the driver process
    num_cpus_per_env_runner: float = 1
    num_gpus_per_env_runner: float = 0  # > 0: the in-runner evaluations' K fine-tune steps run on it
    backend_workers: int = 0           # > 0: evaluations on this many Ray actors (envs.backends.remote)
    num_cpus_per_backend_worker: float = 1
    num_gpus_per_backend_worker: float = 0
    num_gpus_per_learner: float = 0.0
    ckpt_every: int = 1
    seed: int = 0
    address: str | None = None         # Ray cluster address (None: a local Ray instance)
    extra: dict = field(default_factory=dict)  # further PPOConfig.training() settings (e.g. clip_param)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def checkpoints(out: Path) -> list[Path]:
    root = Path(out) / "checkpoints"
    found = [p for p in root.glob(f"{CKPT_PREFIX}*") if p.name[len(CKPT_PREFIX):].isdigit()
             and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CKPT_PREFIX):]))


def better(rec: dict, best: dict | None) -> bool:
    """The best pair = highest generator own score (fidelity to the teacher); D's decides ties.  Every
    search (MARL, random) picks by this one rule."""
    if best is None:
        return True
    return (rec["own"]["generator"], rec["own"]["discriminator"]) > (best["own"]["generator"],
                                                                      best["own"]["discriminator"])


def candidate_key(rec: dict) -> str:
    """One candidate pair = its per-group counts (saliency picks the channels): the unit that a search's
    evaluation budget counts (a repeat is served from the backend's cache)."""
    return json.dumps([sorted(rec["generator_counts"].items()), sorted(rec["discriminator_counts"].items())])


def greedy_action(module, obs: np.ndarray, space) -> np.ndarray:
    """A policy's deterministic action for one observation, in the env's action bounds (RLlib
    normalises Box actions to [-1, 1]; unsquash as its module-to-env connector does)."""
    import torch

    out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)[None]})
    dist = module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"])
    a = dist.to_deterministic().sample()[0].detach().cpu().numpy()
    a = np.clip(a, -1.0, 1.0)
    return space.low + (a + 1.0) * (space.high - space.low) / 2.0


def run_episode(env: MultiAgentPruningEnv, act: Callable[[str, np.ndarray], np.ndarray]) -> dict:
    """One episode outside RLlib, ``act(agent, observation) -> action`` at every step; returns the env's
    record (the greedy replay here, random search in ``agents.baselines.random_search``)."""
    obs, _ = env.reset()
    while True:
        obs, _, term, _, _ = env.step({a: act(a, o) for a, o in obs.items()})
        if term["__all__"]:
            return env.records[-1]


def greedy_episode(env: MultiAgentPruningEnv, modules: dict) -> dict:
    """Run one episode with every agent's deterministic action; returns the env's record."""
    return run_episode(env, lambda a, o: greedy_action(modules[a], o, env.action_spaces[a]))


class MarlSearch:
    """Build, train, checkpoint and resume the two-agent PPO search for one problem."""

    def __init__(self, problem_config: dict, cfg: MarlConfig, out: Path,
                 on_iteration: Callable[[dict], None] | None = None, quiet: bool = False):
        self.problem_config, self.cfg, self.out = dict(problem_config), cfg, Path(out)
        self.on_iteration, self.quiet = on_iteration, quiet
        self.iteration, self.best, self.history = 0, None, []
        self.greedy, self.scored, self.cpu_s = None, set(), 0.0  # final policies' pick; candidates scored
        run_hash = hashlib.sha1(str(self.out.resolve()).encode()).hexdigest()[:10]
        self.log_name = "ganprune-episodes-" + run_hash
        if cfg.backend_workers:
            self.problem_config.update(backend_workers=cfg.backend_workers, backend_pool="ganprune-backend-" + run_hash)
        self.algo, self.backend_actors = None, []

    # ------------------------------------------------------------------ set-up

    def env_config(self) -> dict:
        return {**self.problem_config, "beta": self.cfg.beta, "peer_observation": self.cfg.peer_observation,
                "episode_log": self.log_name}

    def algorithm_config(self):
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        c = self.cfg
        steps = len(self.driver_env.problem.generator.names) + len(self.driver_env.problem.discriminator.names)
        batch = max(steps, c.episodes_per_iteration * steps)
        return (PPOConfig()
                .environment(MultiAgentPruningEnv, env_config=self.env_config(), disable_env_checking=True)
                .env_runners(num_env_runners=c.num_env_runners, num_cpus_per_env_runner=c.num_cpus_per_env_runner,
                             num_gpus_per_env_runner=c.num_gpus_per_env_runner,
                             batch_mode="complete_episodes", rollout_fragment_length="auto")
                .learners(num_learners=0, num_gpus_per_learner=c.num_gpus_per_learner)
                .multi_agent(policies=list(AGENTS), policy_mapping_fn=_map_agent)  # a set: module order (and each
                # policy's initial weights) followed the per-process string hash seed (issue #18)
                .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={a: RLModuleSpec() for a in AGENTS}),
                           model_config={"fcnet_hiddens": list(c.hidden), "vf_share_layers": False,
                                         "free_log_std": c.initial_log_std is not None})
                .training(**{"train_batch_size_per_learner": batch, "minibatch_size": min(c.minibatch_size, batch),
                             "num_epochs": c.num_epochs, "lr": c.lr, "gamma": c.gamma, "lambda_": 0.95,
                             "entropy_coeff": c.entropy_coeff, **c.extra})
                .fault_tolerance(restart_failed_env_runners=True)
                .debugging(seed=c.seed, log_level="ERROR"))

    def _init_ray(self) -> None:
        init_ray(self.cfg.address)
        c = self.cfg
        check_cpus(c.num_env_runners * c.num_cpus_per_env_runner + c.backend_workers * c.num_cpus_per_backend_worker,
                   c.address)

    def setup(self, resume: bool = False) -> None:
        self._init_ray()
        self.log_actor = episode_log.start(self.log_name)
        if self.cfg.backend_workers:
            self.backend_actors = start_pool(self.problem_config, self.problem_config["backend_pool"],
                                             self.cfg.backend_workers, self.cfg.num_cpus_per_backend_worker,
                                             self.cfg.num_gpus_per_backend_worker, build=problem_backend)
        self.driver_env = MultiAgentPruningEnv({**self.env_config(), "episode_log": None})
        last = checkpoints(self.out)[-1] if resume and checkpoints(self.out) else None
        settings = ProcessSettings.current()  # RLlib's seeding turns deterministic algorithms on for good
        if last is not None:
            from ray.rllib.algorithms.algorithm import Algorithm

            self.algo = Algorithm.from_checkpoint(str(last.resolve()))
            state = json.loads((last / STATE).read_text())
            self.iteration, self.best, self.history = state["iteration"], state["best"], state["history"]
            self.greedy, self.cpu_s = state.get("greedy"), state.get("cpu_s", 0.0)
            self.scored = set(state.get("scored", []))
            if self.cfg.recenter and self.best is not None:
                self.recenter()
        else:
            self.algo = self.algorithm_config().build_algo()
            if self.cfg.initial_log_std is not None:
                set_log_std(self.algo, self.cfg.initial_log_std)
        settings.apply()  # ... the command's settings hold for the whole search (gan.determinism)
        self.resumed_from = last

    # ------------------------------------------------------------------ the loop

    def recenter(self) -> None:
        """Every env (the driver's and each env runner's) explores around the best pair found so far."""
        ratios = {a: self.best[f"{a}_ratios"] for a in AGENTS}

        def apply(runner):
            env = runner.env  # None on the driver's runner when remote runners sample
            for e in ([] if env is None else getattr(env, "envs", [env])):
                e.unwrapped.recenter(ratios)

        self.driver_env.recenter(ratios)
        self.algo.env_runner_group.foreach_env_runner(apply, local_env_runner=True)

    def modules(self) -> dict:
        return {a: self.algo.get_module(a) for a in AGENTS}

    def step(self) -> dict:
        import ray

        t0, cpu0 = time.perf_counter(), time.process_time()
        result = self.algo.train()
        train_s = time.perf_counter() - t0
        records = ray.get(self.log_actor.drain.remote())
        greedy = greedy_episode(self.driver_env, self.modules())
        greedy["source"] = "greedy"
        self.cpu_s += time.process_time() - cpu0
        before = self.best
        for rec in records + [greedy]:
            self.scored.add(candidate_key(rec))
            if better(rec, self.best):
                self.best = {**rec, "iteration": self.iteration + 1}
        if self.cfg.recenter and self.best is not before:
            self.recenter()
        self.iteration += 1
        self.greedy = {**greedy, "iteration": self.iteration}
        summary = self._summarize(records, greedy, result, train_s)
        self.history.append(summary)
        if self.cfg.ckpt_every and (self.iteration % self.cfg.ckpt_every == 0
                                    or self.iteration == self.cfg.iterations):
            self.save()
        if self.on_iteration is not None:
            self.on_iteration(summary)
        return summary

    def _summarize(self, records: list[dict], greedy: dict, result: dict, train_s: float) -> dict:
        def mean(xs):
            xs = [float(x) for x in xs]
            return float(np.mean(xs)) if xs else float("nan")

        recs = records or [greedy]
        s = {"iteration": self.iteration, "episodes": len(records), "evaluations": len(self.scored),
             "train_s": round(train_s, 3),
             "backend_s": round(sum(r["scores"]["cost_s"] for r in records), 3),
             "backend_cached": sum(bool(r["scores"]["cached"]) for r in records),
             "best_generator_own": self.best["own"]["generator"],
             "best_psnr_vs_teacher": self.best["scores"]["metrics"].get("psnr_vs_teacher"),
             "best_generator_macs_ratio": self.best["generator_macs_ratio"]}
        for a in AGENTS:
            s[f"{a}_return"] = mean(r["rewards"][a] for r in recs)
            s[f"{a}_own"] = mean(r["own"][a] for r in recs)
            s[f"{a}_macs_ratio"] = mean(r[f"{a}_macs_ratio"] for r in recs)
            s[f"{a}_greedy_own"] = greedy["own"][a]
            s[f"{a}_greedy_ratios"] = greedy[f"{a}_ratios"]
            s[f"{a}_mean_ratios"] = {n: mean(r[f"{a}_ratios"][n] for r in recs) for n in greedy[f"{a}_ratios"]}
        m = [r["scores"]["metrics"] for r in recs]
        for k in ("psnr_vs_teacher", "density", "rec_l1", "d_loss", "d_loss_teacher", "d_balance"):
            s[k] = mean(x[k] for x in m if k in x)
        # G/D balance: the pruned D's loss on pruned-G samples over the teacher D's on teacher samples
        s["gd_balance_ratio"] = s["d_loss"] / s["d_loss_teacher"] if s["d_loss_teacher"] else float("nan")
        p = self.driver_env.problem
        decisions = len(records) * (len(p.generator.names) + len(p.discriminator.names))
        s["env_steps_per_s"] = decisions / train_s if train_s > 0 else float("nan")  # the search's throughput
        s["episodes_per_s"] = len(records) / train_s if train_s > 0 else float("nan")
        s["evaluations_per_s"] = (len(records) - s["backend_cached"]) / train_s if train_s > 0 else float("nan")
        if self.cfg.num_env_runners:  # a killed runner shows as a dip until RLlib has restarted it
            s["healthy_env_runners"] = self.algo.env_runner_group.num_healthy_remote_workers()
        learners = result.get("learners", {})
        for a in AGENTS:
            for k in ("policy_loss", "vf_loss", "entropy"):
                v = learners.get(a, {}).get(k)
                if v is not None:
                    s[f"{a}_{k}"] = float(v)
        return s

    def run(self) -> dict:
        bar = progress(total=self.cfg.iterations, initial=self.iteration, desc="marl", quiet=self.quiet)
        try:
            while self.iteration < self.cfg.iterations:
                s = self.step()
                bar.set_postfix(g=f"{s['generator_own']:.3f}", d=f"{s['discriminator_own']:.3f}",
                                best=f"{s['best_generator_own']:.3f}")
                bar.update(1)
        finally:
            bar.close()
        return {"iterations": self.iteration, "best": self.best, "greedy": self.greedy, "history": self.history,
                "evaluations": len(self.scored), "cpu_s": self.cpu_s}

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        """``checkpoints/iter_N/``: the RLlib checkpoint + search state, written to a temp dir and
        renamed; older checkpoints beyond the newest two are removed."""
        root = self.out / "checkpoints"
        final = root / f"{CKPT_PREFIX}{self.iteration}"
        tmp = root / f".tmp-{CKPT_PREFIX}{self.iteration}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.algo.save_to_path(str(tmp.resolve()))
        (tmp / STATE).write_text(json.dumps({"iteration": self.iteration, "best": self.best,
                                             "greedy": self.greedy, "scored": sorted(self.scored),
                                             "cpu_s": self.cpu_s, "history": self.history,
                                             "config": self.cfg.to_dict(), "problem": self.problem_config},
                                            default=float))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(self.out)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def close(self) -> None:
        if self.algo is not None:
            self.algo.stop()
            self.algo = None
        if self.backend_actors:
            import ray

            for a in self.backend_actors:
                ray.kill(a, no_restart=True)
            self.backend_actors = []


def set_log_std(algo, value: float) -> None:
    """Start every policy's state-free log σ at ``value`` (in RLlib's normalised action space, where the
    env's [0, 1] is [−1, 1]), on the learner and the env runners alike."""
    import torch

    def fill(learner):
        for a in AGENTS:
            for name, p in learner.module[a].named_parameters():
                if name.endswith("log_std"):
                    with torch.no_grad():
                        p.fill_(float(value))

    algo.learner_group.foreach_learner(fill)
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)


def _map_agent(agent_id, episode=None, **kwargs):
    """Each agent is its own policy."""
    return agent_id
