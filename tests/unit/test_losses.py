"""GANLoss and our MGGC density objective (docs/methods.md, "GAN losses", "MGGC density objective") at 32²."""
import copy

import pytest
import torch

from gan.losses import (DensityConfig, bandwidth, DensityObjective, FrozenFeatures, GANLoss, density_loss,
                        make_neighbors, neighborhood_batches)
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator


@pytest.fixture
def setup():
    teacher = ResnetGenerator(ngf=8, n_blocks=2).eval()
    disc = PatchGANDiscriminator(input_nc=3, ndf=8, n_layers=2)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    return teacher, disc, x


def _perturbed(model, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(sigma * p.std().nan_to_num(0) * torch.randn(p.shape, generator=g))
    return m


# --- GANLoss ---------------------------------------------------------------------------------------

def test_gan_loss_known_values():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    ls = GANLoss("lsgan")
    assert ls.d_loss(ones, zeros).item() == 0 and ls.g_loss(ones).item() == 0
    assert ls.g_loss(zeros).item() == pytest.approx(1.0)
    assert ls.d_loss(zeros, ones).item() == pytest.approx(0.5 * 2)  # gan-compression's 0.5
    assert GANLoss("lsgan", d_scale=1).d_loss(zeros, ones).item() == pytest.approx(2.0)
    van = GANLoss("vanilla", d_scale=1)
    ln2 = torch.log(torch.tensor(2.0)).item()
    assert van.d_loss(zeros, zeros).item() == pytest.approx(2 * ln2)
    assert van.g_loss(zeros).item() == pytest.approx(ln2)
    hinge = GANLoss("hinge", d_scale=1)
    assert hinge.d_loss(ones, -ones).item() == 0 and hinge.d_loss(zeros, zeros).item() == 2
    assert hinge.g_loss(3 * ones).item() == -3
    # mean over the patch map: size of the map does not matter
    assert ls.g_loss(torch.zeros(1, 1, 30, 30)).item() == pytest.approx(1.0)


def test_d_accuracy_uses_each_losss_decision_threshold():
    real, fake = torch.tensor([0.9, 0.2, 0.8, 0.7]), torch.tensor([0.1, 0.6, -0.5, 0.3])
    assert GANLoss("lsgan").d_accuracy(real, fake).item() == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert GANLoss("hinge").d_accuracy(real, fake).item() == pytest.approx((4 / 4 + 1 / 4) / 2)
    assert GANLoss("vanilla").d_accuracy(-real, -real).item() == pytest.approx(0.5)


def test_gan_loss_unknown_kind_lists_kinds():
    with pytest.raises(ValueError, match="lsgan, vanilla, hinge"):
        GANLoss("wgan")


# --- neighbours ------------------------------------------------------------------------------------

def test_neighbors_deterministic_and_shaped(setup):
    _, _, x = setup
    cfg = DensityConfig()
    a = make_neighbors(x, cfg, torch.Generator().manual_seed(7))
    b = make_neighbors(x, cfg, torch.Generator().manual_seed(7))
    c = make_neighbors(x, cfg, torch.Generator().manual_seed(8))
    assert a.shape == (4, 4, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # noise ≈ σ, shift capped at 32 // 8 = 4
    geo = make_neighbors(x, DensityConfig(geometric_only=True), torch.Generator().manual_seed(7))
    assert (a - geo).std().item() == pytest.approx(0.05, rel=0.1)
    # geometric-only neighbours of a label map keep the label values
    labels = torch.randint(0, 3, (2, 1, 32, 32)).float()
    nb = make_neighbors(labels, DensityConfig(geometric_only=True), torch.Generator().manual_seed(0))
    assert set(nb.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_shift_is_a_translation():
    """Reflect-pad + crop: the interior of each neighbour is a shifted window of x (|shift| ≤ 8)."""
    x = torch.randn(1, 1, 64, 64)
    cfg = DensityConfig(k_neighbors=8, geometric_only=True)  # 64 // 8 = max shift 8
    nb = make_neighbors(x, cfg, torch.Generator().manual_seed(0))[0]
    for k in range(8):  # interior of every neighbour equals a shifted window of x
        inner = nb[k, 0, 8:-8, 8:-8]
        assert any(torch.equal(inner, x[0, 0, 8 + dy:56 + dy, 8 + dx:56 + dx])
                   for dy in range(-8, 9) for dx in range(-8, 9))


# --- density loss ----------------------------------------------------------------------------------

def test_density_zero_for_identical_student(setup):
    teacher, disc, x = setup
    obj = DensityObjective(teacher, disc, DensityConfig())
    res = obj(copy.deepcopy(teacher), x, torch.Generator().manual_seed(0))
    assert abs(res.loss.item()) < 1e-6
    assert res.stats["d_teacher"] > 0 and res.stats["h2"] > 0


def test_density_grows_with_perturbation(setup):
    teacher, disc, x = setup  # jittered neighbours: one objective called again on the same batch
    obj = DensityObjective(teacher, disc, DensityConfig(neighbors="jitter"))
    means = []
    for sigma in (0.02, 0.1, 0.5):
        vals = [obj(_perturbed(teacher, sigma, s).eval(), x, torch.Generator().manual_seed(s)).loss.item()
                for s in range(3)]
        means.append(sum(vals) / len(vals))
    assert 0 < means[0] < means[1] < means[2], means


def test_gradients_reach_student_only(setup):
    teacher, disc, x = setup
    assert all(p.requires_grad for p in teacher.parameters())
    student = _perturbed(teacher, 0.2, 0)
    obj = DensityObjective(teacher, disc, DensityConfig(kde_weight=0.5))
    res = obj(student, x)
    real, fake = res.adversarial_batches()
    (res.loss + GANLoss().g_loss(disc(fake))).backward()  # D gets grads only via the adv. term
    assert all(p.grad is not None for p in student.parameters())
    assert any(p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in obj.feature_fn.parameters())
    assert not real.requires_grad and fake.requires_grad
    assert "kde" in res.stats


def test_density_only_never_touches_disc(setup):
    teacher, disc, x = setup
    student = _perturbed(teacher, 0.2, 1)
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    DensityObjective(teacher, disc)(student.train(), x).loss.backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(torch.equal(v, disc.state_dict()[k]) for k, v in before.items())  # BN stats too


def test_callable_feature_and_functional_api(setup):
    teacher, _, x = setup
    cfg = DensityConfig(feature=lambda z: z.mean((2, 3)), k_neighbors=3)
    xn = make_neighbors(x, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tc, tn = teacher(x), teacher(xn.flatten(0, 1)).view(4, 3, 3, 32, 32)
    loss, stats = density_loss(tc.clone(), tn.clone(), tc, tn, cfg.feature, cfg)
    assert abs(loss.item()) < 1e-6 and stats["kl"] < 1e-6
    sc = tc + 0.1 * torch.randn_like(tc)
    assert density_loss(sc, tn, tc, tn, cfg.feature, cfg)[0].item() > 0


def test_conditional_neighborhood_batches(setup):
    teacher, _, x = setup
    cdisc = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)
    obj = DensityObjective(teacher, cdisc, DensityConfig())
    res = obj(copy.deepcopy(teacher), x)
    assert res.conditional and abs(res.loss.item()) < 1e-6
    real, fake = res.adversarial_batches()
    assert real.shape == fake.shape == (16, 6, 32, 32)
    assert cdisc(fake).shape[0] == 16
    r2, f2 = neighborhood_batches(res.teacher_neighbors, res.student_neighbors, res.x_neighbors,
                                  res.teacher_center, res.student_center, x)
    assert r2.shape == (16, 12, 32, 32)  # x_ik, x_i, c_i, y_ik
    assert torch.equal(r2[4:8, 3:6], x[1:2].expand(4, -1, -1, -1))


def test_bandwidth_guards():
    cfg = DensityConfig(bandwidth_factor=2.0)
    assert bandwidth(torch.tensor([[1e-7, 3e-7, 5e-7]]), cfg).item() == pytest.approx(6e-7)
    assert bandwidth(torch.tensor([[0.0, 0.0, 3.0]]), cfg).item() == pytest.approx(2.0)  # mean
    assert bandwidth(torch.zeros(2, 3), cfg).item() == 2.0


def test_unknown_feature_rejected(setup):
    teacher, disc, _ = setup
    with pytest.raises(ValueError, match="unknown feature"):
        DensityObjective(teacher, disc, DensityConfig(feature="vgg"))
    assert isinstance(DensityObjective(teacher, disc).feature_fn, FrozenFeatures)


def test_neighbourhood_d_loss_is_teacher_vs_student_neighbours(setup):
    """Neighbourhood D loss: real = cat(x_ik, G_T(x_ik)), fake = cat(x_ik, G_S(x_ik)) on the same
    jittered inputs; L_D on (real, fake.detach()) trains D only (not G_S, teacher or φ)."""
    teacher, _, x = setup
    cdisc = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)
    student = _perturbed(teacher, 0.2, 0)
    cfg = DensityConfig(seed=5)
    obj = DensityObjective(teacher, cdisc, cfg)
    res = obj(student, x)
    real, fake = res.adversarial_batches()
    xn = make_neighbors(x, cfg, torch.Generator().manual_seed(5)).flatten(0, 1)
    with torch.no_grad():
        assert torch.allclose(real, torch.cat([xn, teacher(xn)], 1), atol=1e-6)
        assert torch.allclose(fake, torch.cat([xn, student(xn)], 1), atol=1e-5)
        assert not torch.allclose(real, fake, atol=1e-3)
    GANLoss().d_loss(cdisc(real), cdisc(fake.detach())).backward()
    assert all(p.grad is not None for p in cdisc.parameters())
    assert any(p.grad.abs().sum() > 0 for p in cdisc.parameters())
    for m in (student, teacher, obj.feature_fn):
        assert all(p.grad is None for p in m.parameters())


def test_perplexity_bandwidth_calibrates_each_row():
    """SNE-style per-row h²: each teacher row gets the target perplexity whatever the level or spread
    of its distances; a row with no spread falls back to the median rule; bad targets are refused."""
    g = torch.Generator().manual_seed(0)
    level = torch.tensor([[1e-7], [1e-3], [1.0], [10.0], [1e3], [1.0]])  # φ scales vary a lot
    d = level * (1 + torch.rand(6, 4, generator=g))
    d[5] = 2.0  # no spread
    for target in (1.5, 2.0, 3.0):
        h2 = bandwidth(d, DensityConfig(bandwidth_mode="perplexity", perplexity=target))
        assert h2.shape == (6, 1) and bool((h2 > 0).all())
        p = torch.softmax(-d[:5] / (2 * h2[:5]), 1)
        ppl = (-torch.special.xlogy(p, p).sum(1)).exp()
        assert torch.allclose(ppl, torch.full_like(ppl, target), atol=1e-3), ppl
    assert h2[5].item() == pytest.approx(bandwidth(d, DensityConfig()).item())
    for bad in (1.0, 4.0):
        with pytest.raises(ValueError, match="perplexity"):
            bandwidth(d, DensityConfig(bandwidth_mode="perplexity", perplexity=bad))
    with pytest.raises(ValueError, match="bandwidth_mode"):
        bandwidth(d, DensityConfig(bandwidth_mode="silverman"))


def test_perplexity_mode_density_zero_grows_and_reaches_student_only(setup):
    teacher, disc, x = setup
    cfg = DensityConfig(bandwidth_mode="perplexity", perplexity=3.0, kde_weight=0.5)
    obj = DensityObjective(teacher, disc, cfg)
    assert abs(obj(copy.deepcopy(teacher), x, torch.Generator().manual_seed(0)).stats["kl"]) < 1e-6
    kls = [obj(_perturbed(teacher, s, 0).eval(), x, torch.Generator().manual_seed(0)).stats["kl"]
           for s in (0.05, 0.5)]
    assert 0 < kls[0] < kls[1], kls
    student = _perturbed(teacher, 0.2, 0)
    obj(student, x).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in obj.feature_fn.parameters())


# --- memory-bank neighbourhoods (neighbors="memory") -------------------------------------------------

def test_memory_neighbours_are_the_nearest_other_real_inputs_in_teacher_feature_space(setup):
    teacher, disc, _ = setup
    cfg = DensityConfig(neighbors="memory", k_neighbors=4, bank_size=6)
    obj = DensityObjective(teacher, disc, cfg)
    batches = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(3)]
    student = _perturbed(teacher, 0.1, 0)
    first = obj(student, batches[0])  # 3 other inputs < K: jittered copies this once
    assert not any(torch.equal(first.x_neighbors[0, j], b) for j in range(4) for b in batches[0])
    assert len(obj.bank) == 4
    r = obj(student, batches[1])
    assert len(obj.bank) == 6  # FIFO: the oldest two dropped
    pool = torch.cat([batches[0], batches[1]])
    phi = FrozenFeatures(disc)
    with torch.no_grad():
        f = phi(teacher(pool))
    for i in range(4):
        d = ((f - f[4 + i]) ** 2).sum(1)
        d[4 + i] = float("inf")  # never its own neighbour
        want = torch.sort(d, stable=True).indices[:4]
        assert all(torch.equal(r.x_neighbors[i, j], pool[want[j]]) for j in range(4))
        with torch.no_grad():
            assert torch.allclose(r.teacher_neighbors[i], teacher(pool[want]), atol=1e-5)
    assert r.loss.requires_grad and r.stats["kl"] >= 0


def test_an_input_seen_again_is_not_its_own_neighbour(setup):
    """A small unaugmented set puts the same item in the bank again: it is x_i, not a neighbour."""
    teacher, disc, _ = setup
    obj = DensityObjective(teacher, disc, DensityConfig(neighbors="memory", k_neighbors=2))  # the default bank
    batches = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(8)]
    x = batches[0]
    student = _perturbed(teacher, 0.1, 0)
    for b in batches:  # > 25 candidates: where cdist's matrix-product shortcut would blur distance 0
        obj(student, b)
    r = obj(student, x)  # the bank holds these very inputs
    pool = torch.cat(batches)
    for i in range(4):
        assert not any(torch.equal(r.x_neighbors[i, j], x[i]) for j in range(2))
        assert all(any(torch.equal(r.x_neighbors[i, j], o) for o in pool if not torch.equal(o, x[i])) for j in range(2))


def test_the_bank_finds_a_repeat_at_a_distance_the_matrix_product_shortcut_would_blur():
    """68 candidates (cdist's shortcut computes |a|² + |b|² − 2ab above 25 rows: a repeat can land at 1e-11)."""
    from gan.losses.density import NeighbourBank

    f = torch.randn(68, 32, generator=torch.Generator().manual_seed(0)) * 1e-3
    f[:4] = f[-4:]  # the batch's four inputs are in the bank already
    x = torch.arange(68.0).view(68, 1, 1, 1)
    bank = NeighbourBank(64)
    bank.add(x[:64], x[:64], f[:64])
    xn, _ = bank.nearest(x[64:], x[64:], f[64:], 2)
    for i in range(4):  # neither x_i itself (row 64 + i) nor its repeat (row i)
        assert {int(v) for v in xn[i].flatten()}.isdisjoint({i, 64 + i})


def test_memory_density_is_zero_for_the_teacher_and_grows_with_perturbation(setup):
    teacher, disc, _ = setup
    batches = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(2)]

    def loss(student):
        obj = DensityObjective(teacher, disc, DensityConfig(neighbors="memory", bank_size=8))
        obj(student, batches[0])
        return obj(student, batches[1]).loss.item()

    assert loss(copy.deepcopy(teacher)) < 1e-6
    assert loss(_perturbed(teacher, 0.05, 1)) < loss(_perturbed(teacher, 0.5, 1))


def test_unknown_neighbourhood_kind_and_too_small_bank_are_refused():
    with pytest.raises(ValueError, match="unknown neighbors 'knn'; use 'jitter' or 'memory'"):
        DensityConfig(neighbors="knn")
    with pytest.raises(ValueError, match=r"bank_size must be ≥ k_neighbors \(4\)"):
        DensityConfig(neighbors="memory", bank_size=3)
