"""gan.metrics: Fréchet distance / KID closed forms, PSNR/SSIM, mIoU, the seg net, proxy features."""
import math

import numpy as np
import pytest
import torch

from gan import data as D
from gan import metrics as M


# ---------------------------------------------------------------- Fréchet / KID

def test_frechet_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(500, 8))
    mu, sig = M.feature_stats(f)
    assert abs(M.frechet_distance(mu, sig, mu, sig)) < 1e-6


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert M.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, rel=1e-8)


def test_frechet_from_samples_and_singular_cov():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20000, 3)), rng.normal(size=(20000, 3)) * 2 + 1
    want = 3 * 1 + 3 * (1 + 4 - 2 * 2)  # ||μ||² = 3, per-dim σ² 1 and 4
    assert M.frechet_distance(*M.feature_stats(a), *M.feature_stats(b)) == pytest.approx(want, rel=0.05)
    few = rng.normal(size=(5, 16))  # N < D: rank-deficient Σ → eps offset path, still finite
    assert math.isfinite(M.frechet_distance(*M.feature_stats(few), *M.feature_stats(few + 0.5)))


def test_frechet_of_non_finite_features_is_nan_not_a_hang():
    """A diverged model's NaN features: scipy's sqrtm would loop forever on them."""
    a = np.random.default_rng(0).normal(size=(8, 4))
    bad = a.copy()
    bad[0, 0] = np.nan
    assert math.isnan(M.frechet_distance(*M.feature_stats(bad), *M.feature_stats(a)))


def test_kid_same_vs_shifted():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = M.kid(a, b, subsets=20, subset_size=200)
    shifted = M.kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and shifted > 10 * max(abs(same), 1e-3)


# ---------------------------------------------------------------- PSNR / SSIM

def test_psnr_identical_and_constant_offset():
    x = torch.rand(3, 3, 16, 16) * 1.6 - 0.8
    assert M.psnr(x, x) == 100.0 and M.psnr(x, x, max_db=None) == math.inf
    assert M.psnr(x, x + 0.1) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)


def test_ssim_identical_and_noise_monotone():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 32, 32, generator=g)
    vals = [M.ssim(x, (x + s * noise).clamp(-1, 1)) for s in (0.05, 0.2, 0.5)]
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert 1 > vals[0] > vals[1] > vals[2]


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 24, 24, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    ref = skm.structural_similarity(x[0].numpy(), y[0].numpy(), channel_axis=0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, data_range=2)
    assert M.ssim(x, y) == pytest.approx(float(ref), abs=1e-4)


# ---------------------------------------------------------------- mIoU

def test_miou_hand_made():
    t = np.array([[0, 0, 1, 1]])
    assert M.miou(t, t, 3) == 100.0  # class 2 absent from both → skipped, not 0
    p = np.array([[0, 1, 1, 1]])  # class0 IoU 1/2, class1 IoU 2/3
    assert M.miou(p, t, 2) == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    t_ign = np.array([[0, 255, 1, 1]])  # the only wrong pixel is ignored → perfect
    assert M.miou(p, t_ign, 2) == 100.0
    cm = M.confusion_matrix(p, t, 2)
    assert cm.tolist() == [[1, 1], [0, 2]]
    assert M.miou(torch.tensor([[1, 1]]), torch.tensor([[0, 0]]), 2) == 0.0


# ---------------------------------------------------------------- seg net

def test_segnet_trains_caches_and_beats_chance(tmp_path):
    root = D.prepare("labels2textures", root=tmp_path, size=32)
    net = M.get_segnet(root, steps=150)
    n_classes = net.meta["n_classes"]
    chance = 100 / n_classes  # a constant or random guess scores ≤ this (roughly)
    assert net.meta["cached"] is False and net.meta["val_miou"] > 2 * chance
    assert list(root.glob("segnet_*.safetensors")) and list(root.glob("segnet_*.json"))
    again = M.get_segnet(root, steps=150)
    assert again.meta["cached"] is True and again.meta["val_miou"] == net.meta["val_miou"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    ds = D.LabelsDataset(root, split="val", size=32)
    batch = [ds[i] for i in range(8)]
    photos, labels = torch.stack([b["B"] for b in batch]), torch.stack([b["label"] for b in batch])
    res = M.evaluate_fidelity(photos, real=photos, teacher=photos, labels=labels, segnet=again,
                              kid_subsets=5)
    assert res["miou"] > 2 * chance and res["psnr_vs_teacher"] == 100.0 and res["ssim"] == pytest.approx(1)
    assert "fid" not in res and abs(res["fid_proxy"]) < 1e-3
    flat = M.segmentation_miou(torch.zeros_like(photos), labels, again)  # a blank "generator" scores low
    assert flat < res["miou"] / 2


# ---------------------------------------------------------------- features

def test_proxy_features_deterministic_and_discriminative():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 40, 40, generator=g) * 2 - 1
    torch.manual_seed(123)  # global RNG must not matter
    f1 = M.fidelity_features(x)
    f2 = M.fidelity_features(x, batch_size=4)
    f3 = M.ProxyFeatureNet(0)(x).double().numpy()
    assert f1.shape == (6, 256) and np.allclose(f1, f2, atol=1e-6) and np.allclose(f1, f3, atol=1e-6)
    assert not np.allclose(f1, M.fidelity_features(-x))


def test_inception_backend_unavailable_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("GANPRUNE_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(M.MetricUnavailable, match="pip install pytorch-fid"):
        M.fidelity_features(torch.zeros(2, 3, 8, 8), backend="inception")
    with pytest.raises(ValueError, match="backend"):
        M.fidelity_features(torch.zeros(2, 3, 8, 8), backend="clip")
