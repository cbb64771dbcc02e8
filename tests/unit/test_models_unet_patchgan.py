"""Sizes of the U-Net, PatchGAN and CycleGAN pair against docs/methods.md, "Model zoo"."""
import pytest
import torch
from torch import nn

from gan.models import build
from gan.models.cyclegan import CycleGANPair
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.models.unet import UnetGenerator
from gan.profile import count_params, model_macs
from gan.pruning.physical import masked, prune


def test_unet_256_params_and_macs():
    model = UnetGenerator()
    assert count_params(model) == 54_413_955  # pix2pix unet_256 (BN) prints 54.414 M
    assert model_macs(model, 256) == pytest.approx(18.14e9, rel=1e-3)
    assert [g.name for g in model.channel_groups()] == [f"enc{i}" for i in range(1, 9)] + [
        f"dec{i}" for i in range(1, 8)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6 + 7


def test_unet_shapes_and_features():
    model = UnetGenerator(ngf=8, num_downs=6).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        feats = model.features(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert list(feats) == ["bottleneck", "dec5", "dec3", "dec1"]
    assert feats["bottleneck"].shape == (1, 64, 1, 1) and feats["dec1"].shape == (1, 8, 32, 32)


def test_unet_rejects_unknown_widths():
    with pytest.raises(ValueError, match="unknown width"):
        UnetGenerator(ngf=8, num_downs=5, widths={"enc9": 3})


@pytest.mark.parametrize("ndf,params", [(64, 2_768_705), (128, 11_042_433)])
def test_patchgan_256(ndf, params):
    model = PatchGANDiscriminator(input_nc=6, ndf=ndf, n_layers=3).eval()
    assert count_params(model) == params  # ≈2.77 M / ≈11.0 M
    with torch.device("meta"):
        out = model.to("meta")(torch.empty(1, 6, 256, 256))
    assert out.shape == (1, 1, 30, 30)
    assert [g.name for g in model.channel_groups()] == ["layer1", "layer2", "layer3", "layer4"]
    assert {g.kind for g in model.channel_groups()} == {"disc"}


def test_patchgan_features_feed_the_head():
    model = PatchGANDiscriminator(ndf=8, n_layers=3).eval()
    x = torch.randn(2, 6, 32, 32)
    with torch.no_grad():
        f = model.features(x)
        assert f.shape == (2, 64, 3, 3)
        assert torch.equal(model.head(f), model(x))
        assert model(x).shape == (2, 1, 2, 2)


def _pair():
    return CycleGANPair(ResnetGenerator(ngf=4, n_blocks=2).architecture(),
                        PatchGANDiscriminator(input_nc=3, ndf=4, n_layers=2).architecture())


def test_cyclegan_pair_groups_widths_and_rebuild():
    pair = _pair().eval()
    names = [g.name for g in pair.channel_groups()]
    assert names[0] == "G_A.stem" and "D_B.layer3" in names and len(names) == 2 * 7 + 2 * 3
    spec = {"G_A.res": [0, 3, 7], "D_B.layer2": [1, 2], "G_B.stem": [0]}
    small = prune(pair, spec).eval()
    assert small.widths()["G_A.res"] == 3 and small.D_B.widths()["layer2"] == 2
    assert small.G_B.widths()["stem"] == 1 and small.G_B.widths()["res"] == 16
    again = build(small.architecture())
    again.load_state_dict(small.state_dict())
    x = torch.randn(1, 3, 32, 32)
    d_in = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(masked(pair, spec).eval().D_B(d_in), small.D_B(d_in), atol=1e-5)
        for a, b in zip(small(x), again.eval()(x)):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown width"):
        CycleGANPair(pair.G_A.architecture(), pair.D_A.architecture(), widths={"stem": 2})
    with pytest.raises(ValueError, match="unknown width"):
        CycleGANPair(pair.G_A.architecture(), pair.D_A.architecture(), widths={"G_A.nope": 2})
