"""The fine-tuning objectives' trainer hooks (gan.train.distill): the extra G loss reaches the student
only, the neighbourhood D loss reaches the student D only, and the trainer calls both."""
import copy

import pytest
import torch

from gan.losses.density import DensityConfig, make_neighbors
from gan.models import ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.pruning.physical import prune
from gan.pruning.saliency import spec_from_ratios
from gan.train.distill import DistillConfig, TeacherTargets, distill_hooks, distill_loss
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig


def _pair():
    torch.manual_seed(0)
    tg = ResnetGenerator(ngf=8, n_blocks=2).eval()
    td = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2, norm="instance").eval()
    half = lambda m: spec_from_ratios(m, {g.name: 0.5 for g in m.channel_groups()}, "l1")  # noqa: E731
    return tg, td, prune(tg, half(tg)), prune(td, half(td))


@pytest.mark.parametrize("objective", ["density", "l1"])
def test_extra_loss_gradients_reach_only_the_student(objective):
    tg, td, sg, sd = _pair()
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=1, batch_size=2, backend="torch", quiet=True),
                             extra_g_loss=distill_loss(DistillConfig(objective, lambda_gt=1.0), tg, td))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    batch = {"A": x, "B": tg(x).detach(), "GT": torch.rand(2, 3, 32, 32) * 2 - 1}
    for p in trainer.discriminator.parameters():  # as in the trainer's G step
        p.requires_grad_(False)
    fake = trainer.generator(x)
    loss, stats = trainer.extra_g_loss(batch, fake, trainer)
    assert loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.generator.parameters())
    for m in (tg, td, trainer.discriminator):
        assert all(p.grad is None for p in m.parameters())
    if objective == "density":
        assert {"density", "gan_nb", "density_kl"} <= set(stats)


def test_density_objective_zero_when_student_is_teacher():
    tg, td, _, sd = _pair()
    trainer = Pix2PixTrainer(copy.deepcopy(tg), sd, TrainConfig(steps=1, batch_size=2, backend="torch"),
                             extra_g_loss=distill_loss(DistillConfig("density", lambda_nb=0.0), tg, td))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    loss, stats = trainer.extra_g_loss({"A": x, "B": x}, trainer.generator(x), trainer)
    assert stats["density"].item() == pytest.approx(0.0, abs=1e-5)


def test_full_train_step_leaves_teacher_untouched():
    tg, td, sg, sd = _pair()
    before = [p.clone() for p in list(tg.parameters()) + list(td.parameters())]
    hooks = distill_hooks(DistillConfig("density"), tg, td)
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=2, batch_size=2, lambda_l1=10.0, backend="torch",
                                                 quiet=True, log_every=1),
                             extra_g_loss=hooks.g, extra_d_loss=hooks.d)
    data = [{"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}]
    trainer.fit(TeacherTargets(data, tg))
    after = list(tg.parameters()) + list(td.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.grad is None for p in after)
    assert trainer.step == 2
    assert all("gan_nb_d" in rec and "gan_nb" in rec for rec in trainer.history)


def test_unknown_objective():
    tg, td, _, _ = _pair()
    with pytest.raises(ValueError, match="unknown objective"):
        distill_loss(DistillConfig("vem"), tg, td)


# --- neighbourhood D step ---------------------------------------------------------------------------

def _batch(tg, b=2, seed=1):
    x = torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return {"A": x, "B": tg(x).detach()}


def test_d_hook_gradients_reach_only_the_student_d():
    tg, td, sg, sd = _pair()
    hooks = distill_hooks(DistillConfig("density", lambda_nb_d=1.0), tg, td)
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=1, batch_size=2, backend="torch", quiet=True),
                             extra_g_loss=hooks.g, extra_d_loss=hooks.d)
    batch = _batch(tg)
    fake = trainer.generator(batch["A"]).detach()
    term, stats = hooks.d(batch, fake, trainer)
    assert term.requires_grad and torch.isfinite(term) and "gan_nb_d" in stats
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.discriminator.parameters())
    for m in (trainer.generator, tg, td):
        assert all(p.grad is None for p in m.parameters())


def test_d_hook_sees_teacher_neighbours_as_real_student_neighbours_as_fake():
    """D's two inputs are exactly cat(x_ik, G_T(x_ik)) and cat(x_ik, G_S(x_ik)) for the jittered x_ik
    (conditional: the student D takes input|output), and the term is λ_nb_d·L_D of them."""
    tg, td, sg, sd = _pair()
    dcfg = DensityConfig(seed=3)
    hooks = distill_hooks(DistillConfig("density", lambda_nb_d=2.0), tg, td, dcfg)
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=1, batch_size=2, backend="torch", quiet=True),
                             extra_g_loss=hooks.g, extra_d_loss=hooks.d)
    seen = []
    trainer.discriminator.register_forward_hook(lambda m, inp, out: seen.append((inp[0], out)))
    batch = _batch(tg)
    term, stats = hooks.d(batch, trainer.generator(batch["A"]).detach(), trainer)
    assert len(seen) == 2
    xn = make_neighbors(batch["A"], dcfg, torch.Generator().manual_seed(3)).flatten(0, 1)  # same jitter
    with torch.no_grad():
        real, fake = torch.cat([xn, tg(xn)], 1), torch.cat([xn, trainer.generator(xn)], 1)
    assert real.shape == (2 * dcfg.k_neighbors, 6, 32, 32)
    assert torch.allclose(seen[0][0], real, atol=1e-6) and torch.allclose(seen[1][0], fake, atol=1e-5)
    assert not seen[1][0].requires_grad  # student neighbours detached for D
    expected = trainer.gan.d_loss(seen[0][1], seen[1][1])
    assert stats["gan_nb_d"].item() == pytest.approx(expected.item())
    assert term.item() == pytest.approx(2.0 * expected.item())


def test_l1_objective_has_no_d_hook():
    tg, td, _, _ = _pair()
    assert distill_hooks(DistillConfig("l1"), tg, td).d is None
    assert distill_hooks(DistillConfig("density", lambda_nb_d=0.0), tg, td).d is None
    assert distill_hooks(DistillConfig("density"), tg, td).d is not None


def test_trainer_calls_d_hook_and_g_side_reuses_its_neighbourhood():
    """The trainer adds the D hook's term to L_D and records its stats; the teacher runs over the
    neighbourhood once per step (the G hook takes the D hook's DensityResult)."""
    tg, td, sg, sd = _pair()
    hooks = distill_hooks(DistillConfig("density"), tg, td, DensityConfig(neighbors="jitter"))
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=2, batch_size=2, backend="torch", quiet=True),
                             extra_g_loss=hooks.g, extra_d_loss=hooks.d)
    calls = []
    tg.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    for step in (1, 2):
        rec = trainer.train_step(_batch(tg, seed=step))
        assert {"loss_d_extra", "gan_nb_d", "gan_nb", "density"} <= set(rec)
    assert calls == [1 * 2, 2 * (1 + 4), 2, 2 * (1 + 4)]  # _batch's target, then one B·(K+1) pass


def test_trainer_adds_d_hook_term_to_d_loss_with_detached_fake():
    tg, _, sg, sd = _pair()
    batch = _batch(tg)
    seen = []

    def probe(b, fake, trainer):
        seen.append(fake.requires_grad)
        return torch.tensor(0.25), {"probe": torch.tensor(1.0)}

    recs = []
    for hook in (None, probe):
        torch.manual_seed(0)
        trainer = Pix2PixTrainer(copy.deepcopy(sg), copy.deepcopy(sd),
                                 TrainConfig(steps=1, batch_size=2, backend="torch", quiet=True),
                                 extra_d_loss=hook)
        recs.append(trainer.train_step(batch))
    assert seen == [False]
    assert recs[1]["loss_d"] == pytest.approx(recs[0]["loss_d"] + 0.25, abs=1e-6)
    assert recs[1]["probe"] == 1.0 and recs[1]["loss_d_extra"] == 0.25 and "probe" not in recs[0]
