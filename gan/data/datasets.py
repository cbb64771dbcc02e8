"""Loaders for the four standard image-to-image layouts, layout detection, and a seeded DataLoader.

Layouts (``<split>`` is train / val / test):

* aligned (pix2pix):      ``root/<split>/*.png``, each image A|B side by side (even width).
* unaligned (CycleGAN):   ``root/<split>A/*``, ``root/<split>B/*`` (unpaired, any counts).
* classes:                ``root/<split>/<class>/*`` or ``root/<class>/*`` (no split folders:
  every split reads the same images); class index = position in the sorted class names.
* labels (labels→photo):  ``root/classes.json`` (``{"classes": [{"name", "color": [r,g,b]}, ...]}``
  or a plain list of names), ``root/<split>/photos/<stem>.png|jpg`` and
  ``root/<split>/labels/<stem>.png`` (8-bit class ids, mode L or P; 255 = ignore).

All images come out as float CHW tensors in [-1, 1], resized to ``size``×``size`` (non-square
images are squashed, as pix2pix does); ``augment=True`` adds a seeded random crop + flip.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from gan.data.base import (DatasetError, Geometry, check_image, fail, list_images, load_image, show,
                           subdirs, to_tensor)

SPLITS = ("train", "val", "test")
MARKER = "ganprune_dataset.json"  # written by gan.data.builtin.prepare; names the layout


def _root(root) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder", root)
    return root


def _images(folder: Path, root: Path, expected: str) -> list[Path]:
    if not folder.is_dir():
        raise fail(folder, root, f"missing folder; {expected}")
    files = list_images(folder)
    if not files:
        raise fail(folder, root, f"no images (.png/.jpg) in this folder; {expected}")
    return files


class _Base(Dataset):
    layout = ""

    def __init__(self, root, split: str, size: int, augment: bool, seed: int, load_size: int | None):
        self.root, self.split = _root(root), split
        self.size = int(size)
        self.geometry = Geometry(size, augment, seed, load_size)

    def set_epoch(self, epoch: int) -> None:
        """New random crops / flips / B partners per epoch (still deterministic given the seed)."""
        self.geometry.epoch = int(epoch)

    def _image(self, path: Path, params) -> torch.Tensor:
        return to_tensor(self.geometry(load_image(path, self.root), params))


class AlignedDataset(_Base):
    """pix2pix pairs: ``root/<split>/*.png`` with A|B side by side → ``{"A", "B", "path"}``."""

    layout = "aligned"
    EXPECTED = "aligned pix2pix images hold A|B side by side in <root>/<split>/*.png (expected even width)"

    def __init__(self, root, split: str = "train", size: int = 256, direction: str = "AtoB",
                 augment: bool = False, seed: int = 0, load_size: int | None = None):
        super().__init__(root, split, size, augment, seed, load_size)
        if direction not in ("AtoB", "BtoA"):
            raise DatasetError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        self.direction = direction
        self.paths = _images(self.root / split, self.root, self.EXPECTED)
        first = None
        for p in self.paths:
            w, h, _ = check_image(p, self.root)
            if w % 2:
                raise fail(p, self.root, f"width {w} is odd; {self.EXPECTED}")
            if first is None:
                first = (p, w, h)
            elif (w, h) != first[1:]:
                raise fail(p, self.root, f"size {w}x{h} differs from {first[1]}x{first[2]} of "
                                         f"{first[0].name}; all pairs of a split must have one size")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        p = self.paths[i]
        img = load_image(p, self.root)
        w, h = img.size
        a, b = img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))
        if self.direction == "BtoA":
            a, b = b, a
        params = self.geometry.draw(i)
        return {"A": to_tensor(self.geometry(a, params)), "B": to_tensor(self.geometry(b, params)),
                "path": str(p)}


class UnalignedDataset(_Base):
    """CycleGAN: ``root/<split>A`` and ``root/<split>B``; length max(|A|, |B|), B partner seeded."""

    layout = "unaligned"

    def __init__(self, root, split: str = "train", size: int = 256, augment: bool = False,
                 seed: int = 0, load_size: int | None = None):
        super().__init__(root, split, size, augment, seed, load_size)
        da, db = self.root / f"{split}A", self.root / f"{split}B"
        expected = f"unaligned CycleGAN data needs both {split}A/ and {split}B/ image folders"
        for d, other in ((da, db), (db, da)):
            if not d.is_dir() and other.is_dir():
                raise fail(d, self.root, f"missing folder (found {other.name}/); {expected}")
        self.paths_a = _images(da, self.root, expected)
        self.paths_b = _images(db, self.root, expected)
        for p in self.paths_a + self.paths_b:
            check_image(p, self.root)

    def __len__(self):
        return max(len(self.paths_a), len(self.paths_b))

    def __getitem__(self, i):
        g = self.geometry
        j = int(np.random.default_rng([g.seed, g.epoch, i, 1]).integers(len(self.paths_b)))
        pa, pb = self.paths_a[i % len(self.paths_a)], self.paths_b[j]
        return {"A": self._image(pa, g.draw(i)), "B": self._image(pb, g.draw(i + len(self))),
                "path_A": str(pa), "path_B": str(pb)}

    def domain_b(self, n: int | None = None) -> torch.Tensor:
        """The split's first ``n`` domain-B images in file order, each once: the real set an A→B
        generator's FID is measured against (``__getitem__``'s B partners are drawn with repeats)."""
        return torch.stack([self._image(p, self.geometry.draw(len(self) + i))
                            for i, p in enumerate(self.paths_b[:n])])


class ClassFolderDataset(_Base):
    """``root/<split>/<class>/*`` (or ``root/<class>/*``) → ``{"image", "label", "path"}``."""

    layout = "classes"

    def __init__(self, root, split: str = "train", size: int = 256, augment: bool = False,
                 seed: int = 0, load_size: int | None = None):
        super().__init__(root, split, size, augment, seed, load_size)
        expected = "class-folder data keeps images in <root>/<split>/<class>/ (or <root>/<class>/)"
        present = [s for s in SPLITS if (self.root / s).is_dir()]
        if present and split not in present:
            raise fail(self.root / split, self.root, f"missing split folder (found {', '.join(present)}); "
                                                     f"{expected}")
        base = self.root / split if present else self.root
        self.classes = [d.name for d in subdirs(base)]
        if not self.classes:
            raise fail(base, self.root, f"no class folders; {expected}")
        self.items: list[tuple[Path, int]] = []
        for k, c in enumerate(self.classes):
            files = list_images(base / c)
            if not files:
                raise fail(base / c, self.root, f"empty class folder; {expected}")
            self.items += [(p, k) for p in files]
        for p, _ in self.items:
            check_image(p, self.root)
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        p, k = self.items[i]
        return {"image": self._image(p, self.geometry.draw(i)), "label": k, "path": str(p)}


def read_classes(root: Path) -> tuple[list[str], np.ndarray]:
    """Class names and an (N, 3) uint8 palette from ``root/classes.json``."""
    f = root / "classes.json"
    expected = 'expected {"classes": [{"name": ..., "color": [r, g, b]}, ...]} or a list of names'
    try:
        spec = json.loads(f.read_text())
    except FileNotFoundError:
        raise fail(f, root, f"missing; labels→photo data needs it ({expected})") from None
    except (OSError, ValueError) as e:
        raise fail(f, root, f"unreadable JSON ({e}); {expected}") from e
    entries = spec.get("classes") if isinstance(spec, dict) else spec
    if not isinstance(entries, list) or not 0 < len(entries) < 255:
        raise fail(f, root, f"needs 1..254 classes; {expected}")
    names, colors = [], []
    for k, e in enumerate(entries):
        e = {"name": e} if isinstance(e, str) else e
        if not isinstance(e, dict) or "name" not in e:
            raise fail(f, root, f"class {k} has no name; {expected}")
        names.append(str(e["name"]))
        c = e.get("color") or default_palette(len(entries))[k].tolist()
        if not (isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v < 256 for v in c)):
            raise fail(f, root, f"class {e['name']!r} color {c!r} is not [r, g, b] in 0..255")
        colors.append(c)
    return names, np.array(colors, dtype=np.uint8)


def default_palette(n: int) -> np.ndarray:
    """Distinct, deterministic colours (golden-ratio hues) for label maps without given colours."""
    import colorsys

    return np.array([[round(255 * v) for v in colorsys.hsv_to_rgb((k * 0.618034) % 1, 0.75, 0.9)]
                     for k in range(n)], dtype=np.uint8)


class LabelsDataset(_Base):
    """labels→photo: ``{"A": label map as image, "B": photo, "label": LongTensor HxW, "path"}``.

    ``label_mode="color"`` renders A with the class palette; ``"onehot"`` gives N channels of ±1.
    Pixels labelled 255 (ignore) are black / all −1 in A and stay 255 in ``label``.
    """

    layout = "labels"
    IGNORE = 255

    def __init__(self, root, split: str = "train", size: int = 256, label_mode: str = "color",
                 augment: bool = False, seed: int = 0, load_size: int | None = None):
        super().__init__(root, split, size, augment, seed, load_size)
        if label_mode not in ("color", "onehot"):
            raise DatasetError(f"label_mode must be 'color' or 'onehot', got {label_mode!r}")
        self.label_mode = label_mode
        self.classes, self.palette = read_classes(self.root)
        expected = (f"labels→photo data keeps <root>/{split}/photos/<name>.png and "
                    f"<root>/{split}/labels/<name>.png (8-bit class ids)")
        self.photos = _images(self.root / split / "photos", self.root, expected)
        label_dir = self.root / split / "labels"
        labels = {p.stem: p for p in _images(label_dir, self.root, expected)}
        self.labels = []
        for p in self.photos:
            lab = labels.get(p.stem)
            if lab is None:
                raise fail(p, self.root, f"no label map {show(label_dir, self.root)}/{p.stem}.png; {expected}")
            pw, ph, _ = check_image(p, self.root)
            lw, lh, mode = check_image(lab, self.root)
            if mode not in ("L", "P"):
                raise fail(lab, self.root, f"label map mode {mode} is not 8-bit class ids (L or P); {expected}")
            if (lw, lh) != (pw, ph):
                raise fail(lab, self.root, f"label map is {lw}x{lh} but its photo is {pw}x{ph}")
            self.labels.append(lab)

    def __len__(self):
        return len(self.photos)

    def __getitem__(self, i):
        params = self.geometry.draw(i)
        photo = self._image(self.photos[i], params)
        lab_img = load_image(self.labels[i], self.root, mode=None)
        if lab_img.mode == "P":  # keep indices, do not map through the PNG palette
            lab_img = Image.fromarray(np.asarray(lab_img, dtype=np.uint8))
        lab = np.asarray(self.geometry(lab_img, params, nearest=True), dtype=np.uint8)
        bad = (lab >= len(self.classes)) & (lab != self.IGNORE)
        if bad.any():
            raise fail(self.labels[i], self.root, f"class id {int(lab[bad].max())} ≥ {len(self.classes)} "
                                                  f"classes of classes.json (255 = ignore)")
        label = torch.from_numpy(lab.astype(np.int64))
        return {"A": self.encode(label), "B": photo, "label": label, "path": str(self.photos[i])}

    def encode(self, label: torch.Tensor) -> torch.Tensor:
        """Label ids (HxW) → the generator input A in [-1, 1] (palette colours or one-hot)."""
        valid = label != self.IGNORE
        safe = torch.where(valid, label, torch.zeros_like(label))
        if self.label_mode == "onehot":
            a = torch.nn.functional.one_hot(safe, len(self.classes)).permute(2, 0, 1).float()
            return (a * valid).mul_(2).sub_(1)
        rgb = torch.from_numpy(self.palette)[safe] * valid[..., None]
        return rgb.permute(2, 0, 1).float().div_(127.5).sub_(1.0)


DATASETS = {c.layout: c for c in (AlignedDataset, UnalignedDataset, ClassFolderDataset, LabelsDataset)}


def detect_layout(root) -> str:
    """One of ``DATASETS``' keys, from the built-in marker or the folder structure."""
    root = _root(root)
    marker = root / MARKER
    if marker.is_file():
        try:
            layout = json.loads(marker.read_text()).get("layout")
        except (OSError, ValueError, AttributeError):
            layout = None
        if layout in DATASETS:
            return layout
    if (root / "classes.json").is_file():
        return "labels"
    if any((root / f"{s}{h}").is_dir() for s in SPLITS for h in "AB"):
        return "unaligned"
    for s in SPLITS:
        d = root / s
        if d.is_dir():
            if list_images(d):
                return "aligned"
            if (d / "photos").is_dir() or (d / "labels").is_dir():
                return "labels"  # read_classes then reports the missing classes.json
            if subdirs(d):
                return "classes"
    if subdirs(root) and any(list_images(d) for d in subdirs(root)):
        return "classes"
    expected = ("expected aligned <root>/<split>/*.png (A|B side by side), unaligned <root>/trainA/ + "
                "trainB/, class folders <root>/<split>/<class>/*.png, or labels <root>/classes.json + "
                "<root>/<split>/photos/ + labels/")
    empty = [root / s for s in SPLITS if (root / s).is_dir()]
    if empty:  # name the empty split, not only "cannot detect": that is what the user must fill
        raise fail(empty[0], root, f"empty split folder (no images); {expected}")
    raise DatasetError(f"{root}: cannot detect the dataset layout; {expected}", root)


def open_dataset(root, size: int = 256, split: str = "train", **kwargs) -> Dataset:
    """Detect the layout of ``root`` and build its dataset (extra kwargs go to the class)."""
    layout = detect_layout(root)
    return DATASETS[layout](root, split=split, size=size, **kwargs)


def _seed_worker(worker_id: int) -> None:
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """DataLoader whose shuffling order (and worker seeds) follow ``seed``."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                      num_workers=num_workers, drop_last=drop_last, worker_init_fn=_seed_worker,
                      persistent_workers=num_workers > 0)
