"""The closed-form MACs model equals the meta-device count on every zoo model and random specs."""
import random

import pytest

from gan.models.registry import TINY_EXAMPLES
from gan.pruning.macs import MacsModel
from gan.pruning.targets import spec_macs


@pytest.mark.parametrize("name", sorted(TINY_EXAMPLES))
def test_macs_model_is_exact(name):
    model = TINY_EXAMPLES[name]()
    mm = MacsModel(model, 32)
    assert mm.full == spec_macs(model, {}, 32)
    rng = random.Random(name)
    for _ in range(4):
        spec = {g.name: sorted(rng.sample(range(g.size), rng.randint(g.min_keep, g.size)))
                for g in model.channel_groups()}
        assert mm.macs(mm.counts(spec)) == pytest.approx(spec_macs(model, spec, 32), rel=1e-9)
    assert mm.minimum() == pytest.approx(spec_macs(model, {g.name: list(range(g.min_keep))
                                                         for g in model.channel_groups()}, 32), rel=1e-9)
