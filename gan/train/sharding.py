"""Per-rank data shards that add up to the global batches one process would train on.

Why not ``torch.utils.data.DistributedSampler``: it deals items round-robin over the whole epoch, so
rank r's k-th micro batch is not a slice of the k-th global batch of a 1-process run, and a resume
would have to replay the epoch to find its place.  ``ShardSampler`` draws one permutation per epoch
from ``seed + epoch`` (as the 1-process loader does), cuts it into global batches and gives rank r the
r-th contiguous slice of each: the union over ranks at step k is exactly the 1-process batch k, for
any world size, and a resume starts at (epoch, batch) without loading the skipped items.
An incomplete last global batch is dropped (``drop_last``) or filled with the epoch's first items, so
every rank always gets a full micro batch (no rank waits alone in a collective).
"""
from __future__ import annotations

import copy
import math

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler


class ShardSampler(Sampler[int]):
    """Indices of rank ``rank``'s micro batches (``global_batch // world_size`` items each)."""

    def __init__(self, n: int, global_batch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if n < 1:
            raise ValueError("cannot shard an empty dataset")
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by the {world_size} ranks")
        self.n, self.global_batch, self.rank, self.world_size = int(n), int(global_batch), int(rank), int(world_size)
        self.micro_batch = self.global_batch // self.world_size
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch, self.start = 0, 0
        self.worker_generator: torch.Generator | None = None  # the loader's: reseeded per epoch too

    @property
    def batches_per_epoch(self) -> int:
        full = self.n // self.global_batch
        return max(1, full) if self.drop_last else math.ceil(self.n / self.global_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Epoch ``epoch``'s order, starting at its global batch ``start_batch`` (resume)."""
        self.epoch, self.start = int(epoch), int(start_batch)
        if self.worker_generator is not None:
            self.worker_generator.manual_seed(self.seed + self.epoch)

    def order(self, epoch: int) -> list[int]:
        """The epoch's permutation of all items (the same on every rank)."""
        if not self.shuffle:
            return list(range(self.n))
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()

    def __iter__(self):
        order = self.order(self.epoch)
        for k in range(self.start, self.batches_per_epoch):
            first = k * self.global_batch + self.rank * self.micro_batch
            for j in range(first, first + self.micro_batch):
                yield order[j % self.n]  # wraps only to fill an incomplete last batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start) * self.micro_batch


def _plain_loader(data) -> DataLoader | None:
    """``data`` if it is a map-style DataLoader with a plain random/sequential sampler, else None."""
    if not isinstance(data, DataLoader) or not hasattr(data.dataset, "__getitem__"):
        return None
    if not isinstance(data.sampler, (RandomSampler, SequentialSampler)):
        return None
    if isinstance(data.sampler, RandomSampler) and (data.sampler.replacement or data.sampler._num_samples):
        return None
    if type(data.batch_sampler) is not BatchSampler:
        return None
    return data


def shard(data, global_batch: int, rank: int, world_size: int, seed: int):
    """(per-rank iterable, its ``ShardSampler``) for a DataLoader, or for a wrapper whose ``loader``
    attribute is one and which iterates it (``gan.train.distill.TeacherTargets``); None for anything
    else (lists, custom samplers, iterable datasets: the trainer then slices global batches).

    The loader's own ``batch_size`` is ignored: the trainer's global batch decides.  Its shuffling
    seed is its generator's initial seed (``gan.data.make_loader`` seeds it) or ``seed``.
    """
    inner = _plain_loader(data)
    wrapper = None
    if inner is None:
        inner = _plain_loader(getattr(data, "loader", None))
        if inner is None:
            return None
        wrapper = data
    base = inner.generator.initial_seed() if inner.generator is not None else int(seed)
    sampler = ShardSampler(len(inner.dataset), global_batch, rank, world_size,
                           shuffle=isinstance(inner.sampler, RandomSampler), seed=base, drop_last=inner.drop_last)
    workers = inner.num_workers
    sampler.worker_generator = torch.Generator().manual_seed(base)
    loader = DataLoader(inner.dataset, batch_size=sampler.micro_batch, sampler=sampler, num_workers=workers,
                        collate_fn=inner.collate_fn, pin_memory=inner.pin_memory, timeout=inner.timeout,
                        worker_init_fn=inner.worker_init_fn, generator=sampler.worker_generator,
                        multiprocessing_context=inner.multiprocessing_context if workers else None,
                        prefetch_factor=inner.prefetch_factor if workers else None,
                        persistent_workers=False)  # workers must see each epoch's dataset.set_epoch
    if wrapper is None:
        return loader, sampler
    wrapped = copy.copy(wrapper)
    wrapped.loader = loader
    return wrapped, sampler
