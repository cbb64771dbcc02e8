"""The search scores on items that no reported number uses (issue #13 item 1, gan/data/splits.py)."""
import pytest
import torch

from agents.baselines.gan_compression import _held_out
from envs.backends import LocalBackend, LocalConfig
from gan import data as gdata
from gan.data.splits import report_split, search_indices
from gan.teacher_run import load_teacher_run
from tests.teachers import tiny_teacher


def test_search_indices_are_disjoint_and_seeded():
    score, fit = search_indices(50, 8, 16, seed=3)
    assert len(score) == 8 and len(fit) == 16 and not set(score) & set(fit)
    assert (score, fit) == search_indices(50, 8, 16, seed=3) and score != search_indices(50, 8, 16, seed=4)[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splits")
    return load_teacher_run(tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=2))


def _rows(x: torch.Tensor) -> set[bytes]:
    return {t.numpy().tobytes() for t in x}


def test_search_items_come_from_train_and_never_from_the_report_split(run):
    root = gdata.resolve_dataset(run.data, size=run.size)
    assert report_split(root) == "test"
    report = gdata.open_dataset(root, size=run.size, split="test")
    reported = _rows(torch.stack([report[i]["A"] for i in range(len(report))]))
    train = gdata.open_dataset(root, size=run.size, split="train")
    train_rows = _rows(torch.stack([train[i]["A"] for i in range(len(train))]))
    backend = LocalBackend.from_teacher_run(run, LocalConfig(eval_items=8, train_items=8))
    scored, fitted = _rows(backend.x), _rows(backend.train_x)
    assert len(scored) == 8 and scored <= train_rows and not scored & reported
    assert not fitted & reported and not fitted & scored  # K steps never train on the scored items
    assert _rows(_held_out(run, 8, 0)) == scored  # GAN Compression's evolution scores on the same items
