"""Per-rank data shards (gan/train/sharding.py): N ranks see the 1-process global batches, resumable."""
import pytest
import torch

from gan.data import make_loader
from gan.train.sharding import ShardSampler, shard


def _steps(n, batch, world, drop_last, epoch=0, start=0):
    """Global batches of one epoch as the union of the ranks' micro batches, step by step."""
    per_rank = []
    for r in range(world):
        s = ShardSampler(n, batch, r, world, shuffle=True, seed=3, drop_last=drop_last)
        s.set_epoch(epoch, start)
        idx = list(s)
        assert len(idx) == len(s) and len(idx) % s.micro_batch == 0
        per_rank.append([idx[i:i + s.micro_batch] for i in range(0, len(idx), s.micro_batch)])
    return [sum((p[k] for p in per_rank), []) for k in range(len(per_rank[0]))]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [2, 4])
def test_ranks_add_up_to_the_one_process_batches(world, drop_last):
    one = _steps(10, 4, 1, drop_last)
    assert _steps(10, 4, world, drop_last) == one
    assert len(one) == (2 if drop_last else 3) and all(len(b) == 4 for b in one)
    assert sorted(sum(one[:2], [])) == sorted(set(sum(one[:2], [])))  # a permutation: no repeats in full batches
    if not drop_last:  # the incomplete last batch is filled with the epoch's first items
        assert one[2][2:] == one[0][:2]


def test_epochs_differ_and_a_resume_starts_at_its_batch():
    assert _steps(12, 4, 2, True, epoch=0) != _steps(12, 4, 2, True, epoch=1)
    assert _steps(12, 4, 2, True, epoch=1, start=2) == _steps(12, 4, 2, True, epoch=1)[2:]


def test_smaller_dataset_than_the_batch_still_gives_full_batches():
    assert _steps(3, 4, 2, True) == _steps(3, 4, 1, True) and len(_steps(3, 4, 1, True)[0]) == 4


def test_indivisible_batch_is_refused():
    with pytest.raises(ValueError, match="not divisible"):
        ShardSampler(10, 3, 0, 2)


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"A": torch.tensor([float(i)]), "B": torch.tensor([float(i)])}


class _Wrapper:  # like gan.train.distill.TeacherTargets
    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for b in self.loader:
            yield {"A": b["A"] * 10}


def test_shard_rebuilds_loaders_and_wrappers_and_leaves_other_iterables():
    loader = make_loader(_Items(), batch_size=4, shuffle=True, seed=5)
    local, sampler = shard(loader, 4, rank=1, world_size=2, seed=0)
    assert sampler.seed == 5 and sampler.micro_batch == 2
    batches = [b["A"].flatten().tolist() for b in local]
    assert len(batches) == 2 and all(len(b) == 2 for b in batches)
    wrapped, _ = shard(_Wrapper(loader), 4, rank=1, world_size=2, seed=0)
    assert [b["A"].flatten().tolist() for b in wrapped] == [[10 * v for v in b] for b in batches]
    assert shard([torch.zeros(4)], 4, 0, 1, 0) is None
