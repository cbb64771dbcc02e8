"""The fine-tuning objectives' extra G loss (gan.train.distill): gradients reach the student only."""
import pytest
import torch

from gan.models import ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.pruning.physical import prune
from gan.pruning.saliency import spec_from_ratios
from gan.train.distill import DistillConfig, TeacherTargets, distill_loss
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
    import copy

    trainer = Pix2PixTrainer(copy.deepcopy(tg), sd, TrainConfig(steps=1, batch_size=2, backend="torch"),
                             extra_g_loss=distill_loss(DistillConfig("density", lambda_nb=0.0), tg, td))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    loss, stats = trainer.extra_g_loss({"A": x, "B": x}, trainer.generator(x), trainer)
    assert stats["density"].item() == pytest.approx(0.0, abs=1e-5)


def test_full_train_step_leaves_teacher_untouched():
    tg, td, sg, sd = _pair()
    before = [p.clone() for p in list(tg.parameters()) + list(td.parameters())]
    trainer = Pix2PixTrainer(sg, sd, TrainConfig(steps=2, batch_size=2, lambda_l1=10.0, backend="torch",
                                                 quiet=True),
                             extra_g_loss=distill_loss(DistillConfig("density"), tg, td))
    data = [{"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}]
    trainer.fit(TeacherTargets(data, tg))
    after = list(tg.parameters()) + list(td.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.grad is None for p in after)
    assert trainer.step == 2


def test_unknown_objective():
    tg, td, _, _ = _pair()
    with pytest.raises(ValueError, match="unknown objective"):
        distill_loss(DistillConfig("vem"), tg, td)
