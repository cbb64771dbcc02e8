"""Shared pieces of the loaders: the input-error type, image listing/checking, tensors, augmentation.

Folders are checked eagerly from image headers (cheap), so a malformed dataset fails at
construction with one line naming the file, not hours later inside a DataLoader worker.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class DatasetError(ValueError):
    """Malformed or unknown dataset: a one-line message naming the file/folder and the expected layout."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(" ".join(str(message).split()))  # always exactly one line
        self.path = None if path is None else str(path)


def show(path: Path, root: Path) -> str:
    """Short display name of ``path``: relative to the dataset root's parent (``facades/train/1.jpg``)."""
    path, root = Path(path), Path(root)
    try:
        return str(Path(root.name) / path.relative_to(root))
    except ValueError:
        return str(path)


def fail(path: Path, root: Path, why: str) -> DatasetError:
    return DatasetError(f"{show(path, root)}: {why}", path)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden and non-image files are ignored."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS)


def subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith("."))


def check_image(path: Path, root: Path) -> tuple[int, int, str]:
    """(width, height, mode) from the header; PNG chunks are CRC-checked too (no pixel decode)."""
    try:
        with Image.open(path) as im:
            w, h, mode = im.width, im.height, im.mode
            if path.suffix.lower() == ".png":
                im.verify()
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        raise fail(path, root, f"unreadable or corrupt image ({type(e).__name__}: {e})") from e
    if w < 1 or h < 1:
        raise fail(path, root, f"empty image {w}x{h}")
    return w, h, mode


def load_image(path: Path, root: Path, mode: str | None = "RGB") -> Image.Image:
    """Decode fully (``mode=None`` keeps the stored mode, for label maps)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode and im.mode != mode else im.copy()
    except Exception as e:
        raise fail(path, root, f"unreadable or corrupt image ({type(e).__name__}: {e})") from e


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB → float CHW in [-1, 1]."""
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Float CHW in [-1, 1] → uint8 HWC (for saving / viewing generator outputs)."""
    a = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(1, 2, 0).numpy()


class Geometry:
    """Resize to ``size``; with ``augment``, pix2pix-style resize to ``load_size`` + random crop + h-flip.

    The draw is a pure function of (seed, epoch, index), so it is the same in any worker process
    and every image of one item (A, B, label) gets the same crop and flip.
    """

    def __init__(self, size: int, augment: bool = False, seed: int = 0, load_size: int | None = None):
        if int(size) < 1:
            raise DatasetError(f"size must be a positive int, got {size!r}")
        self.size, self.augment, self.seed = int(size), bool(augment), int(seed)
        self.load_size = int(load_size or round(self.size * 1.125)) if augment else self.size
        if self.load_size < self.size:
            raise DatasetError(f"load_size {load_size} is smaller than size {size}")
        self.epoch = 0

    def draw(self, index: int) -> tuple[int, int, bool] | None:
        if not self.augment:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        m = self.load_size - self.size
        return int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1)), bool(rng.random() < 0.5)

    def __call__(self, img: Image.Image, params, nearest: bool = False) -> Image.Image:
        resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
        s = self.load_size
        if img.size != (s, s):
            img = img.resize((s, s), resample)
        if params is not None:
            x, y, flip = params
            img = img.crop((x, y, x + self.size, y + self.size))
            if flip:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img
