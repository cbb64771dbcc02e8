"""gan.profile against an independent counter (ultralytics-thop) and the paper's ResNet-9 figures.

How thop 2.x differs from our (GAN Compression / torchprofile) rule, and how the test lines them up:
  * Conv2d and Linear: the same (output elements × C_in/groups × k², in·out per row); bias not counted.
  * ConvTranspose2d: thop scatters — *input* elements × C_out/groups × k² — while we gather over the
    output grid (output elements × C_in/groups × k²).  For stride-2 k3 up-sampling that is 4× less.
  * Norm layers (BatchNorm / InstanceNorm): thop adds 2·numel (4·numel when affine); we add nothing.
  * Padding, activations, pooling-free adds/concat/Embedding: zero in both.
With norms zeroed and a gather rule for ConvTranspose2d registered as ``custom_ops``, thop equals
``count_macs`` exactly on every zoo model; the remaining terms are checked layer by layer.
"""
import time

import pytest
import torch
from torch import nn

from gan.models import TINY_EXAMPLES, ResnetGenerator
from gan.profile import count_macs, count_params, measure_latency, model_macs, torch_latency

thop = pytest.importorskip("thop")


def _zero(m, x, y):
    pass


def _gather(m, x, y):
    m.total_ops += y.numel() * (m.in_channels // m.groups) * m.weight.shape[2] * m.weight.shape[3]


OURS_RULE = {nn.modules.batchnorm._NormBase: _zero, nn.ConvTranspose2d: _gather}
NO_NORMS = {nn.modules.batchnorm._NormBase: _zero}


def _thop(model, inputs, custom_ops=None):
    macs, params = thop.profile(model, inputs, custom_ops=custom_ops or {}, verbose=False)
    return int(macs), int(params)


def _per_layer(model, inputs, types, fn):
    """Σ fn(module, input, output) over the modules of ``types`` (own hooks, batch 1)."""
    total = 0

    def hook(m, i, o):
        nonlocal total
        total += fn(m, i[0], o)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, types)]
    with torch.no_grad():
        model(*inputs)
    for h in hs:
        h.remove()
    return total


def _meta(factory, size):
    with torch.device("meta"):
        model = factory().eval()
        return model, model.example_inputs(1, size)


@pytest.fixture(scope="module")
def resnet9():
    return _meta(lambda: ResnetGenerator(ngf=64, n_blocks=9), 256)


@pytest.mark.parametrize("name", sorted(TINY_EXAMPLES))
def test_count_macs_equals_thop_on_conv_linear_terms(name):
    model, x = _meta(TINY_EXAMPLES[name], 64)
    ours = count_macs(model, x)
    assert ours > 0
    assert _thop(model, x, OURS_RULE) == (ours, count_params(model))

    # thop's own rules differ only by the transposed convs and the norms, layer by layer
    default, _ = _thop(model, x)
    no_norms, _ = _thop(model, x, NO_NORMS)
    scatter_minus_gather = _per_layer(
        model, x, nn.ConvTranspose2d,
        lambda m, i, o: i[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        - o[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
    assert no_norms - ours == scatter_minus_gather
    norm_ops = _per_layer(model, x, nn.modules.batchnorm._NormBase,
                          lambda m, i, o: i.numel() * (4 if m.affine else 2))
    assert default - no_norms == norm_ops


def test_resnet9_paper_numbers(resnet9):
    model, x = resnet9
    macs = count_macs(model, x)
    assert macs == pytest.approx(56.80e9, rel=1e-3)
    assert macs == 56_799_264_768
    assert count_params(model) == 11_378_179
    assert model_macs(ResnetGenerator(ngf=64, n_blocks=9), 256) == macs
    assert _thop(model, x, OURS_RULE) == (macs, 11_378_179)


def test_resnet9_scatter_rule_is_exactly_the_transposed_convs(resnet9):
    model, x = resnet9
    ours = count_macs(model, x)
    scatter, _ = _thop(model, x, NO_NORMS)  # thop's ConvTranspose2d rule, norms left out
    assert scatter == pytest.approx(49.55e9, rel=1e-3)
    # up1: 256→128 ch, 64²→128²; up2: 128→64 ch, 128²→256²; k = 3
    up1 = 128 * 128 * 128 * 256 * 9 - 64 * 64 * 256 * 128 * 9
    up2 = 256 * 256 * 64 * 128 * 9 - 128 * 128 * 128 * 64 * 9
    assert ours - scatter == up1 + up2 == 7_247_757_312


def test_measure_latency_reports_median_and_threads():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001)

    r = measure_latency(fn, warmup=2, runs=5)
    assert len(calls) == 7 and r["runs"] == 5 and r["warmup"] == 2
    assert r["threads"] == torch.get_num_threads()
    assert 1.0 <= r["min_ms"] <= r["median_ms"] <= r["max_ms"]

    model = TINY_EXAMPLES["resnet"]().train()
    t = torch_latency(model, model.example_inputs(1, 32), warmup=1, runs=3)
    assert t["median_ms"] > 0 and t["threads"] == torch.get_num_threads()
