"""The search backends behind ``prune --backend local|supernet`` (docs/methods.md, "Search backends"):
typed ``--backend-option`` parsing (unknown keys and bad values refused in one line), the local
backend's selectable K-step objective built through the one trainer builder, and what a search
request's backend puts into the problem config."""
import dataclasses
import math

import pytest
import torch

from envs.backends.options import (BackendOptionError, LocalOptions, SupernetOptions, options_dict,
                                   parse_backend_options)
from orchestration.config import load_preset
from orchestration.errors import UsageError
from orchestration.requests import PruneRequest, SearchFlags, prune_request

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------- option parsing

def test_command_line_strings_are_typed_by_the_options_fields():
    o = parse_backend_options("supernet", {"train_steps": "50", "fractions": "1,0.5,0.25", "cache": "false",
                                           "lr": "1e-3", "eval_items": "none"})
    assert o == SupernetOptions(train_steps=50, fractions=(1.0, 0.5, 0.25), cache=False, lr=1e-3, eval_items=None)
    # a request file's JSON values are taken as they are
    assert parse_backend_options("supernet", {"train_steps": 50, "fractions": [1, 0.5], "cache": True}) == \
        SupernetOptions(train_steps=50, fractions=(1.0, 0.5))
    assert parse_backend_options("local", {"objective": "gka", "vem": "yes", "train_items": "8"}) == \
        LocalOptions(objective="gka", vem=True, train_items=8)
    assert parse_backend_options("local", None) == LocalOptions()
    assert options_dict(SupernetOptions(fractions=(1.0, 0.5)))["fractions"] == [1.0, 0.5]


@pytest.mark.parametrize("backend, options, named", [
    ("supernet", {"train_step": "5"}, "unknown --backend-option 'train_step' for --backend supernet; known: "
                                      "train_steps, fractions"),
    ("local", {"supernet_steps": "5"}, "known: objective, vem, train_items"),
    ("magic", {}, "unknown --backend 'magic'; choose one of local, supernet"),
])
def test_unknown_keys_are_refused_naming_the_known_ones(backend, options, named):
    with pytest.raises(BackendOptionError) as e:
        parse_backend_options(backend, options)
    assert named in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("backend, options, named", [
    ("supernet", {"train_steps": "many"}, "train_steps='many' for --backend supernet: expected int"),
    ("supernet", {"train_steps": "2.5"}, "expected int"),
    ("supernet", {"train_steps": "-1"}, "give 0 or more steps"),
    ("supernet", {"cache": "maybe"}, "cache='maybe' for --backend supernet: expected bool"),
    ("supernet", {"fractions": "1,x"}, "expected tuple"),
    ("supernet", {"fractions": "1,1.5"}, "fractions in (0, 1]"),
    ("local", {"objective": "magic"}, "objective='magic': choose one of density, l1, gka, distill"),
    ("local", {"train_items": "0"}, "train_items=0: give 1 or more"),
])
def test_bad_values_are_refused(backend, options, named):
    with pytest.raises(BackendOptionError) as e:
        parse_backend_options(backend, options)
    assert named in str(e.value)


def test_the_request_resolves_the_backend_with_the_presets_values():
    pre = load_preset("tiny")
    s = SearchFlags(backend="supernet").resolve(pre)
    assert s.backend == "supernet" and s.backend_steps == 0  # no fine-tune steps per candidate
    assert s.backend_options.train_steps == pre.gan_compression.supernet_steps
    assert s.backend_options.eval_items == s.eval_items == pre.marl.eval_items
    s = SearchFlags(backend_options={"eval_items": "3", "objective": "l1"}).resolve(pre)
    assert (s.backend, s.eval_items, s.backend_options.objective, s.backend_steps) == \
        ("local", 3, "l1", pre.marl.backend_steps)
    with pytest.raises(UsageError, match="supernet backend scores sliced sub-nets without fine-tune steps"):
        SearchFlags(backend="supernet", backend_steps=4).resolve(pre)
    with pytest.raises(UsageError, match="unknown --backend-option 'vem'"):
        SearchFlags(backend="supernet", backend_options={"vem": "true"}).resolve(pre)


def test_backend_flags_land_in_the_request_and_its_json():
    r = prune_request({"backend": "supernet", "backend_option": {"train_steps": "7"}})
    assert r.search.backend == "supernet" and r.search.backend_options == {"train_steps": "7"}
    assert PruneRequest.from_mapping(r.to_dict()) == r


# ------------------------------------------------------------------------------------- local objective

def _local(objective: str, vem: bool = False, steps: int = 1):
    from envs.problem import build_problem

    return build_problem({"backend_config": {"finetune_steps": steps, "objective": objective, "vem": vem,
                                             "train_items": 4, "eval_items": 2}}).backend


@pytest.mark.parametrize("objective, vem", [("l1", False), ("gka", False), ("distill", True)])
def test_local_backend_builds_the_selected_objective_through_the_trainer_builder(objective, vem, monkeypatch):
    import envs.backends.local as local

    built = []
    real = local.build_trainer

    def spy(kind, g, d, cfg, hooks=None):
        built.append(hooks)
        return real(kind, g, d, cfg, hooks)

    monkeypatch.setattr(local, "build_trainer", spy)  # the name the backend calls
    backend = _local(objective, vem)
    dc = backend.distill_config()
    assert dc.objective == objective and dc.add == (("vem",) if vem else ())
    problem_pair = _pair(backend)
    scores = backend.evaluate(*problem_pair)
    assert math.isfinite(scores.generator) and math.isfinite(scores.discriminator)
    (hooks,) = built
    assert bool(hooks.aux) == (objective == "distill")          # GAN Compression's 1×1 mappings train with G
    assert ("vem" in hooks.stateful) == vem                     # VEM's EBM is hook state
    assert (hooks.d is not None) == (objective == "density")    # only density has a D-side term
    # the density default scores the same pair differently after its K steps
    assert _local("density").evaluate(*problem_pair).generator != scores.generator


def _pair(backend):
    """A fixed (G spec, D spec) pair: every second channel of every group."""
    def half(net):
        return {g.name: list(range(0, g.size, 2)) for g in net.channel_groups()}
    return half(backend.teacher_g), half(backend.teacher_d)


# ------------------------------------------------------------------------------------- problem config

def test_the_default_local_backend_keeps_the_problem_config_earlier_runs_recorded():
    from agents.methods.search_backend import prepare_backend

    class Req:
        search = SearchFlags().resolve(load_preset("tiny"))

    setup = prepare_backend(Req, None)
    assert setup.name == "local" and setup.config == {"finetune_steps": 4, "eval_items": 8}
    Req.search = dataclasses.replace(Req.search, backend_options=LocalOptions(objective="gka", vem=True))
    assert prepare_backend(Req, None).config == {"finetune_steps": 4, "eval_items": 8, "objective": "gka",
                                                 "vem": True}


def test_supernet_backend_scores_a_sliced_subnet_without_training(tmp_path):
    """A saved (here untrained) supernet scores like weight inheritance of the same first-k channels,
    in milliseconds."""
    from envs.problem import build_problem, tiny_random_pair
    from gan.train.supernet import Supernet

    g, _ = tiny_random_pair(0)
    Supernet(g, size=32).save(tmp_path / "sn")
    sn = build_problem({"backend": "supernet", "backend_config": {"supernet": str(tmp_path / "sn"),
                                                                  "eval_items": 2, "train_items": 2}})
    local = build_problem({"backend_config": {"eval_items": 2, "train_items": 2}})
    gt, dt = sn.generator, sn.discriminator
    g_spec = gt.spec(gt.fill(dict(gt.min_counts)))
    d_spec = dt.spec({g.name: g.size for g in dt.groups})
    a, b = sn.backend.evaluate(g_spec, d_spec), local.backend.evaluate(g_spec, d_spec)
    assert a.generator == pytest.approx(b.generator, rel=1e-5) and a.metrics["finetune_steps"] == 0
    assert a.cost_s < 1.0
    # --backend-option density=false: r_G from one forward pass, −λ_rec·L1 to the teacher
    sn.backend.cfg.density = False
    sn.backend.cache.clear()
    c = sn.backend.evaluate(g_spec, d_spec)
    assert "density" not in c.metrics and c.generator == pytest.approx(-10.0 * c.metrics["rec_l1"])
    assert c.metrics["rec_l1"] == pytest.approx(b.metrics["rec_l1"]) and c.discriminator == a.discriminator
    with torch.no_grad():
        assert sn.backend.subnet(g_spec)(sn.backend.x).shape == sn.backend.x.shape


def test_a_supernet_is_trained_once_and_leaves_the_callers_random_state_alone(tmp_path, monkeypatch):
    from gan.teacher_run import load_teacher_run
    from gan.train.supernet import Supernet, SupernetSettings, cached_supernet
    from tests.teachers import tiny_teacher

    monkeypatch.setenv("GANPRUNE_CACHE", str(tmp_path / "cache"))
    run = load_teacher_run(tiny_teacher(tmp_path / "teacher", data_root=tmp_path / "data", size=32, steps=1))
    settings = SupernetSettings(steps=2, backend="torch")
    torch.manual_seed(5)
    path, cost = cached_supernet(run, settings)
    after_training = torch.rand(3)
    torch.manual_seed(5)
    again, cost2 = cached_supernet(run, settings)
    assert torch.equal(torch.rand(3), after_training)  # trained or cached: the search draws the same
    assert again == path and (cost["cached"], cost2["cached"]) == (False, True) and cost2["steps"] == 2
    assert cost2["cpu_s"] == cost["cpu_s"] > 0  # the recorded cost of its training
    assert int(Supernet.load(path).draws) == 2  # one sampled config per step
    other, _ = cached_supernet(run, SupernetSettings(steps=2, backend="torch", seed=1))
    assert other != path  # every setting is in the key
