"""Which items a search may score on, and which split every reported number comes from (issue #13).

* **search items**: a seeded subset of the *train* split. Every search (the RL envs' backends, GAN
  Compression's evolution, random search) scores its candidates on these and on nothing else. The
  teacher was trained on them, and the final fine-tune sees them too; no reported number uses them.
* **backend training items**: another seeded subset of train, disjoint from the search items, for the
  K fine-tune steps a backend spends on each candidate (a candidate is not scored on what it was
  just trained on).
* **report split**: ``test`` (``val`` for datasets that ship no test split, e.g. edges2shoes; the
  record says which). Every fidelity number a user reads comes from it: ``prune``/``finetune``'s
  before/after figures, ``benchmark``'s table, the demo's table.
"""
from __future__ import annotations

from pathlib import Path

import torch
from gan.data.datasets import open_dataset

SEARCH_SPLIT = "train"


def search_indices(n_train: int, n_score: int, n_fit: int, seed: int) -> tuple[list[int], list[int]]:
    """(items to score on, items for a backend's K fine-tune steps): disjoint seeded subsets of the
    train split's ``n_train`` items.  With fewer items than asked for, the scoring items come first."""
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(int(seed))).tolist()
    score = perm[: min(n_score, n_train)]
    fit = perm[len(score): len(score) + n_fit] or score  # a tiny train split: train on the scored items
    return score, fit


def stack(dataset, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of a paired dataset's items as two batches."""
    items = [dataset[i] for i in indices]
    return torch.stack([b["A"] for b in items]), torch.stack([b["B"] for b in items])


def search_batches(root, size: int, n_score: int, n_fit: int, seed: int):
    """((x, y) to score on, (x, y) to fine-tune on): see ``search_indices``."""
    ds = open_dataset(root, size=size, split=SEARCH_SPLIT)
    score, fit = search_indices(len(ds), n_score, n_fit, seed)
    return stack(ds, score), stack(ds, fit)


def report_split(root) -> str:
    """``test`` when the dataset has one, else ``val``."""
    for split in ("test", "val"):
        if (Path(root) / split).is_dir() or _has(root, split, open_dataset):
            return split
    raise FileNotFoundError(f"{root}: no test or val split to report on; add {root}/test/")


def _has(root, split: str, open_dataset) -> bool:
    try:
        return len(open_dataset(root, split=split)) > 0
    except (FileNotFoundError, ValueError, OSError):
        return False
