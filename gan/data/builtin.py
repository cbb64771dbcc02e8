"""Built-in datasets generated offline from the photos bundled in scikit-image and scikit-learn.

No downloads: every source image ships inside the installed wheels.  Generation is a pure function
of (name, size, seed), so the same call writes byte-identical PNGs anywhere with the same library
versions.  Splits never share pixels: each source photo is cut into a train region (left 70 %), a
val region (right 28 %, top 39 %) and a test region (right 28 %, bottom 59 %), 2 % apart, and the
crops of a split come only from its region (crop sides are 25–50 % of the photo's short side, resized).

* ``edges2photos`` (aligned): Canny edges of a photo crop, black on white | the crop.
* ``photo2painting`` (unaligned): A = plain crops of 5 photos; B = crops of 5 *other* photos,
  stylised deterministically (median smoothing, 8-colour median-cut posterisation, more saturation,
  dark Canny outlines), so no A image has a B partner.
* ``labels2textures`` (labels): random warped-Voronoi layouts (3–8 cells), each cell filled with a
  crop of one class's texture (7 classes: tinted brick / grass / gravel, and boxes of bundled photos:
  stars, foliage, petals, sky); the label map is exact per pixel.
* ``photoclasses`` (classes): crops of 10 photos, class = source photo.

``prepare`` writes ``<root>/<name>_<size>[_s<seed>]/`` into a temporary folder, writes the marker
``ganprune_dataset.json`` last and renames the folder into place, so an interrupted run is redone.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from gan.data.base import DatasetError
from gan.data.datasets import MARKER, detect_layout, open_dataset

VERSION = 1  # bump when generation changes, so cached copies are remade


def _package_dir(name: str) -> Path:
    """Installed package folder, found without importing it (importing sklearn costs ~2 s)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"built-in datasets need the {name} package installed (its bundled photos)")
    return Path(list(spec.submodule_search_locations)[0])


def _skimage_dir() -> Path:
    return _package_dir("skimage") / "data"


def _sklearn_dir() -> Path:
    return _package_dir("sklearn") / "datasets" / "images"


PHOTOS = {  # name → (library, file)
    "astronaut": ("skimage", "astronaut.png"), "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"), "rocket": ("skimage", "rocket.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"), "hubble": ("skimage", "hubble_deep_field.jpg"),
    "ihc": ("skimage", "ihc.png"), "retina": ("skimage", "retina.jpg"),
    "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg"),
}
TEXTURES = {  # class → (photo key or skimage grey file, box in it, RGB tint for grey, palette colour)
    "brick": ("brick.png", None, (200, 110, 80), (180, 60, 40)),
    "grass": ("grass.png", None, (110, 170, 70), (60, 160, 60)),
    "gravel": ("gravel.png", None, (170, 160, 145), (150, 150, 150)),
    "stars": ("hubble", None, None, (30, 30, 120)),
    "foliage": ("flower", (460, 0, 640, 380), None, (0, 110, 110)),
    "petals": ("flower", (200, 120, 410, 320), None, (240, 150, 60)),
    "sky": ("china", (390, 0, 640, 110), None, (140, 190, 255)),
}
PHOTO_A = ("astronaut", "coffee", "rocket", "china", "ihc")
PHOTO_B = ("chelsea", "flower", "motorcycle", "hubble", "retina")


@functools.lru_cache(maxsize=None)
def _source(name: str) -> Image.Image:
    """A bundled photo (by ``PHOTOS`` key) or grey texture (by file name), as RGB."""
    if name in PHOTOS:
        lib, file = PHOTOS[name]
        path = (_skimage_dir() if lib == "skimage" else _sklearn_dir()) / file
    else:
        path = _skimage_dir() / name
    with Image.open(path) as im:
        return im.convert("RGB")


@functools.lru_cache(maxsize=None)
def _texture(cls: str) -> Image.Image:
    """A class's texture: a box of a photo, or a grey texture tinted (mean level ≈ 0.6 × tint)."""
    src, box, tint, _ = TEXTURES[cls]
    if tint is None:
        img = _source(src)
        return img.crop(box) if box else img
    with Image.open(_skimage_dir() / src) as im:
        g = np.asarray(im.convert("L"), dtype=np.float32)
    g *= 0.6 / max(float(g.mean()), 1.0)
    return Image.fromarray(np.clip(g[..., None] * np.array(tint, np.float32), 0, 255).astype(np.uint8))


def _region(img: Image.Image, split: str) -> tuple[float, float, float, float]:
    """The split's box of a source image (see module docstring), cut along the long axis.

    Boxes are 2 % apart, wider than what the resampling kernel reads past a crop's edge.
    """
    w, h = img.size
    if w >= h:
        return {"train": (0, 0, 0.7 * w, h), "val": (0.72 * w, 0, w, 0.39 * h),
                "test": (0.72 * w, 0.41 * h, w, h)}[split]
    return {"train": (0, 0, w, 0.7 * h), "val": (0, 0.72 * h, 0.39 * w, h),
            "test": (0.41 * w, 0.72 * h, w, h)}[split]


def _crop(img: Image.Image, split: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop inside the split's region, resized (up or down) to ``size``."""
    x0, y0, x1, y1 = _region(img, split)
    short = min(img.size)
    hi = min(0.5 * short, x1 - x0, y1 - y0)
    s = rng.uniform(min(0.25 * short, hi), hi)
    x, y = rng.uniform(x0, x1 - s), rng.uniform(y0, y1 - s)
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + s, y + s))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def _edges(img: Image.Image, size: int) -> np.ndarray:
    """Boolean Canny edge map; σ grows with the image so edges stay at a similar scale."""
    from skimage.feature import canny

    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255
    return canny(gray, sigma=1.0 + size / 128, low_threshold=0.05, high_threshold=0.12)


def _paint(img: Image.Image, size: int) -> Image.Image:
    """Deterministic 'painting' style: smooth, posterise to 8 colours, saturate, dark outlines."""
    smooth = img.filter(ImageFilter.MedianFilter(3))
    small = smooth.resize((48, 48), Image.Resampling.BOX)  # palette from a thumbnail: 20× faster
    palette = small.quantize(8, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    poster = smooth.quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB")
    a = np.asarray(ImageEnhance.Color(poster).enhance(1.6)).copy()
    a[_edges(smooth, size)] //= 4
    return Image.fromarray(a)


def _rng(name: str, seed: int, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(split.encode()), i])


def _save(a, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (a if isinstance(a, Image.Image) else Image.fromarray(a)).save(path, format="PNG", compress_level=1)


def _make_edges2photos(out: Path, size: int, seed: int, counts: dict) -> None:
    names = sorted(PHOTOS)
    for split, n in counts.items():
        for i in range(n):
            rng = _rng("edges2photos", seed, split, i)
            photo = _crop(_source(names[i % len(names)]), split, size, rng)
            edge = np.where(_edges(photo, size), 0, 255).astype(np.uint8)
            pair = np.concatenate([np.repeat(edge[..., None], 3, axis=2), np.asarray(photo)], axis=1)
            _save(pair, out / split / f"{i:04d}.png")


def _make_photo2painting(out: Path, size: int, seed: int, counts: dict) -> None:
    for split, n in counts.items():
        for side, names in (("A", PHOTO_A), ("B", PHOTO_B)):
            for i in range(n):
                rng = _rng("photo2painting" + side, seed, split, i)
                img = _crop(_source(names[i % len(names)]), split, size, rng)
                _save(img if side == "A" else _paint(img, size), out / f"{split}{side}" / f"{i:04d}.png")


def _layout(rng: np.random.Generator, size: int, n_classes: int) -> np.ndarray:
    """Warped Voronoi cells (3–8 seeds) with random classes → uint8 label map."""
    k = int(rng.integers(3, 9))
    seeds = rng.uniform(0, size, (k, 2))
    cls = rng.integers(0, n_classes, k)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    warp = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BILINEAR))
                     for g in rng.normal(0, 1, (k, 5, 5)).astype(np.float32)])
    d = np.hypot(yy - seeds[:, 0, None, None], xx - seeds[:, 1, None, None]) + 0.15 * size * warp
    return cls[np.argmin(d, axis=0)].astype(np.uint8)


def _make_labels2textures(out: Path, size: int, seed: int, counts: dict) -> None:
    classes = list(TEXTURES)
    spec = {"classes": [{"name": c, "color": list(TEXTURES[c][3])} for c in classes]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps(spec, indent=1) + "\n")
    for split, n in counts.items():
        for i in range(n):
            rng = _rng("labels2textures", seed, split, i)
            label = _layout(rng, size, len(classes))
            photo = np.zeros((size, size, 3), np.uint8)
            for c in np.unique(label):
                mask = label == c
                photo[mask] = np.asarray(_crop(_texture(classes[c]), split, size, rng))[mask]
            _save(photo, out / split / "photos" / f"{i:04d}.png")
            _save(label, out / split / "labels" / f"{i:04d}.png")


def _make_photoclasses(out: Path, size: int, seed: int, counts: dict) -> None:
    for split, n in counts.items():
        for name in sorted(PHOTOS):
            for i in range(n):
                rng = _rng("photoclasses" + name, seed, split, i)
                _save(_crop(_source(name), split, size, rng), out / split / name / f"{i:04d}.png")


BUILTIN = {
    "edges2photos": {"layout": "aligned", "make": _make_edges2photos,
                     "counts": {"train": 400, "val": 50, "test": 50},
                     "description": "Canny edges (black on white) | photo crop, 10 bundled photos"},
    "photo2painting": {"layout": "unaligned", "make": _make_photo2painting,
                       "counts": {"train": 200, "val": 25, "test": 50},
                       "description": "unpaired: photo crops (A) vs posterised 'paintings' of 5 other photos (B)"},
    "labels2textures": {"layout": "labels", "make": _make_labels2textures,
                        "counts": {"train": 400, "val": 50, "test": 50},
                        "description": "exact per-pixel label maps (7 texture classes) → textured image"},
    "photoclasses": {"layout": "classes", "make": _make_photoclasses,
                     "counts": {"train": 40, "val": 5, "test": 5},
                     "description": "photo crops in 10 classes (class = source photo)"},
}


def list_builtin() -> list[dict]:
    """Name, layout, description and item counts per split (per side for unaligned, per class for classes)."""
    return [{"name": k, "layout": v["layout"], "description": v["description"], "splits": dict(v["counts"])}
            for k, v in BUILTIN.items()]


def default_root() -> Path:
    return Path(os.environ.get("GANPRUNE_DATA") or Path.home() / ".cache" / "ganprune" / "data").expanduser()


def _meta(name: str, size: int, seed: int) -> dict:
    b = BUILTIN[name]
    return {"name": name, "layout": b["layout"], "size": size, "seed": seed, "version": VERSION,
            "splits": b["counts"], "description": b["description"]}


def _is_ready(path: Path, meta: dict) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == meta
    except (OSError, ValueError):
        return False


def _check_name(name: str) -> None:
    if name not in BUILTIN:
        raise DatasetError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTIN)}")


def prepare(name: str, root=None, size: int = 64, seed: int = 0, force: bool = False) -> Path:
    """Generate built-in ``name`` at ``size``² under ``root`` (cached; ``force`` remakes it) → its folder."""
    _check_name(name)
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise DatasetError(f"size must be an int in 16..1024 for built-in datasets, got {size!r}")
    base = Path(root).expanduser() if root is not None else default_root()
    path = base / (f"{name}_{size}" + (f"_s{seed}" if seed else ""))
    meta = _meta(name, size, int(seed))
    if not force and _is_ready(path, meta):
        return path
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        BUILTIN[name]["make"](tmp, size, int(seed), BUILTIN[name]["counts"])
        (tmp / (MARKER + ".part")).write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp / (MARKER + ".part"), tmp / MARKER)  # marker last: only complete sets have it
        if path.exists():
            if not force and _is_ready(path, meta):  # a concurrent run finished first
                shutil.rmtree(tmp)
                return path
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def resolve_dataset(name_or_path, size: int = 64, root=None, seed: int = 0) -> Path:
    """Built-in name → prepared (cached) folder; existing folder → validated folder; else DatasetError."""
    key = str(name_or_path)
    if key in BUILTIN:
        return prepare(key, root=root, size=size, seed=seed)
    path = Path(key).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key!r} is neither a built-in dataset ({', '.join(BUILTIN)}) "
                           f"nor an existing dataset folder", path)
    detect_layout(path)
    present = [s for s in ("train", "val", "test")
               if (path / s).is_dir() or (path / f"{s}A").is_dir() or (path / f"{s}B").is_dir()]
    for split in present or ["train"]:
        open_dataset(path, size=size, split=split)
    return path
