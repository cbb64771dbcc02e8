"""The per-layer latency model (gan/latency_model.py; docs/methods.md, "Latency budgets"): real ONNX Runtime
and torch timings at tiny sizes, the cache, monotone predictions that budget searches can bisect, and the
latency budget's checks.  No accuracy claim here: timings on shared CI cores are noise; `ganprune profile
--latency-model` measures the error (README)."""
import random

import pytest
import torch

from gan.latency_model import (ALIGN, LatencyModel, LatencyModelError, LatencyTarget, fastest_counts, latency_budget,
                               machine_key, random_counts)
from gan.models import ResnetGenerator
from gan.pruning.align import align_counts
from gan.pruning.macs import MacsModel, fill_counts
from gan.pruning.targets import TargetError, global_threshold_spec, uniform_spec

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ResnetGenerator(ngf=8, n_blocks=2).eval()


@pytest.fixture(scope="module")
def lm(model, tmp_path_factory):
    return LatencyModel(model, SIZE, threads=1, calibration_specs=4,
                        cache_root_dir=tmp_path_factory.mktemp("latency"))


def test_predictions_are_positive_monotone_and_cached(model, lm, monkeypatch):
    assert lm.full > lm.minimum() > 0
    rng = random.Random(0)
    for _ in range(20):  # one more channel never predicts faster within a table; reaching the kernels'
        # alignment (a multiple of ALIGN) may: that step switches to the aligned table (docs/methods.md)
        counts = random_counts(model, rng)
        g = rng.choice(sorted(counts))
        if counts[g] < lm.sizes[g] and (counts[g] + 1) % ALIGN:
            assert lm.cost({**counts, g: counts[g] + 1}) >= lm.cost(counts) - 1e-12
    assert lm.cache.path.is_file()
    import gan.latency_model as mod

    def no_timing(*a, **k):
        raise AssertionError("a cached layer was timed again")

    monkeypatch.setattr(mod, "time_layer", no_timing)
    monkeypatch.setattr(mod, "measure_counts", no_timing)
    again = LatencyModel(model, SIZE, threads=1, calibration_specs=4, cache_root_dir=lm.cache.path.parent)
    assert again.cost({}) == pytest.approx(lm.full)
    assert again.describe()["machine"]["threads"] == 1


def test_budget_searches_stay_within_a_latency_target(model, lm):
    target = 0.5 * lm.full + 0.5 * lm.minimum()
    spec, _ = global_threshold_spec(model, target, SIZE, cost_model=lm)
    assert lm.cost(lm.counts(spec)) <= target
    spec, ratio = uniform_spec(model, target, SIZE, cost_model=lm)
    assert lm.cost(lm.counts(spec)) <= target and 0 < ratio < 1
    small = dict(lm.min_keep)
    filled = fill_counts(lm, small, target)
    assert lm.cost(small) <= lm.cost(filled) <= target


def test_fastest_counts_spend_the_macs_on_block_multiples_no_slower_than_l1(model, lm):
    """docs/methods.md, "Fastest widths": within 97–100 % of the MACs target, in block multiples, and (the
    climb starts from L1's aligned widths and only accepts faster ones) never predicted slower than those."""
    mm = MacsModel(model, SIZE)
    target = 0.3 * mm.full
    counts = fastest_counts(model, lm, target, SIZE, block=4, steps=500)
    assert 0.97 * target <= mm.cost(counts) <= target
    l1, _ = uniform_spec(model, target, SIZE, criterion="l1")
    start = align_counts(mm, mm.counts(l1), target, 4)
    assert all((c - start[n]) % 4 == 0 or c in (mm.sizes[n], mm.min_keep[n]) for n, c in counts.items())
    if mm.cost(start) >= 0.97 * target:
        assert lm.cost(counts) <= lm.cost(start)
    assert fastest_counts(model, lm, target, SIZE, block=4, steps=500) == counts  # seeded


def test_torch_runtime_and_unknown_runtime(model, tmp_path):
    t = LatencyModel(model, 16, runtime="torch", threads=1, calibration_specs=2, cache_root_dir=tmp_path)
    assert t.full > 0 and t.describe()["runtime"] == "torch"
    with pytest.raises(LatencyModelError, match="unknown runtime"):
        machine_key("tflite", 1)
    assert machine_key("onnxruntime", 1)["spinning"] is False and "spinning" not in machine_key("torch", 1)


def test_latency_targets_are_checked(model, lm, monkeypatch):
    with pytest.raises(TargetError, match="must be positive"):
        LatencyTarget(0)
    with pytest.raises(TargetError, match="unknown latency runtime"):
        LatencyTarget(0.3, runtime="tflite")
    import gan.latency_model as mod

    monkeypatch.setattr(mod, "LatencyModel", lambda *a, **k: lm)
    with pytest.raises(TargetError, match="above the full model"):
        latency_budget(model, LatencyTarget(lm.full * 2 + 5), SIZE)
    with pytest.raises(TargetError, match="raise --latency-target"):
        latency_budget(model, LatencyTarget(lm.minimum() / lm.full * 0.5), SIZE)
    _, ms = latency_budget(model, LatencyTarget(0.6), SIZE)
    assert ms == pytest.approx(0.6 * lm.full)


def test_cat_bisects_its_gamma_threshold_on_predicted_latency(tmp_path):
    from agents.baselines.cat import one_step_prune

    torch.manual_seed(0)
    g = ResnetGenerator(ngf=16, n_blocks=2, norm="instance_affine").eval()
    lm = LatencyModel(g, SIZE, threads=1, calibration_specs=3, cache_root_dir=tmp_path)
    target = 0.6 * lm.full
    spec, info = one_step_prune(g, target, SIZE, cost_model=lm)
    assert lm.cost(lm.counts(spec)) <= target < lm.full
    assert info["macs"] < info["full_macs"] and info["target_macs"] is None
    with pytest.raises(TargetError, match="predicted ms"):
        one_step_prune(g, 1e-6, SIZE, cost_model=lm)


def test_env_clip_steps_down_to_a_count_that_fits_a_non_monotone_budget(model):
    """Predicted latency is not monotone in a count (c_in 63 costs more than 64 on this CPU). With a cost under
    which any odd width of the residual stream is over budget and every even one fits, the clip must never
    return an odd count (it steps down to one that fits), and the fill must stay within the budget."""
    import numpy as np

    from envs.task import PruningTask

    task = PruningTask(model, SIZE, 1.0, min_ratio=0.05, prior="none")
    mm, t = task.macs_model, task.names.index("res")
    assert task.min_counts["res"] % 2 == 0

    class OddResidualOverBudget:  # the MacsModel interface, non-monotone like the latency model
        sizes, min_keep, full = mm.sizes, mm.min_keep, mm.full

        def cost(self, counts):
            return mm.macs(counts) * (1e6 if counts.get("res", mm.sizes["res"]) % 2 else 1.0)

    task.cost_model, task.target = OddResidualOverBudget(), float(mm.full)
    decided = {n: mm.sizes[n] for n in task.names[:t]}
    chosen = {task.count_for(t, float(a), decided) for a in np.linspace(0.0, 1.0, 101)}
    assert any(k > task.min_counts["res"] for k in chosen) and all(k % 2 == 0 for k in chosen), sorted(chosen)
    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = {}
        for i, name in enumerate(task.names):
            counts[name] = task.count_for(i, float(rng.uniform()), counts)
        assert task.cost_model.cost(counts) <= task.target
        assert task.cost_model.cost(task.fill(counts)) <= task.target


def test_a_macs_cap_holds_beside_the_latency_target(model, lm, monkeypatch):
    """``--latency-target T --macs-cap M``: the one budgeted cost is within T exactly when predicted ms ≤ T and
    MACs ≤ M, so the bisections and the fill keep both; reports still read the pure prediction."""
    import gan.latency_model as mod
    from gan.latency_model import MacsCappedLatency
    from gan.pruning.macs import MacsModel

    monkeypatch.setattr(mod, "LatencyModel", lambda *a, **k: lm)
    capped, ms = latency_budget(model, LatencyTarget(0.9, macs_cap=0.3), SIZE)
    assert isinstance(capped, MacsCappedLatency) and ms == pytest.approx(0.9 * lm.full)
    mm = MacsModel(model, SIZE)
    cap = 0.3 * mm.full
    assert capped.full_ms == pytest.approx(lm.full) and capped.describe()["macs_cap_fraction"] == pytest.approx(0.3, abs=1e-3)
    rng = random.Random(1)
    for _ in range(30):
        counts = random_counts(model, rng)
        both = lm.cost(counts) <= ms and mm.macs(counts) <= cap
        assert (capped.cost(counts) <= ms) == both
        assert capped.predicted_ms(counts) == pytest.approx(lm.cost(counts))
    spec, _ = global_threshold_spec(model, ms, SIZE, cost_model=capped)
    counts = capped.counts(spec)
    assert mm.macs(counts) <= cap and lm.cost(counts) <= ms
    filled = fill_counts(capped, dict(lm.min_keep), ms)
    assert mm.macs(filled) <= cap and lm.cost(filled) <= ms
    assert mm.macs(filled) > 0.9 * cap or lm.cost(filled) > 0.9 * ms  # the fill spends the tighter budget
    with pytest.raises(TargetError, match="--macs-cap"):
        LatencyTarget(0.5, macs_cap=0)
    with pytest.raises(TargetError, match="raise --macs-cap"):
        latency_budget(model, LatencyTarget(0.9, macs_cap=1e-6), SIZE)
