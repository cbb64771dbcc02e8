"""Kernel-aligned widths (gan/pruning/align.py): per-group rounding to the channel block that stays
within the budget, keeps a search's own channels first, and refuses what cannot fit."""
from __future__ import annotations

import pytest
import torch

from gan.models import ResnetGenerator
from gan.pruning.align import align_counts, align_spec, align_to_budget, kernel_block, resolve_block
from gan.pruning.macs import MacsModel
from gan.pruning.targets import resolve_macs_target, spec_macs, uniform_spec


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return ResnetGenerator(ngf=32, n_blocks=3).eval()


@pytest.mark.parametrize("fraction", [0.25, 0.1])
def test_aligned_widths_are_block_multiples_within_the_budget(teacher, fraction):
    size, block = 64, 16
    target = resolve_macs_target(teacher, fraction, size)
    spec, _ = uniform_spec(teacher, target, size, criterion="l1")
    mm = MacsModel(teacher, size)
    before = mm.counts(spec)
    assert any(c % block for n, c in before.items() if mm.sizes[n] > block)  # L1's widths are not aligned
    after = align_counts(mm, before, target, block)
    for n, c in after.items():
        assert c % block == 0 or c == mm.sizes[n] or c == before[n] < block, (n, c)
        assert abs(c - before[n]) < 2 * block  # the allocation's shape is kept
    aligned = align_spec(teacher, spec, after)
    assert spec_macs(teacher, aligned, size) <= target
    assert spec_macs(teacher, aligned, size) >= 0.85 * target  # the budget is spent, block by block


def test_a_search_keeps_its_own_channels_first(teacher):
    g = teacher.channel_groups()[2]
    chosen = list(range(g.size - 20, g.size))  # deliberately not the most salient ones
    spec = {g.name: chosen}
    grown = align_spec(teacher, spec, {g.name: 32})[g.name]
    shrunk = align_spec(teacher, spec, {g.name: 16})[g.name]
    assert set(chosen) <= set(grown) and len(grown) == 32
    assert set(shrunk) <= set(chosen) and len(shrunk) == 16


def test_no_aligned_widths_within_the_budget_leaves_the_spec(teacher):
    class UnalignedIsCheaper(MacsModel):
        """A cost that rises when a count falls onto the block (a predicted latency need not fall
        with a count: gan.latency_model.ALIGN)."""

        def cost(self, counts):
            return super().cost(counts) * (2 if any(c % 16 == 0 for c in counts.values()) else 1)

    size = 64
    cm = UnalignedIsCheaper(teacher, size)
    spec, _ = uniform_spec(teacher, resolve_macs_target(teacher, 0.25, size), size, criterion="l1")
    target = cm.cost(cm.counts(spec))
    same, rec = align_to_budget(teacher, spec, cm, target, 16)
    assert same == spec and rec["aligned"] is False and "widths_after" not in rec


def test_block_values():
    assert resolve_block("auto") == kernel_block() and kernel_block() in (1, 8, 16)
    assert resolve_block(1) == 1 and resolve_block("16") == 16
    for bad in ("0", "x", -8):
        with pytest.raises(ValueError, match="--align must be auto or a channel multiple"):
            resolve_block(bad)


def test_an_aligned_env_task_clips_and_fills_on_block_multiples(teacher):
    from envs.task import PruningTask
    from gan.pruning.macs import fill_counts

    size, block = 64, 16
    task = PruningTask(teacher, size, 0.2, multiple=block, prior="l1")
    counts = {}
    for t, name in enumerate(task.names):  # every action's count: the minimum or a multiple (or full)
        counts[name] = task.count_for(t, 0.37, counts)
        assert counts[name] == task.min_counts[name] or counts[name] % block == 0 or \
            counts[name] == task.groups[t].size, (name, counts[name])
    filled = task.fill(counts)
    assert task.cost_model.cost(filled) <= task.target
    assert all(filled[n] >= counts[n] and (filled[n] == counts[n] or filled[n] % block == 0
                                           or filled[n] == task.cost_model.sizes[n]) for n in filled)
    single = fill_counts(task.cost_model, counts, task.target)  # channel by channel spends at least as much
    assert task.cost_model.cost(filled) <= task.cost_model.cost(single) <= task.target
