"""CAT inception generator sizes and zero-width branches, PPCD mask export, conditional GAN shapes."""
import random

import pytest
import torch

from gan.models import build
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.inception import InceptionGenerator
from gan.models.ppcd import ChannelMask, PPCDDiscriminator, PPCDGenerator
from gan.pruning.masked import export_dense
from gan.profile import count_params, model_macs
from gan.pruning.physical import masked, prune


# ---------------------------------------------------------------------------------------- CAT


def test_inception_teacher_size_matches_hand_count():
    """CAT's inception teacher (docs/methods.md, "CAT"): ≈43.5 G MACs / ≈8.1 M params; the exact numbers
    are recomputed here."""
    c, m, hw, ks = 256, 42, 64 * 64, (1, 3, 5)
    conv_branches = sum(2 * c * m * k * k for k in ks)
    dw_branches = sum(2 * c * m + m * k * k for k in ks)
    block_macs = hw * (conv_branches + dw_branches)
    # ResNet-9 stem, down1, down2, up1, up2 (output grid), head (the ResNet-9 layout of gan/models/resnet.py)
    outer = (3 * 64 * 49 * 256**2 + 64 * 128 * 9 * 128**2 + 128 * 256 * 9 * 64**2
             + 256 * 128 * 9 * 128**2 + 128 * 64 * 9 * 256**2 + 64 * 3 * 49 * 256**2)
    # params: conv weights + first-conv/dw biases (IN → bias) + IN-affine γβ; last branch convs bias-free
    block_params = (conv_branches + dw_branches + 3 * (m + 2 * m) + 3 * (m + 2 * m + m + 2 * m)
                    + 2 * c)
    outer_params = 11_378_179 - 9 * 1_180_160 + 2 * (64 + 128 + 256 + 128 + 64)
    model = InceptionGenerator()
    assert model_macs(model, 256) == outer + 9 * block_macs == 43_490_402_304
    assert count_params(model) == outer_params + 9 * block_params == 8_140_431
    names = [g.name for g in model.channel_groups()]
    assert names[:3] == ["stem", "down1", "res"] and names[-2:] == ["up1", "up2"]
    assert names[3:9] == [f"block1.{b}" for b in ("conv1", "conv3", "conv5", "dw1", "dw3", "dw5")]
    assert len(names) == 5 + 9 * 6
    g = {g.name: g for g in model.channel_groups()}
    assert g["block2.dw3"].norm == "blocks.1.branches.dw3.norm1.weight"
    assert g["block2.dw3"].min_keep == 0 and g["res"].min_keep == 1


def test_inception_features_and_unknown_widths():
    model = InceptionGenerator(ngf=8, n_blocks=6, channels_reduction_factor=4).eval()
    feats = model.features(torch.randn(1, 3, 32, 32))
    assert list(feats) == ["res_in", "block2", "block4", "block6"]
    assert feats["block6"].shape == (1, 32, 8, 8)
    with pytest.raises(ValueError, match="unknown width"):
        InceptionGenerator(ngf=8, widths={"block10.conv1": 3})
    with pytest.raises(ValueError, match="kernel_sizes"):
        InceptionGenerator(ngf=8, kernel_sizes=(3, 3))


def test_inception_branch_at_zero_disappears():
    model = InceptionGenerator(ngf=8, n_blocks=2, norm="instance", channels_reduction_factor=4).eval()
    spec = {"block1.conv3": [], "block1.dw5": [1, 4]}
    spec.update({f"block2.{b}": [] for b in ("conv1", "conv3", "conv5", "dw1", "dw3", "dw5")})
    pruned = prune(model, spec).eval()
    assert "conv3" not in pruned.blocks[0].branches and len(pruned.blocks[1].branches) == 0
    assert pruned.widths()["block1.conv3"] == 0 and pruned.widths()["block1.dw5"] == 2
    assert "block1.conv3" not in {g.name for g in pruned.channel_groups()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(masked(model, spec).eval()(x), pruned(x), atol=1e-5)
        h = torch.randn(1, 32, 8, 8)
        assert torch.equal(pruned.blocks[1](h), h)  # affine-free IN of zeros: identity block
    again = build(pruned.architecture())  # zero widths survive the rebuild, and a second prune
    again.load_state_dict(pruned.state_dict())
    twice = prune(again, {"block1.conv1": [0]})
    assert twice.widths()["block1.conv3"] == 0 and twice.widths()["block1.conv1"] == 1
    branch_macs = 8 * 8 * 2 * 32 * 8 * 9  # the removed 3×3 conventional branch, at 8²
    assert model_macs(model, 32) - model_macs(prune(model, {"block1.conv3": []}), 32) == branch_macs


# ---------------------------------------------------------------------------------------- PPCD


def _random_masks(model, seed, zero_frac=0.3):
    rng = random.Random(seed)
    with torch.no_grad():
        for p in model.mask_parameters().values():
            p.uniform_(0.2, 1.5)
            for c in rng.sample(range(p.numel()), int(zero_frac * p.numel())):
                p[c] = 0.0
    return model


def _res_all_zero(model, c):
    """Zero residual channel c in every mask of the res group (only then it can be dropped)."""
    with torch.no_grad():
        for r in next(g for g in model.channel_groups() if g.name == "res").refs:
            if r.tensor.endswith(".mask"):
                model.get_parameter(r.tensor)[c] = 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_ppcd_generator_export_equals_masked_and_drops_channels(seed):
    model = _random_masks(PPCDGenerator(ngf=8, n_blocks=3), seed)
    _res_all_zero(model, 5)
    dense = export_dense(model)
    assert not dense.use_masks and not any(isinstance(m, ChannelMask) for m in dense.modules())
    assert not any(k.endswith(".mask") for k in dense.state_dict())
    for g in model.channel_groups():
        masks = [model.get_parameter(r.tensor) for r in g.refs if r.tensor.endswith(".mask")]
        dead = torch.stack([m == 0 for m in masks]).all(0)
        assert dense.widths()[g.name] == max(g.size - int(dead.sum()), g.min_keep)
    assert dense.widths()["res"] == 31
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), dense.eval()(x), atol=1e-5)
    again = build(dense.architecture())  # the mask-free export rebuilds from its architecture
    again.load_state_dict(dense.state_dict())
    assert count_params(dense) < count_params(model)


def test_ppcd_discriminator_export_and_batchnorm_rules():
    d = _random_masks(PPCDDiscriminator(input_nc=3, ndf=8, n_layers=2), 3)
    dense_d = export_dense(d)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(d.eval()(x), dense_d.eval()(x), atol=1e-5)
    zeros = int((d.layers[0].mask.mask == 0).sum())
    assert dense_d.widths()["layer1"] == 8 - zeros
    # mask before BN: BN(0) ≠ 0 in eval (running stats), so zero-mask channels stay (exactly, folded)
    g = _random_masks(PPCDGenerator(ngf=8, n_blocks=2, norm="batch"), 4)
    with torch.no_grad():
        for name, t in g.state_dict().items():
            if name.endswith("running_mean"):
                t.normal_(0, 0.5)
    dense_g = export_dense(g)
    assert dense_g.widths()["stem"] == 8
    # mask after BN: a zero mask silences the channel, so it is dropped
    post = _random_masks(PPCDGenerator(ngf=8, n_blocks=2, norm="batch", mask_after="norm"), 4)
    dense_post = export_dense(post)
    assert dense_post.widths()["stem"] == 8 - int((post.stem.mask.mask == 0).sum())
    xg = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(g.eval()(xg), dense_g.eval()(xg), atol=1e-5)
        assert torch.allclose(post.eval()(xg), dense_post.eval()(xg), atol=1e-5)
    with pytest.raises(ValueError, match="affine"):
        PPCDGenerator(ngf=8, norm="instance", mask_after="norm")


def test_ppcd_masks_are_group_refs():
    model = PPCDGenerator(ngf=8, n_blocks=2)
    refs = {r.tensor for g in model.channel_groups() for r in g.refs}
    assert set(model.mask_parameters()) <= refs
    assert len(model.mask_parameters()) == 5 + 2 * 2
    pruned = prune(model, {"inner_1": [0, 3]})
    assert pruned.blocks[0].mask1.mask.shape == (2,)


# ---------------------------------------------------------------------------------- conditional


def test_conditional_shapes_and_class_dependence():
    g = ConditionalGenerator().eval()
    d = ConditionalDiscriminator().eval()
    z, y = g.example_inputs(4, 999)
    assert y.dtype == torch.long and z.shape == (4, 64)
    with torch.no_grad():
        img = g(z, y)
        assert img.shape == (4, 3, 32, 32) and img.abs().max() <= 1
        assert d(img, y).shape == (4, 1)
        g.blocks[0].cbn1.gamma.weight[1] += 1.0
        assert not torch.allclose(g(z, torch.zeros_like(y)), g(z, torch.ones_like(y)))
    assert [k for k in g.widths()] == ["fc", "block1.inner", "block1.out", "block2.inner",
                                       "block2.out", "block3.inner", "block3.out"]
    assert g.widths()["fc"] == 256 and d.widths()["block3.out"] == 128
    assert ConditionalGenerator(img_size=64).n_blocks == 4
    assert model_macs(g, 32) > 0 and model_macs(d, 32) > 0  # meta-device build with (z, y)
    with pytest.raises(ValueError, match="img_size"):
        ConditionalGenerator(img_size=48)
    with pytest.raises(ValueError, match="unknown width"):
        ConditionalDiscriminator(widths={"fc": 3})


def test_conditional_fc_group_uses_blocks_of_16():
    g = ConditionalGenerator(z_dim=8, num_classes=3, ngf=4, img_size=16)
    pruned = prune(g, {"fc": [1, 5]})
    assert pruned.fc.weight.shape == (2 * 16, 8)
    assert torch.equal(pruned.fc.weight[16:], g.fc.weight[5 * 16: 6 * 16])
    assert torch.equal(pruned.blocks[0].cbn1.gamma.weight, g.blocks[0].cbn1.gamma.weight[:, [1, 5]])
