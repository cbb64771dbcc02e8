"""The ``synthetic`` backend (the agents-learn tests' instrument): its optimum is where it says, and
its scores are deterministic functions of the keep ratios."""
import pytest

from envs.backends import BACKENDS
from envs.backends.synthetic import SyntheticBackend, SyntheticConfig
from envs.problem import build_problem


@pytest.fixture(scope="module")
def problem():
    return build_problem({"teacher": None, "backend": "synthetic", "macs_target": 0.3})


def _half(task):
    counts = {g.name: max(1, g.size // 2) for g in task.groups}
    return counts, task.ratios(counts), task.spec(counts)


def _backend(problem, **cfg):
    return SyntheticBackend(problem.generator.model, problem.discriminator.model, cfg=SyntheticConfig(**cfg))


def test_registered_and_built_by_build_problem(problem):
    assert BACKENDS["synthetic"] is SyntheticBackend
    assert isinstance(problem.backend, SyntheticBackend)
    with pytest.raises(ValueError, match="unknown synthetic mode"):
        _backend(problem, mode="nope")
    with pytest.raises(ValueError, match="unknown group"):
        _backend(problem, target_generator={"nope": 0.5})


def test_target_mode_scores_zero_at_the_target_and_less_elsewhere(problem):
    _, g_target, g_spec = _half(problem.generator)
    _, d_target, d_spec = _half(problem.discriminator)
    backend = _backend(problem, target_generator=g_target, target_discriminator=d_target)
    at = backend.evaluate(g_spec, d_spec)
    assert (at.generator, at.discriminator) == (0.0, 0.0)
    assert at.metrics["distance_generator"] == 0.0 and at.metrics["psnr_vs_teacher"] == pytest.approx(60.0)
    full = backend.evaluate({}, {})  # missing groups keep all: every ratio 1.0
    mean_gap = sum(1.0 - r for r in g_target.values()) / len(g_target)
    assert full.generator == pytest.approx(-mean_gap) and full.discriminator < 0.0
    assert full.metrics["psnr_vs_teacher"] < at.metrics["psnr_vs_teacher"]


def test_scores_are_deterministic_and_cached(problem):
    _, g_target, g_spec = _half(problem.generator)
    cfg = {"target_generator": g_target}
    a, b = _backend(problem, **cfg), _backend(problem, **cfg)
    first = a.evaluate(g_spec, {})
    assert first.to_dict() | {"cost_s": 0} == b.evaluate(g_spec, {}).to_dict() | {"cost_s": 0}
    again = a.evaluate(g_spec, {})
    assert again.cached and (again.generator, again.discriminator, again.metrics) == (
        first.generator, first.discriminator, first.metrics)


def test_coupled_mode_the_team_optimum_is_the_discriminators_preference(problem):
    g_task, d_task = problem.generator, problem.discriminator
    cfg = dict(mode="coupled", coupled_g_group="inner_1", coupled_d_group="layer3", g_own=0.25, g_peer=0.75,
               d_target=0.5, w_own=0.25, coupling=1.0)
    backend = _backend(problem, **cfg)
    size = {g.name: g.size for g in g_task.groups}["inner_1"]
    d_counts = {g.name: g.size for g in d_task.groups} | {"layer3": 16}  # layer3: 16 of 32 = d_target
    d_spec = d_task.spec(d_counts)

    def scores(ratio):
        counts = {g.name: g.size for g in g_task.groups} | {"inner_1": round(ratio * size)}
        return backend.evaluate(g_task.spec(counts), d_spec)

    own, peer = scores(0.25), scores(0.75)
    assert own.generator == 0.0 and peer.discriminator == 0.0  # each agent's own optimum
    team = {r: s.generator + s.discriminator for r, s in ((0.25, own), (0.75, peer))}
    assert team[0.75] - team[0.25] == pytest.approx((1.0 - 0.25) * 0.5)  # (coupling − w_own)·|g_own − g_peer|
    assert peer.metrics["team"] == pytest.approx(team[0.75])
