"""Fidelity metrics: Fréchet/KID distances on proxy (or Inception) features, PSNR/SSIM, segmentation mIoU.

Names are honest: distances on the default random-conv features are ``fid_proxy``/``kid_proxy``;
only the Inception backend (pytorch-fid weights, unavailable offline) yields ``fid``/``kid``.
"""
from __future__ import annotations

from gan.metrics.features import MetricUnavailable, ProxyFeatureNet, fidelity_features
from gan.metrics.frechet import feature_stats, frechet_distance, kid
from gan.metrics.image import psnr, ssim
from gan.metrics.segmentation import (SegNet, confusion_matrix, get_segnet, miou, miou_from_confusion,
                                      segmentation_miou)

__all__ = ["frechet_distance", "feature_stats", "kid", "fidelity_features", "ProxyFeatureNet",
           "MetricUnavailable", "psnr", "ssim", "miou", "confusion_matrix", "miou_from_confusion",
           "SegNet", "get_segnet", "segmentation_miou", "evaluate_fidelity"]


def evaluate_fidelity(fake, real=None, teacher=None, labels=None, segnet=None, paired: bool = True,
                      backend: str = "proxy", inception_weights=None, kid_subsets: int = 100,
                      kid_subset_size: int = 1000, real_features=None) -> dict:
    """Every metric that applies to the student's outputs ``fake`` (N,3,H,W in [-1,1]):

    * ``real`` → ``fid_proxy``/``kid_proxy`` (``fid``/``kid`` with backend="inception"), plus
      ``psnr``/``ssim`` when ``paired`` (aligned ground truth of the same shape);
    * ``teacher`` (teacher outputs on the same inputs) → ``psnr_vs_teacher``/``ssim_vs_teacher``;
    * ``labels`` (N,H,W ids) with ``segnet`` (see ``get_segnet``) → ``miou``.

    ``real_features`` may replace ``real`` for the distances (precomputed, e.g. a larger real set).
    """
    out: dict = {"n": int(len(fake))}
    tag = "" if backend == "inception" else "_proxy"
    if real is not None or real_features is not None:
        ff = fidelity_features(fake, backend, inception_weights=inception_weights)
        rf = real_features if real_features is not None else fidelity_features(real, backend,
                                                                                inception_weights=inception_weights)
        out["fid" + tag] = frechet_distance(*feature_stats(ff), *feature_stats(rf))
        out["kid" + tag] = kid(ff, rf, kid_subsets, kid_subset_size)
    if real is not None and paired and tuple(real.shape) == tuple(fake.shape):
        out["psnr"], out["ssim"] = psnr(fake, real), ssim(fake, real)
    if teacher is not None:
        out["psnr_vs_teacher"], out["ssim_vs_teacher"] = psnr(fake, teacher), ssim(fake, teacher)
    if labels is not None:
        if segnet is None:
            raise ValueError("miou needs a segmentation net: pass segnet=get_segnet(dataset_root)")
        out["miou"] = segmentation_miou(fake, labels, segnet)
    return out
