"""``gan.train.builder.build_trainer``: the right trainer and config per kind, the hooks wired, bad
combinations refused; ``on_checkpoint`` runs after a save; the teacher-kind error is bad input."""
import pytest
import torch

from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.train.builder import build_trainer, train_config
from gan.train.conditional import ConditionalConfig, ConditionalGANTrainer
from gan.train.cyclegan import CycleGANConfig, CycleGANTrainer
from gan.train.distill import DistillHooks
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
BASE = dict(steps=1, batch_size=2, backend="torch", quiet=True)


def _pix2pix():
    torch.manual_seed(0)
    return ResnetGenerator(ngf=4, n_blocks=1), PatchGANDiscriminator(input_nc=6, ndf=4, n_layers=1)


def _conditional():
    torch.manual_seed(0)
    return (ConditionalGenerator(z_dim=8, num_classes=2, ngf=4, img_size=16),
            ConditionalDiscriminator(num_classes=2, ndf=4, img_size=16))


def test_kinds_and_configs():
    t = build_trainer("pix2pix", *_pix2pix(), BASE)
    assert type(t) is Pix2PixTrainer and type(t.cfg) is TrainConfig and t.cfg.gan_loss == "hinge"
    torch.manual_seed(0)
    g = [ResnetGenerator(ngf=4, n_blocks=1) for _ in "AB"]
    d = [PatchGANDiscriminator(input_nc=3, ndf=4, n_layers=1) for _ in "AB"]
    t = build_trainer("cyclegan", g, d, train_config("cyclegan", **BASE))
    assert type(t) is CycleGANTrainer and type(t.cfg) is CycleGANConfig and t.cfg.gan_loss == "lsgan"
    assert t.g_a is g[0] and t.d_b is d[1]
    t = build_trainer("conditional", *_conditional(), BASE)
    assert type(t) is ConditionalGANTrainer and type(t.cfg) is ConditionalConfig and t.cfg.betas == (0.0, 0.999)


def test_hooks_wired_and_bad_combinations_refused():
    aux = torch.nn.Conv2d(3, 3, 1)

    def g_hook(batch, fake, trainer):
        return fake.new_zeros(()), {}

    def d_hook(batch, fake, trainer):
        return fake.new_zeros(()), {}

    t = build_trainer("pix2pix", *_pix2pix(), BASE, DistillHooks(g_hook, d_hook, aux=(aux,)))
    assert t.extra_g_loss is g_hook and t.extra_d_loss is d_hook and t.aux_opt is not None
    t = build_trainer("conditional", *_conditional(), BASE, DistillHooks(g_hook, None))
    assert t.extra_g_loss is g_hook and t.extra_d_loss is None
    with pytest.raises(ValueError, match="no D-side"):
        build_trainer("conditional", *_conditional(), BASE, DistillHooks(g_hook, d_hook))
    with pytest.raises(ValueError, match="no loss hooks"):
        build_trainer("cyclegan", [], [], BASE, DistillHooks(g_hook, None))
    with pytest.raises(TypeError, match="CycleGANConfig"):
        build_trainer("cyclegan", [], [], TrainConfig(**BASE))
    with pytest.raises(ValueError, match="unknown trainer kind"):
        build_trainer("stylegan", *_pix2pix())


def test_on_checkpoint_after_save(tmp_path):
    t = build_trainer("pix2pix", *_pix2pix(), BASE)
    seen = []
    t.on_checkpoint = lambda tr: seen.append(tr.last_checkpoint)
    path = t.save_checkpoint(tmp_path)
    assert seen == [path] and path.is_dir()


def test_teacher_config_error_is_bad_input():
    from gan.train.kinds import TeacherConfigError
    from orchestration.errors import input_error_types

    assert issubclass(TeacherConfigError, ValueError) and TeacherConfigError in input_error_types()
