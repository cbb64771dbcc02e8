"""The method interface (issue #14): every method is one registered ``agents.methods.Method`` and
``prune`` runs whatever the registry holds, so a new method is one module plus one registry line.
A toy method registered here runs end to end through ``ganprune prune`` with no other change."""
import dataclasses
import json
from dataclasses import dataclass

import pytest

from agents import methods
from agents.methods import Found, Method, SearchContext, SearchRequest
from gan import export as gexport
from gan.train.distill import OBJECTIVES
from orchestration.cli import main


def test_every_registered_method_is_complete():
    assert methods.DEFAULT in methods.REGISTRY
    for name, m in methods.REGISTRY.items():
        assert m.name == name
        assert m.objective is None or m.objective in OBJECTIVES
        assert m.objective is not None or m.trains_itself
        assert dataclasses.is_dataclass(m.Options)
        assert m.kinds and set(m.own_settings) <= {f.name for f in dataclasses.fields(methods.SearchSettings)}
        with pytest.raises(methods.MethodOptionError, match="unknown --method-option 'no_such_key'"):
            m.options({"no_such_key": 1})


def test_prune_names_no_method():
    """``orchestration/prune.py`` dispatches through the registry: no method name in its code."""
    import ast
    import inspect

    import orchestration.prune as P

    strings = {n.value for n in ast.walk(ast.parse(inspect.getsource(P))) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    named = strings & (set(methods.REGISTRY) - {"l1"})  # "l1" is also the action prior's name
    assert not named, named


@dataclass(frozen=True)
class HalfOptions:
    keep: float = 0.5


class Half(Method):
    """Toy: keep the first ``keep`` share of every generator group; D pruned to G's keep ratio."""

    name = "toy-half"
    Options = HalfOptions

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        from gan.pruning.targets import spec_macs

        g, size = request.run.generator, request.run.size
        spec = {grp.name: list(range(max(1, int(grp.size * request.options.keep)))) for grp in g.channel_groups()}
        ctx.log_params({"toy_keep": request.options.keep})
        return Found(generator=spec, discriminator=None, target_macs=spec_macs(g, spec, size),
                     teacher_macs=spec_macs(g, {}, size), search_evaluations=1)


def test_a_registered_toy_method_runs_end_to_end(tmp_path, monkeypatch):
    from tests.teachers import tiny_teacher

    teacher = tiny_teacher(tmp_path / "teacher", data_root=tmp_path / "data", size=32, steps=20)
    monkeypatch.setitem(methods.REGISTRY, Half.name, Half())
    out = tmp_path / "toy"
    assert main(["prune", "--method", "toy-half", "--teacher", str(teacher), "--method-option", "keep=0.5",
                 "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", "sqlite:///" + str(tmp_path / "mlflow.db"), "--quiet"]) == 0
    s = json.loads((out / "prune.json").read_text())
    assert s["method"] == "toy-half" and s["search_evaluations"] == 1 and s["objective"] == "l1"
    g = gexport.load(out)
    assert sum(p.numel() for p in g.parameters()) == s["params"] < s["teacher_params"]
    assert main(["prune", "--method", "toy-half", "--teacher", str(teacher), "--method-option", "nope=1",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert not (tmp_path / "bad").exists()
