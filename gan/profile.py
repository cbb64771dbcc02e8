"""MACs, parameters and measured CPU latency, counted the way GAN Compression reports them.

MACs rule (docs/methods.md, "MACs and parameters"; torchprofile since 2019): Conv2d and ConvTranspose2d cost
``H_out·W_out·C_out·(C_in/groups)·k_h·k_w`` — transposed convs on the *output* grid — and Linear
``in·out``; batch 1; bias, norms, activations, padding, residual adds, concat and up-sampling are
not counted.  With this rule ResNet-9 ngf 64 at 256² is 56.80 G MACs.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from gan.models import build


def _conv_macs(m: nn.Module, out: torch.Tensor) -> int:
    k = 1
    for s in m.kernel_size:
        k *= s
    # same formula for ConvTranspose2d: each output position reads C_in/groups × k² inputs
    return out[0].numel() * (m.in_channels // m.groups) * k


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """MACs of one forward for the *first* sample of ``inputs`` (runs the model once)."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            total += _conv_macs(m, out)
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features * (out[0].numel() // m.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(*[x[:1] for x in inputs])
    finally:
        for h in handles:
            h.remove()
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def architecture_macs(arch: dict, size: int) -> int:
    """MACs of an architecture dict at ``size``², without allocating weights (meta device)."""
    with torch.device("meta"):
        model = build(arch)
        inputs = model.example_inputs(1, size)
    return count_macs(model.eval(), inputs)


def model_macs(model, size: int) -> int:
    """MACs of a zoo model at ``size``² (computed on the meta device: fast at any resolution)."""
    return architecture_macs(model.architecture(), size)


def measure_latency(fn: Callable[[], object], warmup: int = 3, runs: int = 10) -> dict:
    """Median wall time of ``fn()`` over ``runs`` after ``warmup`` calls; records the thread count."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1],
            "runs": runs, "warmup": warmup, "threads": torch.get_num_threads()}


def torch_latency(model: nn.Module, inputs: tuple[torch.Tensor, ...], warmup: int = 3,
                  runs: int = 10) -> dict:
    """CPU latency of an eval-mode forward under ``torch.inference_mode``."""
    model = model.eval()

    def run():
        with torch.inference_mode():
            model(*inputs)

    return measure_latency(run, warmup, runs)


def profile_model(model, size: int, latency_runs: int = 10) -> dict:
    """MACs, params and torch CPU latency (batch 1) of a zoo model at ``size``²."""
    inputs = model.example_inputs(1, size)
    return {"macs": model_macs(model, size), "params": count_params(model),
            "size": size, "torch_latency": torch_latency(model, inputs, runs=latency_runs)}
