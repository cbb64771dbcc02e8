"""mIoU of generated photos, the GAN Compression cityscapes protocol (DRN-D-105) at small scale.

A small dilated FCN is trained once on the *real* train photos → labels of a labels→photo dataset,
cached next to the dataset as safetensors + JSON (no pickle), and then segments generated photos;
mIoU against the true label maps measures whether the generator drew the right class in the right
place.  The net's own mIoU on real val photos (``meta["val_miou"]``) is the upper bound to quote.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from gan.data import LabelsDataset
from gan.determinism import torch_threads

VERSION = 2  # bump when the net or its training changes: changes the cache key
IGNORE = 255


def confusion_matrix(pred, true, n_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = true class, cols = predicted; ignored pixels dropped."""
    p, t = np.asarray(pred, np.int64).ravel(), np.asarray(true, np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in size: {np.shape(pred)} vs {np.shape(true)}")
    keep = (t != ignore_index) & (t >= 0) & (t < n_classes)
    p = np.clip(p[keep], 0, n_classes - 1)
    return np.bincount(t[keep] * n_classes + p, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def miou_from_confusion(cm: np.ndarray) -> float:
    """Nan-mean over classes of IoU = TP / (TP + FP + FN), ×100; classes absent from both are skipped."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan")


def miou(pred_labels, true_labels, n_classes: int, ignore_index: int = IGNORE) -> float:
    """mIoU (%) of predicted vs true label maps (any matching shapes; torch or numpy)."""
    to_np = lambda a: a.detach().cpu().numpy() if torch.is_tensor(a) else a  # noqa: E731
    return miou_from_confusion(confusion_matrix(to_np(pred_labels), to_np(true_labels), n_classes, ignore_index))


class SegNet(nn.Module):
    """3×3 conv+BN+ReLU: one stride-2 conv, then dilations 2/4/8 at half resolution (receptive field
    ≈60 px), 1×1 head, scores bilinearly upsampled; ≈57k params.  Output stride 2 (DRN uses 8) keeps
    CPU training to seconds."""

    def __init__(self, n_classes: int, width: int = 48):
        super().__init__()
        layers, cin = [], 3
        for i, d in enumerate((1, 2, 4, 8)):
            cout = 32 if i == 0 else width
            conv = nn.Conv2d(cin, cout, 3, stride=2 if i == 0 else 1, padding=d, dilation=d, bias=False)
            layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        self.body, self.head = nn.Sequential(*layers), nn.Conv2d(cin, n_classes, 1)
        self.n_classes = n_classes
        self.meta: dict = {}

    def forward(self, x):
        return F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, photos, out_size=None, batch_size: int = 32) -> torch.Tensor:
        """Label ids (N, H, W) of photos in [-1, 1]; scores are bilinearly resized to ``out_size`` first."""
        self.eval()
        x = torch.as_tensor(photos).detach().float().cpu()
        x = x[None] if x.ndim == 3 else x
        out = []
        for i in range(0, x.shape[0], batch_size):
            s = self(x[i:i + batch_size])
            if out_size is not None and tuple(s.shape[-2:]) != tuple(out_size):
                s = F.interpolate(s, size=tuple(out_size), mode="bilinear", align_corners=False)
            out.append(s.argmax(1))
        return torch.cat(out)


def segmentation_miou(generated_photos, true_labels, segnet: SegNet) -> float:
    """mIoU (%) of ``segnet`` on generated photos (N,3,H,W in [-1,1]) against true labels (N,h,w)."""
    true = torch.as_tensor(true_labels)
    true = true[None] if true.ndim == 2 else true
    return miou(segnet.predict(generated_photos, out_size=true.shape[-2:]), true, segnet.n_classes)


def _load_split(root: Path, split: str, size: int):
    ds = LabelsDataset(root, split=split, size=size)
    items = [ds[i] for i in range(len(ds))]
    return ds.classes, torch.stack([d["B"] for d in items]), torch.stack([d["label"] for d in items])


def _key(root: Path, size: int, cfg: dict) -> str:
    """Hash of the train split's bytes, classes.json and the training config: retrain only when they change."""
    h = hashlib.sha256(json.dumps({**cfg, "size": size, "version": VERSION}, sort_keys=True).encode())
    files = [root / "classes.json"] + sorted((root / "train").glob("*/*"))
    for f in files:
        if f.is_file():
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _image_size(root: Path) -> int:
    from PIL import Image

    first = next(iter(sorted((root / "train" / "photos").glob("*"))), None)
    if first is None:
        raise FileNotFoundError(f"{root}/train/photos: no photos to train the segmentation net on")
    with Image.open(first) as im:
        return int(min(im.size))


def _train(x, y, n_classes: int, size: int, cfg: dict, verbose: bool):
    torch.manual_seed(cfg["seed"])
    g = torch.Generator().manual_seed(cfg["seed"])
    net = SegNet(n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["steps"])
    c, bs = cfg["crop"], cfg["batch_size"]
    net.train()
    for step in range(cfg["steps"]):
        idx = torch.randint(len(x), (bs,), generator=g)
        i, j = (int(v) for v in torch.randint(size - c + 1, (2,), generator=g))
        xb, yb = x[idx, :, i:i + c, j:j + c], y[idx, i:i + c, j:j + c]
        if torch.rand((), generator=g) < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(net(xb), yb, ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if verbose and step % 50 == 0:
            print(f"segnet step {step} loss {loss.item():.3f}")
    return net.eval(), loss


def get_segnet(root, size: int | None = None, steps: int = 300, batch_size: int = 16, crop: int = 32,
               lr: float = 3e-3, seed: int = 0, cache_dir=None, force: bool = False, verbose: bool = False) -> SegNet:
    """Load the cached seg net for labels→photo dataset ``root`` or train it (Adam, random crops + flips).

    ``size`` defaults to the train photos' size; the cache lives in ``cache_dir`` (default: ``root``)
    as ``segnet_<hash>.safetensors`` + ``.json``; ``net.meta`` holds val mIoU, train time and config.
    """
    root = Path(root)
    size = int(size or _image_size(root))
    cfg = {"steps": steps, "batch_size": batch_size, "crop": min(crop, size), "lr": lr, "seed": seed}
    stem = Path(cache_dir or root) / f"segnet_{_key(root, size, cfg)}"
    wfile, mfile = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if wfile.is_file() and mfile.is_file() and not force:
        meta = json.loads(mfile.read_text())
        net = SegNet(meta["n_classes"])
        net.load_state_dict(load_file(wfile))
        net.meta = {**meta, "cached": True}
        return net.eval()

    classes, x, y = _load_split(root, "train", size)
    t0 = time.perf_counter()
    with torch_threads(1):  # tiny convs: extra OpenMP threads only spin (10× slower on a busy 2-core box)
        net, loss = _train(x, y, len(classes), size, cfg, verbose)
    train_s = time.perf_counter() - t0
    _, xv, yv = _load_split(root, "val", size)
    net.eval()
    net.meta = {"n_classes": len(classes), "classes": classes, "size": size, **cfg, "version": VERSION,
                "params": sum(p.numel() for p in net.parameters()), "train_seconds": round(train_s, 2),
                "final_loss": round(loss.item(), 4), "val_miou": segmentation_miou(xv, yv, net)}
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(wfile))
    mfile.write_text(json.dumps(net.meta, indent=1) + "\n")  # written last: marks the cache complete
    net.meta = {**net.meta, "cached": False}
    return net
