"""gan.data: the four loaders, one-line DatasetErrors for malformed folders, built-in datasets."""
import hashlib
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gan import data as D
from gan.data import builtin as B

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def png(path, size=(8, 4), color=RED, mode="RGB", array=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array) if array is not None else Image.new(mode, size, color)
    img.save(path)
    return path


def pair(path, w=4, h=4, a=RED, b=BLUE):
    arr = np.zeros((h, 2 * w, 3), np.uint8)
    arr[:, :w], arr[:, w:] = a, b
    return png(path, array=arr)


def rgb(t):
    """Mean colour of a [-1, 1] CHW tensor as uint8 triple."""
    return tuple(int(v) for v in D.to_uint8(t).reshape(-1, 3).mean(0).round())


# ---------------------------------------------------------------- loaders

def test_aligned_halves_direction_and_resize(tmp_path):
    root = tmp_path / "facades"
    for i in range(3):
        pair(root / "train" / f"{i}.png", w=6, h=6)
    ds = D.AlignedDataset(root, "train", size=8)
    x = ds[0]
    assert len(ds) == 3 and x["A"].shape == x["B"].shape == (3, 8, 8)
    assert x["A"].min() >= -1 and x["A"].max() <= 1
    assert rgb(x["A"]) == RED and rgb(x["B"]) == BLUE and x["path"].endswith("0.png")
    y = D.AlignedDataset(root, "train", size=8, direction="BtoA")[0]
    assert rgb(y["A"]) == BLUE and rgb(y["B"]) == RED
    assert isinstance(D.open_dataset(root, size=8, split="train"), D.AlignedDataset)


def test_augment_is_seeded_and_shared_by_a_and_b(tmp_path):
    root = tmp_path / "p"
    arr = np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8)
    arr[:, 16:] = arr[:, :16]  # B == A, so an identical crop/flip keeps them equal
    png(root / "train" / "0.png", array=arr)
    mk = lambda seed: D.AlignedDataset(root, "train", size=12, augment=True, seed=seed, load_size=16)  # noqa: E731
    a, b = mk(0), mk(0)
    assert torch.equal(a[0]["A"], b[0]["A"]) and torch.equal(a[0]["A"], a[0]["B"])
    draws = set()
    for e in range(8):
        a.set_epoch(e)
        draws.add(a.geometry.draw(0))
    assert len(draws) > 1 and a[0]["A"].shape == (3, 12, 12)


def test_unaligned_length_and_seeded_partner(tmp_path):
    root = tmp_path / "h2z"
    for i in range(3):
        png(root / "trainA" / f"{i}.png", color=RED)
    for i in range(5):
        png(root / "trainB" / f"{i}.png", size=(5, 7), color=BLUE)
    ds = D.UnalignedDataset(root, "train", size=4)
    assert len(ds) == 5 and ds[4]["path_A"].endswith("1.png")
    assert [ds[i]["path_B"] for i in range(5)] == [D.UnalignedDataset(root, size=4)[i]["path_B"] for i in range(5)]
    x = ds[0]
    assert rgb(x["A"]) == RED and rgb(x["B"]) == BLUE and x["B"].shape == (3, 4, 4)
    assert isinstance(D.open_dataset(root, size=4), D.UnalignedDataset)


@pytest.mark.parametrize("with_split", [True, False])
def test_class_folders(tmp_path, with_split):
    root = tmp_path / "cls"
    base = root / "train" if with_split else root
    for name, color, n in (("zebra", RED, 2), ("apple", GREEN, 1)):
        for i in range(n):
            png(base / name / f"{i}.png", size=(6, 3), color=color)
    ds = D.open_dataset(root, size=4, split="train")
    assert isinstance(ds, D.ClassFolderDataset) and ds.classes == ["apple", "zebra"] and len(ds) == 3
    assert [ds[i]["label"] for i in range(3)] == [0, 1, 1] and rgb(ds[0]["image"]) == GREEN
    if not with_split:  # without split folders every split reads the same images
        assert len(D.ClassFolderDataset(root, "test", size=4)) == 3


def labels_root(tmp_path, n=2, size=6):
    root = tmp_path / "lab"
    root.mkdir()
    (root / "classes.json").write_text(json.dumps(
        {"classes": [{"name": "a", "color": [255, 0, 0]}, {"name": "b", "color": [0, 0, 255]},
                     {"name": "c", "color": [0, 255, 0]}]}))
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = rng.integers(0, 3, (size, size)).astype(np.uint8)
        png(root / "train" / "labels" / f"{i}.png", array=lab)
        png(root / "train" / "photos" / f"{i}.png", size=(size, size), color=GREEN)
    return root


def test_labels_dataset_maps_match_labels(tmp_path):
    root = labels_root(tmp_path)
    ds = D.open_dataset(root, size=6, split="train")
    assert isinstance(ds, D.LabelsDataset) and ds.classes == ["a", "b", "c"]
    x = ds[1]
    want = np.asarray(Image.open(root / "train" / "labels" / "1.png"))
    assert x["label"].dtype == torch.int64 and np.array_equal(x["label"].numpy(), want)
    assert np.array_equal(D.to_uint8(x["A"]), ds.palette[want])
    oh = D.LabelsDataset(root, "train", size=6, label_mode="onehot")[1]["A"]
    assert oh.shape == (3, 6, 6) and torch.equal(oh.argmax(0), x["label"]) and set(oh.unique().tolist()) == {-1, 1}
    # resizing uses nearest neighbour: ids stay ids
    assert set(D.LabelsDataset(root, "train", size=13)[0]["label"].unique().tolist()) <= {0, 1, 2}


def test_labels_ignore_and_out_of_range(tmp_path):
    root = labels_root(tmp_path, n=1, size=4)
    lab = np.array([[255, 0, 1, 2]] * 4, np.uint8)
    png(root / "train" / "labels" / "0.png", array=lab)
    x = D.LabelsDataset(root, "train", size=4)[0]
    assert x["label"][0, 0] == 255 and (x["A"][:, :, 0] == -1).all()
    png(root / "train" / "labels" / "0.png", array=np.full((4, 4), 7, np.uint8))
    with pytest.raises(D.DatasetError, match=r"lab/train/labels/0.png: class id 7"):
        D.LabelsDataset(root, "train", size=4)[0]


def test_make_loader_is_seeded(tmp_path):
    root = tmp_path / "cls"
    for i in range(10):
        png(root / "train" / "k" / f"{i:02d}.png", size=(4, 4), color=(i * 20, 0, 0))
    ds = D.open_dataset(root, size=4)
    order = lambda seed: [p for b in D.make_loader(ds, 3, shuffle=True, seed=seed) for p in b["path"]]  # noqa
    assert order(1) == order(1) and order(1) != order(2) and sorted(order(1)) == sorted(order(2))
    batch = next(iter(D.make_loader(ds, 4, shuffle=False, seed=0)))
    assert batch["image"].shape == (4, 3, 4, 4) and batch["label"].dtype == torch.int64


# ---------------------------------------------------------------- malformed folders

def _corrupt(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"this is not an image")


def _truncate(p):
    png(p, size=(16, 8), array=np.random.default_rng(0).integers(0, 255, (8, 16, 3), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:-30])


MALFORMED = {  # case → (builder(root), dataset factory, text the message must contain)
    "missing split": (lambda r: pair(r / "train" / "0.png"), lambda r: D.AlignedDataset(r, "val", 4),
                      "ds/val: missing folder"),
    "missing half": (lambda r: png(r / "trainA" / "0.png"), lambda r: D.UnalignedDataset(r, "train", 4),
                     "ds/trainB: missing folder (found trainA/)"),
    "odd width": (lambda r: png(r / "train" / "12.jpg", size=(511, 256)), lambda r: D.AlignedDataset(r, "train", 4),
                  "ds/train/12.jpg: width 511 is odd"),
    "empty split": (lambda r: (r / "test").mkdir(parents=True), lambda r: D.AlignedDataset(r, "test", 4),
                    "ds/test: no images"),
    "empty B": (lambda r: (png(r / "trainA" / "0.png"), (r / "trainB").mkdir()),
                lambda r: D.UnalignedDataset(r, "train", 4), "ds/trainB: no images"),
    "corrupt": (lambda r: (pair(r / "train" / "0.png"), _corrupt(r / "train" / "1.png")),
                lambda r: D.AlignedDataset(r, "train", 4), "ds/train/1.png: unreadable or corrupt image"),
    "truncated": (lambda r: _truncate(r / "trainB" / "x.png") or png(r / "trainA" / "0.png"),
                  lambda r: D.UnalignedDataset(r, "train", 4), "ds/trainB/x.png: unreadable or corrupt"),
    "mixed sizes": (lambda r: (pair(r / "train" / "0.png", w=4), pair(r / "train" / "1.png", w=5)),
                    lambda r: D.AlignedDataset(r, "train", 4), "ds/train/1.png: size 10x4 differs from 8x4"),
    "empty class": (lambda r: (png(r / "train" / "cat" / "0.png"), (r / "train" / "dog").mkdir()),
                    lambda r: D.ClassFolderDataset(r, "train", 4), "ds/train/dog: empty class folder"),
    "no classes.json": (lambda r: (png(r / "train" / "photos" / "0.png"), png(r / "train" / "labels" / "0.png")),
                        lambda r: D.open_dataset(r, 4), "ds/classes.json: missing"),
    "label missing": (lambda r: (png(r / "train" / "photos" / "0.png"), png(r / "train" / "labels" / "1.png",
                                                                          mode="L", color=0),
                                 (r / "classes.json").write_text('["a", "b"]')),
                      lambda r: D.LabelsDataset(r, "train", 4), "ds/train/photos/0.png: no label map"),
    "label size": (lambda r: (png(r / "train" / "photos" / "0.png", size=(4, 4)),
                              png(r / "train" / "labels" / "0.png", size=(5, 4), mode="L", color=0),
                              (r / "classes.json").write_text('["a"]')),
                   lambda r: D.LabelsDataset(r, "train", 4), "ds/train/labels/0.png: label map is 5x4"),
    "undetectable": (lambda r: r.mkdir(), lambda r: D.open_dataset(r, 4), "cannot detect the dataset layout"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_folder_raises_one_line(tmp_path, case):
    build, factory, text = MALFORMED[case]
    root = tmp_path / "ds"
    build(root)
    with pytest.raises(D.DatasetError) as e:
        factory(root)
    msg = str(e.value)
    assert text in msg and "\n" not in msg, msg
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------- built-in datasets

def digest(path):
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def small_counts(monkeypatch):
    """Few items per split, so every built-in can be generated twice within the test budget."""
    for name, spec in B.BUILTIN.items():
        monkeypatch.setitem(spec, "counts", {"train": 6, "val": 2, "test": 3})


def test_builtin_deterministic_and_openable(tmp_path, small_counts):
    for name in B.BUILTIN:
        p1 = D.prepare(name, root=tmp_path / "r1", size=32)
        p2 = D.prepare(name, root=tmp_path / "r2", size=32)
        assert p1.name == p2.name == f"{name}_32" and digest(p1) == digest(p2), name
        assert digest(D.prepare(name, root=tmp_path / "r1", size=32, seed=1)) != digest(p1)
        for split in ("train", "val", "test"):
            ds = D.open_dataset(p1, size=32, split=split)
            assert ds.layout == B.BUILTIN[name]["layout"]
            x = ds[0]
            assert all(v.shape[-2:] == (32, 32) for v in x.values() if torch.is_tensor(v))


def test_builtin_cache_marker_and_force(tmp_path, small_counts):
    p = D.prepare("photoclasses", root=tmp_path, size=16)
    f = p / "train" / "astronaut" / "0000.png"
    stamp = f.stat().st_mtime_ns
    t = time.perf_counter()
    assert D.prepare("photoclasses", root=tmp_path, size=16) == p
    assert time.perf_counter() - t < 0.05 and f.stat().st_mtime_ns == stamp
    (p / B.MARKER).unlink()
    f.unlink()  # a half-written set (no marker) is remade
    assert D.prepare("photoclasses", root=tmp_path, size=16) == p and f.is_file()
    stamp = f.stat().st_mtime_ns
    D.prepare("photoclasses", root=tmp_path, size=16, force=True)
    assert f.stat().st_mtime_ns != stamp
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temp folders left


def test_builtin_labels_exact_and_classes(tmp_path, small_counts):
    p = D.prepare("labels2textures", root=tmp_path, size=32)
    ds = D.open_dataset(p, size=32, split="train")
    assert ds.classes == list(B.TEXTURES)
    for i in range(len(ds)):
        x = ds[i]
        want = np.asarray(Image.open(p / "train" / "labels" / f"{i:04d}.png"))
        assert np.array_equal(x["label"].numpy(), want)
        assert np.array_equal(D.to_uint8(x["A"]), ds.palette[want])


def test_builtin_full_counts_and_env_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GANPRUNE_DATA", str(tmp_path))
    p = D.resolve_dataset("edges2photos", size=64)
    assert p == tmp_path / "edges2photos_64"
    info = {d["name"]: d for d in D.list_builtin()}["edges2photos"]
    for split, n in info["splits"].items():
        ds = D.open_dataset(p, size=64, split=split)
        assert len(ds) == n
    x = ds[0]
    assert x["A"].shape == x["B"].shape == (3, 64, 64)
    assert set(D.to_uint8(x["A"]).reshape(-1).tolist()) <= {0, 255}  # black-on-white edges


def test_split_regions_are_disjoint():
    for size in [(640, 427), (300, 451), (512, 512)]:
        img = Image.new("RGB", size)
        boxes = [B._region(img, s) for s in ("train", "val", "test")]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                overlap_w = min(a[2], b[2]) - max(a[0], b[0])
                overlap_h = min(a[3], b[3]) - max(a[1], b[1])
                assert overlap_w <= 0 or overlap_h <= 0


def test_unknown_names_and_paths(tmp_path):
    with pytest.raises(D.DatasetError, match="unknown built-in dataset 'nope'; known: edges2photos"):
        D.prepare("nope", root=tmp_path)
    with pytest.raises(D.DatasetError, match="neither a built-in dataset"):
        D.resolve_dataset(str(tmp_path / "missing"), size=8)
    root = tmp_path / "mine"
    pair(root / "train" / "0.png")
    assert D.resolve_dataset(str(root), size=8) == root
    png(root / "test" / "0.png", size=(7, 4))  # an odd width in any present split is reported
    with pytest.raises(D.DatasetError, match="mine/test/0.png: width 7 is odd"):
        D.resolve_dataset(root, size=8)
