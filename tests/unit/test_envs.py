"""Gymnasium channel-selection envs, the two-agent env and the local backend, at tiny sizes."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs.backends import LocalBackend, LocalConfig
from gan.losses.density import DensityConfig
from envs.episode import GroupEpisode
from envs.multi_agent import MultiAgentPruningEnv, exchange
from envs.problem import build_problem, tiny_random_pair
from envs.task import OBS_DIM, PruningTask
from gan.pruning.saliency import saliency
from gan.pruning.targets import TargetError, spec_macs


@pytest.fixture(scope="module")
def problem():
    return build_problem({"macs_target": 0.3})


def _run(env_or_ep, actions):
    for a in actions:
        env_or_ep.act(a)


@pytest.mark.parametrize("env_id", [envs.GENERATOR_ENV_ID, envs.DISCRIMINATOR_ENV_ID])
def test_registered_envs_pass_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,) and env.observation_space.contains(obs)
    done, steps = False, 0
    while not done:
        obs, reward, done, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        steps += 1
        if not done:
            assert reward == 0.0  # AMC: the reward arrives at the episode's end only
    assert steps == len(env.unwrapped.task.names)
    assert info["macs"] <= info["target_macs"] and np.isfinite(reward)


@pytest.mark.parametrize("prior", ["none", "l1"])
@pytest.mark.parametrize("target", [0.1, 0.25, 0.6])
def test_any_actions_meet_the_budget_and_fill_spends_it(problem, target, prior):
    task = PruningTask(problem.generator.model, 32, target, prior=prior)
    rng = np.random.default_rng(0)
    ep = GroupEpisode(task)
    for actions in ([1.0] * 10, [0.0] * 10, None, None, None):
        ep.reset()
        while not ep.done:
            ep.act(rng.random() if actions is None else actions[ep.t])
        assert task.macs(ep.counts) <= task.target_macs  # AMC clip: never above
        counts = ep.final_counts()
        macs = spec_macs(task.model, task.spec(counts), 32)  # the real count agrees
        assert macs <= task.target_macs and macs >= 0.98 * task.target_macs
        assert all(counts[n] >= ep.counts[n] for n in counts)  # fill never undoes a decision


def test_l1_prior_centres_the_actions_on_the_global_threshold_allocation(problem):
    """a = 0.5 everywhere replays the global-L1 allocation; a = 0 / 1 halve / double its ratios."""
    from gan.pruning.targets import global_threshold_spec

    model = problem.generator.model
    task = PruningTask(model, 32, 0.25, prior="l1")
    ref, _ = global_threshold_spec(model, task.target_macs, 32, criterion="l1")
    ep = GroupEpisode(task)
    _run(ep, [0.5] * ep.length)
    assert ep.final_counts() == {n: len(ref[n]) for n in task.names}
    g = task.groups[0]
    assert task.count_for(0, 0.0, {}) == max(task.min_counts[g.name],
                                             int(np.ceil(round(task.prior_ratios[g.name] / 2 * g.size, 6))))
    with pytest.raises(ValueError, match="unknown action prior"):
        PruningTask(model, 32, 0.25, prior="magic")


def test_recenter_makes_a_found_allocation_the_one_that_a_half_replays(problem):
    """MarlConfig.recenter: after recentering on an episode's allocation, a = 0.5 everywhere replays it
    (and differs from the L1 prior's); without a prior there is no centre to move."""
    task = PruningTask(problem.generator.model, 32, 0.25, prior="l1")
    ep = GroupEpisode(task)
    rng = np.random.default_rng(0)
    _run(ep, rng.uniform(0.1, 0.9, ep.length))
    found = ep.final_counts()
    ep = GroupEpisode(task)
    _run(ep, [0.5] * ep.length)
    assert ep.final_counts() != found
    task.recenter(task.ratios(found))
    ep = GroupEpisode(task)
    _run(ep, [0.5] * ep.length)
    assert ep.final_counts() == found
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        task.recenter({"nope": 0.5})
    with pytest.raises(ValueError, match="needs an action prior"):
        PruningTask(problem.generator.model, 32, 0.25, prior="none").recenter(task.ratios(found))


def test_absolute_macs_target(problem):
    full = PruningTask(problem.generator.model, 32, 1.0)
    task = PruningTask(problem.generator.model, 32, 0.4 * full.full_macs)  # a count, not a fraction
    assert task.target_macs == int(0.4 * full.full_macs)


def test_global_threshold_spec_meets_the_target(problem):
    from gan.pruning.targets import global_threshold_spec

    g = problem.generator.model
    full = spec_macs(g, {}, 32)
    for frac in (0.15, 0.4):
        spec, tau = global_threshold_spec(g, int(frac * full), 32)
        assert 0.98 * frac * full <= spec_macs(g, spec, 32) <= frac * full and tau > 0


def test_spec_keeps_the_most_salient_channels(problem):
    task = problem.generator
    counts = {n: max(1, g.size // 2) for n, g in zip(task.names, task.groups)}
    spec = task.spec(counts)
    for g in task.groups:
        s = saliency(task.model, g, "l1")
        kept, dropped = s[spec[g.name]], s[[i for i in range(g.size) if i not in spec[g.name]]]
        assert len(spec[g.name]) == counts[g.name] and kept.min() >= dropped.max()


def test_unreachable_targets_are_refused(problem):
    with pytest.raises(TargetError, match="below"):
        PruningTask(problem.generator.model, 32, 1e-6)
    with pytest.raises(TargetError, match="above"):
        PruningTask(problem.generator.model, 32, 1e12)
    with pytest.raises(TargetError, match="min_ratio"):
        PruningTask(problem.generator.model, 32, 0.05, min_ratio=0.9)


def test_local_backend_scores_are_deterministic_cached_and_zero_for_the_teacher(problem):
    b = problem.backend
    full = b.evaluate({}, {})
    assert full.generator == pytest.approx(0.0, abs=1e-6) and full.metrics["rec_l1"] == 0.0
    g, d = problem.generator, problem.discriminator
    gspec = g.spec({n: 2 for n in g.names})
    dspec = d.spec({n: 2 for n in d.names})
    first = b.evaluate(gspec, dspec)
    again = b.evaluate(gspec, dspec)
    assert again.cached and not first.cached and again.generator == first.generator
    fresh = LocalBackend(b.teacher_g, b.teacher_d, (b.train_x, b.train_y), (b.x, b.y), b.cfg, b.density_cfg)
    assert fresh.evaluate(gspec, dspec).generator == first.generator  # no evaluation noise
    assert first.generator < full.generator and first.discriminator < 0


def test_backend_finetune_steps_improve_the_pruned_generator():
    gen_t, disc_t = tiny_random_pair(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 32, 32, generator=gen) * 2 - 1
    train, held = (x[:16], x[:16]), (x[16:], x[16:])
    task = PruningTask(gen_t, 32, 0.3)
    gspec = task.spec({n: max(1, g.size // 3) for n, g in zip(task.names, task.groups)})
    scores = {}
    for steps in (0, 20):
        b = LocalBackend(gen_t, disc_t, train, held, LocalConfig(finetune_steps=steps, objective="l1", lr=1e-3))
        scores[steps] = b.evaluate(gspec, {})
    assert scores[20].metrics["rec_l1"] < scores[0].metrics["rec_l1"]
    assert scores[20].generator > scores[0].generator


def test_the_teacher_memo_leaves_every_score_bit_identical():
    """``TeacherMemo``: the teacher's outputs on the fixed, seeded neighbourhoods are remembered, not
    recomputed; the K density fine-tune steps and the scores of several candidates match a backend
    that runs the teacher every time, to the bit, and the memo was hit."""
    gen_t, disc_t = tiny_random_pair(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 32, 32, generator=gen) * 2 - 1
    train, held = (x[:8], x[:8]), (x[8:], x[8:])
    task = PruningTask(gen_t, 32, 0.3)
    specs = [task.spec({n: max(1, g.size // k) for n, g in zip(task.names, task.groups)}) for k in (2, 3)]
    cfg = LocalConfig(finetune_steps=2, objective="density", batch_size=4)
    jitter = DensityConfig(neighbors="jitter")  # fixed, seeded neighbourhoods (a memory bank adds the centres)
    memo, plain = (LocalBackend(gen_t, disc_t, train, held, cfg, jitter, memo=m) for m in (True, False))
    for spec in specs:
        a, b = memo.evaluate(spec, {}), plain.evaluate(spec, {})
        assert (a.generator, a.discriminator, a.metrics) == (b.generator, b.discriminator, b.metrics)
    assert len(memo.score_teacher._seen) == 1 and len(memo.train_teacher._seen) == 2  # one per fixed batch


def _episode(env, g_actions, d_actions):
    obs, _ = env.reset()
    seen = []
    for a in g_actions:
        obs, r, term, _, _ = env.step({"generator": np.array([a], np.float32)})
    for a in d_actions:
        seen.append(obs["discriminator"])
        obs, r, term, _, info = env.step({"discriminator": np.array([a], np.float32)})
    assert term["__all__"]
    return r, env.records[-1], seen


def test_multi_agent_turns_and_peer_observation(problem):
    env = MultiAgentPruningEnv({"beta": 0.5}, problem=problem)
    obs, _ = env.reset()
    assert set(obs) == {"generator"} and env.observation_spaces["generator"].contains(obs["generator"])
    ng, nd = len(problem.generator.names), len(problem.discriminator.names)
    _, _, seen_small = _episode(env, [0.0] * ng, [0.5] * nd)
    _, _, seen_big = _episode(env, [1.0] * ng, [0.5] * nd)
    peer_keep = OBS_DIM - 4  # "peer_keep" feature: the generator's decisions of this episode
    assert seen_small[0][peer_keep] != seen_big[0][peer_keep]
    obs, _ = env.reset()  # the generator sees the discriminator's last reward in its peer features
    assert obs["generator"][OBS_DIM - 2] == pytest.approx(np.tanh(env.last_own["discriminator"]), abs=1e-6)


def test_peer_exchange_is_real(problem):
    """β = 0: the generator's reward ignores the peer; β > 0: it moves when only D's pruning moves."""
    ng, nd = len(problem.generator.names), len(problem.discriminator.names)
    rewards = {}
    for beta in (0.0, 0.5):
        env = MultiAgentPruningEnv({"beta": beta}, problem=problem)
        rewards[beta] = [_episode(env, [0.4] * ng, [d] * nd)[0]["generator"] for d in (0.0, 1.0)]
    assert rewards[0.0][0] == rewards[0.0][1]
    assert rewards[0.5][0] != rewards[0.5][1]
    assert exchange({"generator": 1.0, "discriminator": -2.0}, 0.5) == {"generator": 0.0, "discriminator": -1.5}
