"""PPCD-GAN baseline (docs/methods.md, "PPCD"): teacher → masked student, the progressive mask schedule, the
class-aware attention distillation and the pipeline end to end, all at tiny sizes on the torch backend."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from agents.baselines.ppcd import MaskSchedule, PPCDConfig, load_run, ppcd
from gan import export as gexport
from gan.losses.attention import (FeatureTaps, attention_map, cad_loss, class_weights,
                                  conditional_tap_weights, output_l1)
from gan.models import ResnetGenerator
from gan.models.conditional import ConditionalDiscriminator, ConditionalGenerator
from gan.models.ppcd import PPCDConditionalGenerator, PPCDGenerator, from_teacher
from gan.pruning.masked import export_plain
from gan.profile import count_params, model_macs

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize(model, seed=0):
    """Non-trivial norm γ/β, CBN embeddings and running stats, as a trained teacher has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "beta.weight")) or (".norm" in name and name.endswith("bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif name.endswith("gamma.weight") or (".norm" in name and name.endswith("weight")):
                t.copy_(1 + torch.randn(t.shape, generator=g) * 0.5)
    return model


def _resnet(norm="instance", seed=0):
    torch.manual_seed(seed)
    return _randomize(ResnetGenerator(ngf=4, n_blocks=2, norm=norm), seed).eval()


def _conditional(seed=0, classes=3, size=16):
    torch.manual_seed(seed)
    return _randomize(ConditionalGenerator(z_dim=8, num_classes=classes, ngf=4, img_size=size), seed).eval()


def _zy(n=4, classes=3):
    return torch.randn(n, 8), torch.arange(n) % classes


# ----------------------------------------------------------------------------------- teacher → student

@pytest.mark.parametrize("norm,convert", [("instance", True), ("instance", False), ("batch", True)])
def test_from_teacher_resnet_has_the_teachers_forward(norm, convert):
    teacher = _resnet(norm)
    student = from_teacher(teacher, convert_norm=convert).eval()
    assert isinstance(student, PPCDGenerator) and student.widths() == teacher.widths()
    assert student.mask_after == ("conv" if (norm, convert) == ("instance", False) else "norm")
    assert all(bool((m == 1).all()) for m in student.mask_parameters().values())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), atol=1e-6)
        fs, ft = student.features(x), teacher.features(x)
        assert all(torch.allclose(fs[k], ft[k], atol=1e-6) for k in ft)
    with pytest.raises(ValueError, match="ResnetGenerator or ConditionalGenerator"):
        from_teacher(ConditionalDiscriminator(num_classes=2, ndf=4, img_size=16))


def test_from_teacher_conditional_has_the_teachers_forward():
    teacher = _conditional()
    student = from_teacher(teacher).eval()
    assert isinstance(student, PPCDConditionalGenerator) and student.widths() == teacher.widths()
    z, y = _zy()
    with torch.no_grad():
        assert torch.allclose(student(z, y), teacher(z, y), atol=1e-6)
    student.train(), teacher.train()  # batch statistics too
    with torch.no_grad():
        assert torch.allclose(student(z, y), teacher(z, y), atol=1e-5)


def test_conditional_export_drops_dead_channels_and_equals_masked():
    student = from_teacher(_conditional(1))
    rng = random.Random(0)
    with torch.no_grad():
        for g in student.channel_groups():
            dead = rng.sample(range(g.size), g.size // 3)
            for r in g.refs:
                if r.tensor.endswith(".mask"):
                    p = student.get_parameter(r.tensor)
                    p.uniform_(0.3, 1.5)
                    p[dead] = 0.0
    dense = export_plain(student)
    assert type(dense) is ConditionalGenerator
    assert dense.widths() == {g.name: g.size - g.size // 3 for g in student.channel_groups()}
    z, y = _zy()
    for mode in (False, True):
        student.train(mode), dense.train(mode)
        with torch.no_grad():
            assert torch.allclose(student(z, y), dense(z, y), atol=1e-5)
    assert count_params(dense) < count_params(_conditional(1))


# ----------------------------------------------------------------------------------- schedule

def _run_schedule(student, target, size, inputs, steps=12, every=3):
    """Drive a MaskSchedule as the trainer hook does, with mask values drifting like training."""
    sched = MaskSchedule(student, target, size, prune_steps=steps, update_every=every).attach()
    g = torch.Generator().manual_seed(0)
    for t in range(1, steps + 3):
        student(*inputs)  # the forward pre-hook re-zeroes the frozen masks
        sched.maybe_update(t)
        loss = student(*inputs).square().mean() + sched.penalty()
        loss.backward()
        with torch.no_grad():
            for p in student.mask_parameters().values():
                assert p.grad is not None
                p.add_(0.05 * torch.randn(p.shape, generator=g))  # a drifting "optimizer"
                p.grad = None
    sched.finish()
    sched.detach()
    return sched


@pytest.mark.parametrize("kind", ["resnet", "conditional"])
def test_schedule_is_monotone_reaches_s_f_and_export_meets_the_target(kind):
    if kind == "resnet":
        teacher, size, inputs = _resnet(), SIZE, (torch.randn(2, 3, SIZE, SIZE),)
    else:
        teacher, size, inputs = _conditional(), 16, _zy()
    student = from_teacher(teacher).train()
    full = model_macs(teacher, size)
    sched = _run_schedule(student, 0.5, size, inputs)
    s = [h["sparsity"] for h in sched.history]
    assert s == sorted(s) and s[0] > 0 and sched.done
    assert s[-1] == pytest.approx(sched.s_final) and sched.history[-1]["step"] == 12
    assert [h["step"] for h in sched.history] == [3, 6, 9, 12]
    # every frozen mask is exactly 0 and its group's channel is dropped by the export
    masks = student.mask_parameters()
    for g in sched.groups:
        for n in sched.masks[g.name]:
            assert bool((masks[n][sched.frozen[g.name]] == 0).all())
    assert student.dead_channel_spec() == sched.spec()
    again = MaskSchedule(student, 0.5, size, prune_steps=12, update_every=3)
    again.load_state_dict(sched.state_dict())  # what a checkpoint keeps
    assert again.spec() == sched.spec() and again.history == sched.history and again.done
    dense = export_plain(student.eval())
    assert type(dense).__name__ == type(teacher).__name__
    macs = model_macs(dense, size)
    # a cut that meets the target is at most one channel below it (the fill gives back the rest)
    one_channel = max(sched.mm.full - sched.mm.macs({g.name: g.size - 1}) for g in sched.groups)
    assert sched.target - one_channel < macs <= sched.target == int(0.5 * full)
    assert macs == sched.history[-1]["macs"]
    assert count_params(dense) < count_params(teacher)
    with torch.no_grad():
        assert torch.allclose(student(*inputs), dense.eval()(*inputs), atol=1e-5)


def test_schedule_ramp_and_errors():
    student = from_teacher(_resnet())
    sched = MaskSchedule(student, 0.6, SIZE, prune_steps=10, update_every=2)
    assert sched.ramp(0) == 0 and sched.ramp(10) == sched.ramp(50) == 1
    assert sched.ramp(5) == pytest.approx(1 - 0.5 ** 3)
    assert not sched.is_update_step(3) and sched.is_update_step(4) and sched.is_update_step(11)
    assert 0 < sched.initial_s_final < 1
    with pytest.raises(ValueError, match="below"):
        MaskSchedule(student, 1e-4, SIZE, prune_steps=10)
    with pytest.raises(ValueError, match="no mask layers"):
        MaskSchedule(_resnet(), 0.5, SIZE, prune_steps=10)


# ----------------------------------------------------------------------------------- attention distillation

def test_attention_maps_are_unit_norm_and_class_weights_differ():
    f = torch.randn(3, 5, 4, 4)
    for w in (None, torch.rand(5), torch.rand(3, 5)):
        a = attention_map(f, w)
        assert a.shape == (3, 16) and torch.allclose(a.norm(dim=1), torch.ones(3))
    assert torch.allclose(attention_map(f), attention_map(f, torch.full((5,), 0.2)), atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        attention_map(f, torch.rand(4))
    teacher = _conditional()
    w = conditional_tap_weights(teacher, torch.tensor([0, 1, 2, 0]))
    assert list(w) == ["fc", "block1", "block2"]
    for k, v in w.items():
        assert torch.allclose(v.sum(1), torch.ones(4))
        assert torch.allclose(v[0], v[3])  # same class, same weights
    assert not torch.allclose(w["fc"][0], w["fc"][1]) and not torch.allclose(w["block1"][1], w["block1"][2])
    assert torch.allclose(w["block2"][0], w["block2"][1])  # read by the unconditional final BN
    assert torch.allclose(class_weights(torch.tensor([[1.0, -1.0]])), torch.tensor([[0.5, 0.5]]))


def test_distillation_gradients_reach_the_student_only():
    teacher = _conditional().requires_grad_(True)
    student = from_teacher(teacher).train()
    z, y = _zy()
    with FeatureTaps(student) as s_taps, FeatureTaps(teacher) as t_taps:
        fake, t_out = student(z, y), teacher(z, y)
        sf, tf = s_taps.pop(), t_taps.pop()
        assert sf["fc"].shape == tf["fc"].shape == (4, 16, 4, 4)
        loss, parts = cad_loss(sf, tf, conditional_tap_weights(teacher, y))
    assert set(parts) == {"fc", "block1", "block2"} and loss > 0
    (loss + output_l1(fake, t_out)).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.fc.weight.grad.abs().sum() > 0 and student.blocks[0].conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():  # identical networks: zero distance
        same, _ = cad_loss(teacher.features(z, y), teacher.features(z, y))
    assert same == 0


# ----------------------------------------------------------------------------------- pipeline

def _check_result(r, out, teacher_class):
    assert r["macs"] <= r["target_macs"] and r["macs"] >= 0.9 * r["target_macs"]
    s = [h["sparsity"] for h in r["sparsity_history"]]
    assert s == sorted(s) and s[-1] == pytest.approx(r["final_sparsity"]) == pytest.approx(r["s_final"])
    g = gexport.load(out / "generator")
    assert type(g).__name__ == teacher_class and g.widths() == r["widths"]
    assert r["params"] < r["teacher_params"] and r["train_s"] > 0
    assert json.loads((out / "ppcd.json").read_text())["macs"] == r["macs"]
    assert (out / "generator" / "samples.png").is_file()
    return g


def test_ppcd_pipeline_pix2pix(tmp_path):
    from tests.teachers import tiny_teacher

    run = tiny_teacher(tmp_path / "teacher", data_root=tmp_path / "data", size=SIZE, steps=4)
    out = tmp_path / "ppcd"
    r = ppcd(run, 0.5, out, steps=16, batch_size=2, backend="torch", quiet=True,
             config=PPCDConfig(onnx=False, latency_runs=1))
    g = _check_result(r, out, "ResnetGenerator")
    assert model_macs(g, SIZE) == r["macs"] and r["student_norm"] == "instance_affine"
    assert {"cad", "mask_l1", "cad_res_in", "l1"} <= set(r["history"][-1]) and r["steps"] == 16
    assert r["prune_steps"] == 12 and r["sparsity_history"][-1]["step"] == 12
    assert set(r["spec"]) == set(r["widths"]) and all(len(r["spec"][k]) == v for k, v in r["widths"].items())


def _class_folders(root, size=16, n=4):
    """Two classes (bright / dark noise) in train/ and val/ folders."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, name in enumerate(("bright", "dark")):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                base = 200 if k == 0 else 50
                img = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def _conditional_run(tmp_path, size=16):
    data = _class_folders(tmp_path / "classes", size)
    torch.manual_seed(0)
    g = _randomize(ConditionalGenerator(z_dim=8, num_classes=2, ngf=4, img_size=size)).train()
    d = ConditionalDiscriminator(num_classes=2, ndf=4, img_size=size)
    run = tmp_path / "cteacher"
    gexport.save(g, run / "generator", size=size, onnx=False, latency_runs=1)
    gexport.save(d, run / "discriminator", size=size, onnx=False, latency_runs=1)
    (run / "teacher.json").write_text(json.dumps({"kind": "conditional", "data": str(data), "size": size,
                                                  "generator": "generator", "discriminator": "discriminator"}))
    return run


def test_ppcd_pipeline_conditional(tmp_path):
    run = _conditional_run(tmp_path)
    assert type(load_run(run).generator) is ConditionalGenerator
    out = tmp_path / "ppcd"
    r = ppcd(run, 0.4, out, steps=12, batch_size=4, backend="torch", quiet=True,
             config=PPCDConfig(onnx=False, latency_runs=1, updates=4))
    g = _check_result(r, out, "ConditionalGenerator")
    assert model_macs(g, 16) == r["macs"] and r["kind"] == "conditional"
    assert {"cad", "l1_teacher", "mask_l1", "cad_fc", "gan_g"} <= set(r["history"][-1])
    assert [h["step"] for h in r["sparsity_history"]] == [2, 4, 6, 8, 9]
    with pytest.raises(ValueError, match="is a video teacher"):
        (tmp_path / "vid").mkdir()
        (tmp_path / "vid" / "teacher.json").write_text(json.dumps({"kind": "video"}))
        load_run(tmp_path / "vid")
