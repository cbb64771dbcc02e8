"""CycleGAN and class-conditional trainers on the plain-torch backend: they learn on a fixed batch,
weigh their terms as docs/methods.md, "Teacher training" says, and resume exactly (DeepSpeed runs: the
CLI tests)."""
import math

import pytest
import torch

from gan.data import make_loader
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.train import checkpoint as ckpt
from gan.train.conditional import ConditionalConfig, ConditionalGANTrainer
from gan.train.cyclegan import CycleGANConfig, CycleGANTrainer
from gan.train.pix2pix import NonFiniteLossError

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _cycle_nets(seed=0):
    torch.manual_seed(seed)
    g = [ResnetGenerator(ngf=4, n_blocks=2) for _ in "AB"]
    d = [PatchGANDiscriminator(input_nc=3, ndf=4, n_layers=2) for _ in "AB"]
    return (*g, *d)


def _cycle(seed=0, **kw):
    cfg = dict(steps=6, batch_size=2, backend="torch", log_every=1, quiet=True)
    return CycleGANTrainer(*_cycle_nets(seed), CycleGANConfig(**{**cfg, **kw}))


def _unpaired(n=2, seed=1):
    """Smooth random images (learnable at ngf 4): A, and unrelated B images of another contrast."""
    g = torch.Generator().manual_seed(seed)

    def smooth(scale):
        low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
        return torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear") * scale

    return {"A": smooth(0.9), "B": smooth(0.5)}


class _Unpaired(torch.utils.data.Dataset):
    def __init__(self, n=4):
        self.items = _unpaired(n)

    def __len__(self):
        return len(self.items["A"])

    def __getitem__(self, i):
        return {"A": self.items["A"][i], "B": self.items["B"][i]}


def _cond_nets(seed=0, classes=2, size=16):
    torch.manual_seed(seed)
    return (ConditionalGenerator(z_dim=16, num_classes=classes, ngf=8, img_size=size),
            ConditionalDiscriminator(num_classes=classes, ndf=8, img_size=size))


def _cond(seed=0, **kw):
    cfg = dict(steps=6, batch_size=4, backend="torch", log_every=1, quiet=True)
    return ConditionalGANTrainer(*_cond_nets(seed), ConditionalConfig(**{**cfg, **kw}))


def _two_classes(n=8, size=16):
    """Class 0 is a bright image, class 1 a dark one: G must learn to follow y."""
    half = n // 2
    x = torch.cat([torch.full((half, 3, size, size), 0.8), torch.full((n - half, 3, size, size), -0.8)])
    return {"image": x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2)),
            "label": torch.tensor([0] * half + [1] * (n - half))}


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, n=8):
        self.items = _two_classes(n)

    def __len__(self):
        return len(self.items["label"])

    def __getitem__(self, i):
        return {"image": self.items["image"][i], "label": int(self.items["label"][i])}


# ------------------------------------------------------------------------------------------ CycleGAN

def test_cyclegan_losses_weighted_as_methods_and_cycle_drops():
    t = _cycle(steps=20, lr=1e-3)
    hist = t.fit([_unpaired()])
    assert [r["step"] for r in hist] == list(range(1, 21))
    keys = ("loss_d", "loss_d_A", "loss_d_B", "loss_g", "gan_g", "cycle", "idt")
    assert all(math.isfinite(r[k]) for r in hist for k in keys)
    for r in hist:  # L_G = GAN + 10·cycle + 10·0.5·identity; L_D sums both D's
        assert r["loss_g"] == pytest.approx(r["gan_g"] + 10 * r["cycle"] + 5 * r["idt"], rel=1e-5)
        assert r["loss_d"] == pytest.approx(r["loss_d_A"] + r["loss_d_B"], rel=1e-5)
    assert t.gan.kind == "lsgan" and t.gan.d_scale == 0.5
    assert hist[-1]["cycle"] < 0.8 * hist[0]["cycle"]
    assert hist[-1]["idt"] < 0.8 * hist[0]["idt"]
    # the members are separate networks: G_A maps A→B, G_B maps B→A
    assert set(dict(t.generator.named_children())) == {"G_A", "G_B"}
    assert set(dict(t.discriminator.named_children())) == {"D_A", "D_B"}


def test_cyclegan_identity_off_and_nan_stop():
    hist = _cycle(steps=2, lambda_identity=0.0).fit([_unpaired()])
    assert all(r["idt"] == 0 and r["loss_g"] == pytest.approx(r["gan_g"] + 10 * r["cycle"], rel=1e-5)
               for r in hist)
    with pytest.raises(NonFiniteLossError, match=r"at step 2\b"):
        _cycle(lr=float("inf")).fit([_unpaired()])  # step 1's update makes G inf


def test_cyclegan_resume_continues_exactly(tmp_path):
    def loader():  # shuffled, 2 batches per epoch: the resume must land on the same batches
        return make_loader(_Unpaired(4), batch_size=2, shuffle=True, seed=5)

    straight = _cycle(steps=6).fit(loader())
    first = _cycle(steps=3, out_dir=str(tmp_path), ckpt_every=3)
    first.fit(loader())
    saved = tmp_path / "checkpoints" / "step_3"
    names = ckpt.read_safetensors(saved / "G.safetensors")
    assert {k.split(".", 1)[0] for k in names} == {"G_A", "G_B"}
    second = _cycle(seed=123, steps=6)
    assert second.resume(tmp_path) == saved
    resumed = second.fit(loader())
    assert [r["step"] for r in resumed] == list(range(1, 7))
    for a, b in zip(resumed, straight):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-5), (a["step"], k)
    ref = _cycle(steps=6)
    ref.fit(loader())
    for k, v in ref.generator.state_dict().items():
        assert torch.allclose(v, second.generator.state_dict()[k], atol=1e-5), k


# ------------------------------------------------------------------------------------------ conditional

def test_conditional_generator_learns_to_follow_the_label():
    t = _cond(steps=60, batch_size=8, lr=1e-3)
    z = torch.randn(16, 16)
    before = [t.generate(torch.full((16,), k), z).mean().item() for k in (0, 1)]
    hist = t.fit([_two_classes()])
    assert t.gan.kind == "hinge" and all(math.isfinite(r["loss_d"] + r["loss_g"]) for r in hist)
    after = [t.generate(torch.full((16,), k), z).mean().item() for k in (0, 1)]
    assert abs(before[0] - before[1]) < 0.1
    assert after[0] - after[1] > 0.4, after  # class 0 bright, class 1 dark, as in the data
    assert sum(r["loss_d"] for r in hist[-10:]) < sum(r["loss_d"] for r in hist[:10])


def test_conditional_resume_continues_exactly(tmp_path):
    def loader():
        return make_loader(_Labelled(8), batch_size=4, shuffle=True, seed=3)

    straight = _cond(steps=6).fit(loader())
    _cond(steps=3, out_dir=str(tmp_path), ckpt_every=3).fit(loader())
    second = _cond(seed=9, steps=6)
    second.resume(tmp_path)
    resumed = second.fit(loader())  # z is drawn from the saved RNG: same latents as the straight run
    assert len(resumed) == len(straight) == 6
    for a, b in zip(resumed, straight):
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-5), (a["step"], k)
