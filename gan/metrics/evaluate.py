"""Evaluate an image-to-image generator on a dataset split: one protocol for every command.

The same function serves `ganprune evaluate`, fine-tuning reports and the benchmark, so every
method's numbers are computed the same way (same split, same number of images, same features).
"""
from __future__ import annotations

import torch

from gan.data import AlignedDataset, LabelsDataset, UnalignedDataset, make_loader
from gan.metrics import evaluate_fidelity
from gan.metrics.segmentation import get_segnet
from gan.metrics.features import fidelity_features


@torch.no_grad()
def generate(model, dataset, batch_size: int = 16, max_items: int | None = None):
    """(inputs, outputs, targets, labels) stacked over the first ``max_items`` items of ``dataset``."""
    model = model.eval()
    xs, ys, ts, ls = [], [], [], []
    seen = 0
    for batch in make_loader(dataset, batch_size, shuffle=False):
        x = batch["A"]
        if max_items is not None:
            x = x[: max_items - seen]
        xs.append(x)
        ys.append(model(x))
        ts.append(batch["B"][: len(x)])
        if "label" in batch:
            ls.append(batch["label"][: len(x)])
        seen += len(x)
        if max_items is not None and seen >= max_items:
            break
    cat = torch.cat
    return cat(xs), cat(ys), cat(ts), (cat(ls) if ls else None)


def evaluate_generator(model, dataset, teacher=None, dataset_root=None, batch_size: int = 16,
                       max_items: int | None = None, backend: str = "proxy",
                       inception_weights=None) -> dict:
    """Fidelity of ``model`` on ``dataset``: vs ground truth (paired sets), vs the teacher's outputs
    on the same inputs (when a teacher is given) and mIoU on labels→photo sets.

    Unpaired sets (a CycleGAN teacher's G_A; docs/methods.md, "Unpaired (CycleGAN) teachers"): the
    FID/KID real set is the split's first ``max_items`` domain-B images, each once, and with a
    teacher its own ``fid_proxy_teacher``/``kid_proxy_teacher`` against the same set stand beside
    (no ground truth, so no PSNR/SSIM but those vs the teacher)."""
    if not isinstance(dataset, (AlignedDataset, UnalignedDataset, LabelsDataset)):
        raise ValueError(f"cannot evaluate an image-to-image generator on {type(dataset).__name__}; "
                         "use an aligned, unaligned or labels dataset")
    x, fake, real, labels = generate(model, dataset, batch_size, max_items)
    teacher_out = generate(teacher, dataset, batch_size, max_items)[1] if teacher is not None else None
    segnet = get_segnet(dataset_root) if labels is not None and dataset_root is not None else None
    paired = not isinstance(dataset, UnalignedDataset)
    real_features = None
    if not paired:
        real = dataset.domain_b(max_items)
        real_features = fidelity_features(real, backend, inception_weights=inception_weights)
    kw = dict(backend=backend, inception_weights=inception_weights, kid_subset_size=min(1000, len(fake)),
              real_features=real_features)
    result = evaluate_fidelity(fake, real=real, teacher=teacher_out,
                               labels=labels if segnet is not None else None, segnet=segnet,
                               paired=paired, **kw)
    if not paired and teacher_out is not None:
        ref = evaluate_fidelity(teacher_out, real=real, paired=False, **kw)
        result.update({f"{k}_teacher": v for k, v in ref.items() if k != "n"})
    if segnet is not None:
        result["miou_real_photos"] = segnet.meta.get("val_miou")
    return result
