"""Zoo-wide pruning checks: masked forward == pruned forward, exact parameter counts, rebuilds."""
import random

import pytest
import torch

from gan.models import TINY_EXAMPLES, build
from gan.profile import count_params
from gan.pruning.physical import expected_param_count, masked, normalize_spec, prune
from gan.pruning.saliency import spec_from_ratios

NAMES = sorted(TINY_EXAMPLES)


def random_spec(model, rng):
    spec = {}
    for g in model.channel_groups():
        k = rng.randint(g.min_keep, g.size)
        spec[g.name] = sorted(rng.sample(range(g.size), k))
    return spec


def _randomize_norms(model):
    """Non-trivial γ/β and running stats so a wrong slice of any of them shows up."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_var",)):
                t.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean",)):
                t.normal_(0, 0.5)
    return model


def _outputs(model, inputs):
    out = model(*inputs)
    return out if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_forward_equals_pruned(name, seed):
    rng = random.Random(seed)
    model = _randomize_norms(TINY_EXAMPLES[name]()).eval()
    spec = random_spec(model, rng)
    pruned = prune(model, spec).eval()
    inputs = model.example_inputs(2, 32)
    with torch.no_grad():
        for a, b in zip(_outputs(masked(model, spec).eval(), inputs), _outputs(pruned, inputs)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    assert count_params(pruned) == expected_param_count(model, spec)
    if any(len(v) < g.size for g in model.channel_groups() for k, v in spec.items() if k == g.name):
        assert count_params(pruned) < count_params(model)


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_from_architecture(name):
    model = TINY_EXAMPLES[name]().eval()
    again = build(model.architecture())
    again.load_state_dict(model.state_dict())
    inputs = model.example_inputs(1, 32)
    with torch.no_grad():
        for a, b in zip(_outputs(model, inputs), _outputs(again.eval(), inputs)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_groups_are_well_formed(name):
    model = TINY_EXAMPLES[name]()
    state = model.state_dict()
    groups = model.channel_groups()
    assert len({g.name for g in groups}) == len(groups)
    assert set(model.widths()) >= {g.name for g in groups}
    for g in groups:
        assert g.size == model.widths()[g.name]
        assert any(r.role == "in" for r in g.refs), f"{g.name} has no reader"
        for r in g.refs:
            assert r.tensor in state, r.tensor
            assert state[r.tensor].shape[r.dim] >= r.offset + g.size * r.block


@pytest.mark.parametrize("name", NAMES)
def test_pruning_to_minimum_and_full(name):
    model = TINY_EXAMPLES[name]().eval()
    full = prune(model, {})
    assert count_params(full) == count_params(model)
    spec = spec_from_ratios(model, {g.name: 0.0 for g in model.channel_groups()}, "l1")
    small = prune(model, spec)
    assert all(len(v) == g.min_keep for g in model.channel_groups() for k, v in spec.items() if k == g.name)
    small.eval()(*model.example_inputs(1, 32))


def test_spec_errors_name_the_group():
    model = TINY_EXAMPLES["resnet"]()
    with pytest.raises(ValueError, match="unknown groups"):
        normalize_spec(model, {"nope": [0]})
    with pytest.raises(ValueError, match="out of range"):
        normalize_spec(model, {"stem": [999]})
    with pytest.raises(ValueError, match="at least"):
        normalize_spec(model, {"stem": []})
