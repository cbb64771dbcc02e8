"""VEM (docs/methods.md, "VEM"): the energy net, Langevin sampling, the EBM step, and the G-loss hook on the
pix2pix trainer. Tiny sizes (32², c0 4, ResNet ngf 4/8 with 2 blocks) so the file runs in seconds."""
import pytest
import torch
from safetensors.torch import load, save, save_file

from gan.losses.vem import EnergyNet, VEMConfig, VEMTerm, combine_hooks, ebm_loss, langevin
from gan.models import ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.train.distill import DistillConfig, TeacherTargets, distill_loss
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _trainer(steps=1, batch=2):
    torch.manual_seed(0)
    teacher = ResnetGenerator(ngf=8, n_blocks=2).eval()
    student = ResnetGenerator(ngf=4, n_blocks=2)
    disc = PatchGANDiscriminator(input_nc=6, ndf=4, n_layers=2, norm="instance")
    cfg = TrainConfig(steps=steps, batch_size=batch, lambda_l1=10.0, backend="torch", quiet=True, log_every=1)
    return teacher, Pix2PixTrainer(student, disc, cfg)


@pytest.mark.parametrize("size", [32, 64])
def test_energy_is_a_scalar_per_sample(size):
    torch.manual_seed(0)
    net = EnergyNet(size, c0=4)
    t, s = _images(3, size, 1), _images(3, size, 2)
    e = net(t, s)
    assert e.shape == (3,) and torch.isfinite(e).all()
    assert net.n_blocks == {32: 4, 64: 5}[size]
    with pytest.raises(ValueError, match="too small"):
        net(_images(3, size // 4), _images(3, size // 4))


def test_langevin_detached_clamped_and_lowers_energy():
    torch.manual_seed(0)
    net = EnergyNet(32, c0=4).eval()  # eval: the spectral-norm vectors stay fixed, the net is fixed
    s = _images(4, seed=3).requires_grad_(True)
    t_tilde = langevin(net, s, steps=10, step_size=100.0, noise=0.005)
    assert not t_tilde.requires_grad and t_tilde.grad_fn is None
    assert t_tilde.min() >= -1 and t_tilde.max() <= 1
    assert not torch.equal(t_tilde, s.detach())
    with torch.no_grad():
        assert net(t_tilde, s).mean() < net(s, s).mean()
    assert all(p.grad is None for p in net.parameters()) and s.grad is None


def test_vem_gradients_reach_only_the_student():
    teacher, trainer = _trainer()
    vem = VEMTerm(VEMConfig(c0=4))
    x = _images()
    batch = {"A": x, "B": teacher(x).detach(), "GT": _images(seed=5)}
    loss, stats = vem(batch, trainer.generator(x), trainer)
    assert loss.requires_grad and torch.isfinite(loss)
    assert {"vem", "vem_ebm_loss", "vem_e_pos", "vem_e_neg"} <= set(stats)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.generator.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in vem.ebm.parameters())


def test_constant_energy_gives_zero_term():
    teacher, trainer = _trainer()
    vem = VEMTerm(VEMConfig(c0=4, ebm_lr=0.0))  # lr 0: the EBM step leaves E ≡ const
    x = _images()
    vem.build(x.shape)
    with torch.no_grad():
        vem.ebm.head.weight.zero_()  # E(t, s) = head bias for every input
    fake = trainer.generator(x)
    loss, stats = vem({"A": x, "B": teacher(x).detach()}, fake, trainer)
    assert loss.item() == 0.0 and stats["vem"].item() == 0.0
    assert stats["vem_e_pos"].item() == pytest.approx(vem.ebm.head.bias.item())
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in trainer.generator.parameters())


def test_ebm_steps_lower_the_ebm_loss_on_a_fixed_batch():
    vem = VEMTerm(VEMConfig(c0=4, ebm_lr=1e-3))
    t, s = _images(4, seed=6), _images(4, seed=7)
    vem.build(s.shape)
    t_tilde = langevin(vem.ebm, s, steps=3)
    losses = [vem.ebm_step(t, s, t_tilde)["ebm_loss"].item() for _ in range(5)]
    with torch.no_grad():
        final = ebm_loss(vem.ebm(t, s), vem.ebm(t_tilde, s), vem.cfg.alpha).item()
    assert final < losses[0]
    assert all(not p.requires_grad for p in vem.ebm.parameters())  # θ frozen after its step


def test_trainer_runs_with_host_hook_plus_vem():
    teacher, trainer = _trainer(steps=3)
    teacher_disc = PatchGANDiscriminator(input_nc=6, ndf=4, n_layers=2, norm="instance")
    host = distill_loss(DistillConfig("l1", lambda_gt=1.0), teacher, teacher_disc)
    vem = VEMTerm(VEMConfig(c0=4, positive="gt"))
    trainer.extra_g_loss = combine_hooks(host, vem)
    assert combine_hooks(None, vem) is vem
    data = [{"A": _images(seed=i), "B": _images(seed=10 + i)} for i in range(2)]
    history = trainer.fit(TeacherTargets(data, teacher))
    assert trainer.step == 3 and len(history) == 3
    for rec in history:
        assert {"vem", "vem_ebm_loss", "vem_e_pos", "vem_e_neg", "l1_gt", "loss_extra"} <= set(rec)
        assert all(torch.isfinite(torch.tensor(v)) for v in rec.values())
    assert int(vem.state_dict()["opt.0.step"]) == 3  # one EBM step per training step


def test_combine_hooks_prefixes_clashing_stats():
    one = lambda b, f, t: (f.sum() * 0 + 1.0, {"x": torch.tensor(1.0)})  # noqa: E731
    two = lambda b, f, t: (f.sum() * 0 + 2.0, {"x": torch.tensor(2.0)})  # noqa: E731
    loss, stats = combine_hooks(one, two)(None, torch.zeros(1), None)
    assert loss.item() == 3.0 and stats == {"x": 1.0, "x_1": 2.0}


def test_state_dict_round_trip():
    teacher, trainer = _trainer()
    x = _images()
    batch = {"A": x, "B": teacher(x).detach()}
    vem = VEMTerm(VEMConfig(c0=4))
    vem(batch, trainer.generator(x), trainer)
    state = load(save(vem.state_dict()))  # tensors only: safetensors takes it as is
    assert {"meta.shape", "meta.c0", "opt.0.exp_avg"} <= set(state)
    fresh = VEMTerm(VEMConfig(c0=4))
    fresh.load_state_dict(state)  # before the first call: applied when the EBM is built
    fresh.build(x.shape)
    for k, v in vem.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    torch.manual_seed(1)
    a = vem(batch, trainer.generator(x), trainer)[1]
    torch.manual_seed(1)
    b = fresh(batch, trainer.generator(x), trainer)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="c0"):
        VEMTerm(VEMConfig(c0=8)).load_state_dict(state)


def test_config_errors():
    with pytest.raises(ValueError, match="positive"):
        VEMConfig(positive="student")
    teacher, trainer = _trainer()
    x = _images()
    with pytest.raises(ValueError, match="GT"):
        VEMTerm(VEMConfig(c0=4, positive="gt"))({"A": x, "B": x}, trainer.generator(x), trainer)


def _rank_step(rank, world, store, out):
    """One EBM step on this rank's half of a fixed global batch (gloo), θ written to ``out``."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        t, s, t_tilde = _images(4, seed=20), _images(4, seed=21), _images(4, seed=22)
        half = slice(2 * rank, 2 * rank + 2)
        vem = VEMTerm(VEMConfig(c0=4, ebm_lr=1e-3))
        vem.build(s.shape)
        vem.ebm_step(t[half], s[half], t_tilde[half], world_size=world)
        save_file(vem.state_dict(), f"{out}.rank{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_ebm_step_over_two_ranks_equals_one_process_step(tmp_path):
    """Per-rank gradients averaged by all_reduce = the gradient of L_EBM on the global batch (every
    term of L_EBM is a batch mean), so both ranks end with the 1-process θ."""
    torch.multiprocessing.spawn(_rank_step, args=(2, tmp_path / "store", tmp_path / "vem"), nprocs=2)
    vem = VEMTerm(VEMConfig(c0=4, ebm_lr=1e-3))
    vem.build((4, 3, 32, 32))
    vem.ebm_step(_images(4, seed=20), _images(4, seed=21), _images(4, seed=22))
    ref = vem.state_dict()
    for rank in range(2):
        got = load((tmp_path / f"vem.rank{rank}").read_bytes())
        for k, v in ref.items():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)
