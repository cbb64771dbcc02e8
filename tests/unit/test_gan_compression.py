"""GAN Compression baseline at tiny sizes: slicing, supernet, distillation, evolution, pipeline, backend."""
import math

import numpy as np
import pytest
import torch

from agents.baselines.evolution import EvolutionConfig, evolution_search
from gan.losses.feature_distill import feature_distill
from gan.models import TINY_EXAMPLES, ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.profile import model_macs
from gan.pruning.physical import prune
from gan.pruning.saliency import spec_from_ratios
from gan.pruning.slicing import permute_channels, sliced_call, sliced_parameters
from gan.pruning.targets import spec_macs
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig
from gan.train.supernet import Supernet

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    from gan.teacher_run import load_teacher_run
    from tests.teachers import tiny_teacher

    tmp = tmp_path_factory.mktemp("gc")
    return load_teacher_run(tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=SIZE, steps=5))


@pytest.fixture(scope="module")
def pipeline(teacher_run, tmp_path_factory):
    from agents.baselines.gan_compression import gan_compression

    out = tmp_path_factory.mktemp("gc_out")
    target = int(0.3 * spec_macs(teacher_run.generator, {}, SIZE))
    return target, gan_compression(teacher_run, target, out, supernet_steps=3, population=8, generations=3,
                                   eval_items=4, batch_size=2, backend="torch", quiet=True)


def _teacher(ngf=4, n_blocks=3, norm="instance_affine"):
    torch.manual_seed(0)
    return ResnetGenerator(ngf=ngf, n_blocks=n_blocks, norm=norm)


def _x(n=2, seed=1):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _first(y):
    return y if isinstance(y, torch.Tensor) else y[0]


# ------------------------------------------------------------------------------------- slicing

@pytest.mark.parametrize("name", ["resnet", "resnet_batchnorm", "unet", "inception", "patchgan"])
@pytest.mark.parametrize("kind", ["first_k", "random"])
def test_sliced_forward_equals_pruned_and_gradients_reach_the_full_model(name, kind):
    model = TINY_EXAMPLES[name]().eval()
    g = torch.Generator().manual_seed(3)
    spec = {}
    for gr in model.channel_groups():
        k = max(gr.min_keep, gr.size // 2)
        rand = sorted(torch.randperm(gr.size, generator=g)[:k].tolist())
        spec[gr.name] = list(range(k)) if kind == "first_k" else rand
    x = model.example_inputs(2, 64)
    with torch.no_grad():
        want = _first(prune(model, spec).eval()(*x))
    got = _first(sliced_call(model, spec, *x))
    assert torch.allclose(got, want, atol=1e-6)
    got.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)
    sliced = sliced_parameters(model, spec)
    assert set(sliced) >= {n for n, _ in model.named_parameters()}


def test_pruned_channels_get_zero_gradient():
    model = _teacher().eval()
    spec = {"stem": [0, 2], "res": [1, 3, 5, 7, 9]}
    sliced_call(model, spec, _x()).sum().backward()
    w = model.stem.conv.weight.grad
    assert w[[1, 3]].abs().sum() == 0 and w[[0, 2]].abs().sum() > 0


def test_permuting_channels_keeps_the_function():
    model = _teacher().eval()
    g = torch.Generator().manual_seed(0)
    order = {gr.name: torch.randperm(gr.size, generator=g).tolist() for gr in model.channel_groups()}
    with torch.no_grad():
        assert torch.allclose(permute_channels(model, order)(_x()), model(_x()), atol=1e-5)
    with pytest.raises(ValueError, match="permutation"):
        permute_channels(model, {"stem": [0, 0, 1, 2]})


# ------------------------------------------------------------------------------------- supernet

def test_supernet_full_width_equals_the_teacher():
    teacher = _teacher().eval()
    net = Supernet(teacher, size=SIZE).eval()
    with torch.no_grad():
        want = teacher(_x())
        assert torch.allclose(net(_x()), want, atol=1e-5)
        net.set_config(net.largest)
        assert torch.allclose(net(_x()), want, atol=1e-5)
    assert net.active_spec["res"] == list(range(16))


def test_config_forward_export_and_macs_agree():
    teacher = _teacher().eval()
    net = Supernet(teacher, size=SIZE).eval()
    gen = torch.Generator().manual_seed(0)
    for cfg in [net.smallest] + [net.sample(gen) for _ in range(3)]:
        net.set_config(cfg)
        dense = net.export(cfg).eval()
        with torch.no_grad():
            y = net(_x())
            assert torch.allclose(y, dense(_x()), atol=1e-5)
            # the same channels in the teacher's indexing, cut from the un-permuted supernet
            assert torch.allclose(y, prune(net.unpermuted(), net.teacher_spec(cfg)).eval()(_x()), atol=1e-5)
        assert model_macs(dense, SIZE) == net.macs(cfg) == spec_macs(teacher, net.teacher_spec(cfg), SIZE)
    # untrained supernet: first-k = the teacher's top-k by filter L1 (what PruningTask keeps)
    counts = net.counts(net.smallest)
    top = spec_from_ratios(teacher, {g.name: counts[g.name] / g.size for g in teacher.channel_groups()}, criterion="l1")
    assert net.teacher_spec(net.smallest) == top


def test_configs_tie_inner_groups_in_three_stages_and_parse():
    net = Supernet(ResnetGenerator(ngf=8, n_blocks=9), size=SIZE)
    assert net.position_names == ["stem", "down1", "res", "stage1", "stage2", "stage3", "up1", "up2"]
    assert net.choices[0] == [8, 7, 6, 5, 4, 3, 2, 1] and net.choices[2] == [32, 28, 24, 20, 16, 12, 8, 4]
    counts = net.counts("8_16_32_4_8_12_16_8")
    assert [counts[f"inner_{i}"] for i in range(1, 10)] == [4, 4, 4, 8, 8, 8, 12, 12, 12]
    assert net.parse("8_16_32_4_8_12_16_8") == (8, 16, 32, 4, 8, 12, 16, 8)
    for bad in ("8_16", "8_16_99_4_8_12_16_8", "a_b"):
        with pytest.raises(ValueError, match="config"):
            net.parse(bad)
    with pytest.raises(ValueError, match="fractions"):
        Supernet(ResnetGenerator(ngf=8, n_blocks=9), fractions=(1.0, 0.0))
    assert len(Supernet(_teacher(n_blocks=2)).positions) == 7  # 2 blocks: two stages


def test_train_mode_samples_one_seeded_config_per_forward():
    a, b = Supernet(_teacher(), size=SIZE, seed=4).train(), Supernet(_teacher(), size=SIZE, seed=4).train()
    seen = []
    with torch.no_grad():
        for _ in range(4):
            a(_x(1)), b(_x(1))
            assert a.active_config == b.active_config
            seen.append(a.active_config)
    assert len(set(seen)) > 1 and int(a.draws) == 4
    a.set_config(a.smallest)
    with torch.no_grad():
        a(_x(1))
    assert a.active_config == "_".join(map(str, a.smallest)) and int(a.draws) == 4


# ------------------------------------------------------------------------------------- distillation

def _trainer(g, **kw):
    torch.manual_seed(0)
    d = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)
    return Pix2PixTrainer(g, d, TrainConfig(**{"steps": 3, "batch_size": 2, "backend": "torch", "quiet": True,
                                               "log_every": 1, **kw.pop("cfg", {})}), **kw)


@pytest.mark.parametrize("kind", ["pruned", "supernet"])
def test_distillation_gradients_reach_student_and_mappings_not_teacher(kind):
    teacher = _teacher()
    spec = {"res": list(range(10)), "stem": [0, 1, 2]}
    student = prune(teacher, spec).train() if kind == "pruned" else Supernet(teacher, size=SIZE).train()
    hook, aux = feature_distill(teacher, student, lambda_distill=2.0, size=SIZE)
    trainer = _trainer(student)
    x = _x()
    fake = trainer.g(x)
    loss, stats = hook({"A": x, "B": fake.detach()}, fake, trainer)
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) == pytest.approx(2.0 * float(stats["distill"]))
    # the taps came from the forward that made ``fake``: a fresh features pass of the same sub-net agrees
    with torch.no_grad():
        s_feats, t_feats = student.features(x), teacher.features(x)
        again = sum(torch.nn.functional.mse_loss(torch.nn.functional.conv2d(
            s_feats[t], m.weight[:, : s_feats[t].shape[1]], m.bias), t_feats[t]) for t, m in aux[0].items())
    assert set(s_feats) == {"res_in", "block1", "block2", "block3"}
    assert float(stats["distill"]) == pytest.approx(float(again), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aux[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_supernet_trains_three_steps_with_the_trainer():
    teacher = _teacher()
    net = Supernet(teacher, size=SIZE)
    hook, aux = feature_distill(teacher, net, 1.0, size=SIZE)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m_before = aux[0]["res_in"].weight.clone()
    trainer = _trainer(net.train(), extra_g_loss=hook, aux_modules=aux)
    x = _x()
    with torch.no_grad():
        y = teacher(x)
    hist = trainer.fit([{"A": x, "B": y}])
    assert len(hist) == 3 and all(math.isfinite(r["distill"]) and r["distill"] > 0 for r in hist)
    assert int(net.draws) == 3 and net._taps is None  # one config per step; taps used, not recomputed
    changed = [k for k, v in net.state_dict().items() if k != "draws" and not torch.equal(v, before[k])]
    assert "net.stem.conv.weight" in changed and "net.blocks.0.conv1.weight" in changed
    assert not torch.equal(aux[0]["res_in"].weight, m_before)


def test_supernet_training_resumes_exactly(tmp_path):
    def run(steps_out):
        teacher = _teacher()
        net = Supernet(teacher, size=SIZE)
        hook, aux = feature_distill(teacher, net, 1.0, size=SIZE)
        return net, _trainer(net.train(), extra_g_loss=hook, aux_modules=aux,
                             cfg={"steps": 4, "out_dir": steps_out, "ckpt_every": 2})

    x = _x()
    with torch.no_grad():
        batch = [{"A": x, "B": _teacher()(x)}]
    a, ta = run(str(tmp_path))
    straight = ta.fit(batch)
    b, tb = run(None)
    tb.resume(tmp_path / "checkpoints" / "step_2")
    assert int(b.draws) == 2  # the config sampler continues where it stopped
    resumed = tb.fit(batch)
    assert [r["loss_g"] for r in resumed] == [r["loss_g"] for r in straight]
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ------------------------------------------------------------------------------------- evolution

def test_evolution_never_returns_a_config_over_budget():
    choices = [[8, 16, 24, 32, 48, 64]] * 8
    weights = np.arange(1, 9)

    def macs(c):
        return int(sum(w * v * v for w, v in zip(weights, c)))

    def score(c):  # wider is better: pushes the search against the budget
        return -float(sum(c)) + 0.01 * c[0]

    for budget in (macs((8,) * 8), 30_000, 60_000):
        res = evolution_search(choices, score, macs, budget,
                               EvolutionConfig(population=12, generations=6, mutate_prob=0.4, seed=1))
        assert res.best_macs == macs(res.best) <= budget
        assert all(h["best_macs"] <= budget for h in res.history) and len(res.history) == 6
        assert [h["best_score"] for h in res.history] == sorted((h["best_score"] for h in res.history), reverse=True)
    with pytest.raises(ValueError, match="below the narrowest"):
        evolution_search(choices, score, macs, macs((8,) * 8) - 1)


def test_evolution_is_seeded_and_caches_scores():
    calls = []

    def score(c):
        calls.append(c)
        return float(np.sum(np.abs(np.array(c) - 3)))

    runs = [evolution_search([[1, 2, 3, 4]] * 4, score, lambda c: sum(c), 12,
                             EvolutionConfig(population=8, generations=5, seed=7)) for _ in range(2)]
    assert runs[0].best == runs[1].best and runs[0].history == runs[1].history
    assert len(calls) == runs[0].evaluated + runs[1].evaluated  # each distinct config scored once per run


# ------------------------------------------------------------------------------------- pipeline + backend

def test_pipeline_returns_a_spec_within_the_target(pipeline, teacher_run):
    from gan import export as gexport

    target, r = pipeline
    spec = r["spec"]["generator"]
    assert spec_macs(teacher_run.generator, spec, SIZE) == r["macs"] <= target == r["target_macs"]
    assert r["macs"] >= r["config_macs"]  # the fill only widens the found config
    assert len(r["history"]) == 3 and r["supernet_s"] > 0 and r["search_s"] > 0
    assert len(r["train_history"]) == 3 and all(math.isfinite(h["distill"]) for h in r["train_history"])
    # a fine-tune can start from the supernet's weights: pruning its export with the spec = the searched sub-net
    init = gexport.load(r["init_generator"])
    net = Supernet.load(r["supernet"])
    net.set_config(r["config"])
    assert all(len(spec[n]) >= k for n, k in net.counts(r["config"]).items())
    x = _x()
    with torch.no_grad():
        assert torch.allclose(prune(init, net.teacher_spec(r["config"])).eval()(x), net(x), atol=1e-5)
    assert gexport.load(r["init_discriminator"]) is not None


def test_supernet_backend_scores_are_finite_and_match_local_untrained(pipeline, teacher_run):
    from envs.backends import BACKENDS, LocalBackend, LocalConfig
    from envs.backends.supernet import SupernetBackend, SupernetConfig

    assert BACKENDS["supernet"] is SupernetBackend
    _, r = pipeline
    spec = r["spec"]["generator"]
    trained = SupernetBackend.from_teacher_run(teacher_run, SupernetConfig(supernet=r["supernet"], train_items=2,
                                                                           eval_items=4))
    s = trained.evaluate(spec, {})
    assert all(math.isfinite(v) for v in (s.generator, s.discriminator, *s.metrics.values()))
    assert trained.evaluate(spec, {}).cached
    # without a trained supernet, slicing first-k = weight inheritance of the L1 top-k: the local backend's scores
    cfg = LocalConfig(train_items=2, eval_items=4)
    local = LocalBackend.from_teacher_run(teacher_run, cfg)
    sliced = SupernetBackend.from_teacher_run(teacher_run, cfg)
    a, b = local.evaluate(spec, {}), sliced.evaluate(spec, {})
    assert set(a.metrics) == set(b.metrics) == set(s.metrics)
    assert b.generator == pytest.approx(a.generator, rel=1e-4) and b.metrics["psnr_vs_teacher"] == pytest.approx(
        a.metrics["psnr_vs_teacher"], rel=1e-4)
    with pytest.raises(ValueError, match="finetune_steps"):
        SupernetBackend.from_teacher_run(teacher_run, LocalConfig(finetune_steps=2))


# ------------------------------------------------------------------------------------- U-Net (issue #16 item 2)

def _unet(ngf=4, num_downs=5):
    """A pix2pix-style U-Net (BatchNorm, dropout) whose running statistics are not the init's."""
    from gan.models.unet import UnetGenerator

    torch.manual_seed(0)
    g = UnetGenerator(ngf=ngf, num_downs=num_downs, norm="batch", dropout=0.5).train()
    with torch.no_grad():
        for i in range(2):
            g(_x(4, seed=10 + i))
    return g.eval()


def test_unet_supernet_positions_slices_exports_and_macs_agree():
    teacher = _unet()
    net = Supernet(teacher, size=SIZE).eval()
    assert net.position_names == ["enc1", "enc2", "enc3", "enc4", "enc5", "dec1", "dec2", "dec3", "dec4"]
    with torch.no_grad():
        assert torch.allclose(net(_x()), teacher(_x()), atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    for cfg in [net.smallest] + [net.sample(gen) for _ in range(3)]:
        net.set_config(cfg)
        dense = net.export(cfg).eval()
        with torch.no_grad():  # the decoder convs read concat(enc_i, dec_i): cut at both groups' offsets
            y = net(_x())
            assert torch.allclose(y, dense(_x()), atol=1e-5)
            assert torch.allclose(y, prune(net.unpermuted(), net.teacher_spec(cfg)).eval()(_x()), atol=1e-5)
        assert model_macs(dense, SIZE) == net.macs(cfg) == spec_macs(teacher, net.teacher_spec(cfg), SIZE)
    net.set_config(None)
    net.train()
    stats = net.net.down[1].norm.running_mean.clone()
    net(_x()).square().mean().backward()  # one sampled sub-net, BatchNorm in train mode
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert not torch.equal(stats, net.net.down[1].norm.running_mean)  # first-k statistics updated in place


def test_unet_has_no_distillation_taps_and_the_distill_objective_falls_back():
    from gan.losses.feature_distill import has_distill_taps, no_taps_notice
    from gan.train.distill import DistillConfig, distill_hooks
    from gan.train.supernet import SupernetSettings, effective_settings

    unet, resnet = _unet(), _teacher()
    assert not has_distill_taps(unet) and not has_distill_taps(Supernet(unet, size=SIZE))
    assert has_distill_taps(resnet) and has_distill_taps(Supernet(resnet, size=SIZE))
    assert no_taps_notice(unet, "the supernet").startswith(
        "feature distillation off: UnetGenerator has no residual-trunk taps, so the supernet uses L1 to the teacher")
    with pytest.raises(ValueError, match="UnetGenerator has no residual-trunk taps"):
        feature_distill(unet, unet, size=SIZE)
    s = SupernetSettings(steps=3)
    assert effective_settings(resnet, s) == (s, True)  # ResNet: unchanged
    assert effective_settings(unet, s) == (SupernetSettings(steps=3, lambda_distill=0.0), False)
    # the fine-tune's "distill" objective on a U-Net: the trainer's L1-to-teacher + GAN terms, no mappings
    d = PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)
    student = prune(unet, {"enc2": [0, 1, 2], "dec3": list(range(8))}).train()
    hooks = distill_hooks(DistillConfig("distill"), unet, d, student=student, size=SIZE)
    assert hooks.aux == () and hooks.d is None
    x = _x()
    with torch.no_grad():
        y = unet(x)
    hist = _trainer(student, extra_g_loss=hooks.g).fit([{"A": x, "B": y}])
    assert len(hist) == 3 and "distill" not in hist[-1] and math.isfinite(hist[-1]["l1"])
    # ResNet keeps its feature term
    assert len(distill_hooks(DistillConfig("distill"), resnet, d, student=resnet, size=SIZE).aux) == 1


def test_unet_pipeline_trains_the_supernet_without_feature_distillation(tmp_path, capsys):
    import json
    from types import SimpleNamespace

    from agents.baselines.gan_compression import gan_compression
    from gan import data as gdata
    from gan import export as gexport

    root = gdata.prepare("edges2photos", root=tmp_path / "data", size=SIZE)
    teacher = _unet()
    run = SimpleNamespace(generator=teacher, discriminator=PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2),
                          data=str(root), size=SIZE, paired=True)
    target = int(0.4 * spec_macs(teacher, {}, SIZE))
    r = gan_compression(run, target, tmp_path / "out", supernet_steps=3, population=4, generations=2, eval_items=2,
                        batch_size=2, backend="torch")
    said = capsys.readouterr().out
    assert "feature distillation off: UnetGenerator has no residual-trunk taps, so the supernet uses" in said
    assert r["feature_distill"] is False and r["extra"]["feature_distill"] is False
    assert r["extra"]["lambda_distill"] == 0
    assert len(r["train_history"]) == 3 and all("distill" not in h for h in r["train_history"])
    assert spec_macs(teacher, r["spec"]["generator"], SIZE) == r["macs"] <= target
    assert json.loads((tmp_path / "out" / "supernet" / "supernet.json").read_text())["feature_distill"] is False
    assert json.loads((tmp_path / "out" / "supernet" / "search.json").read_text())["feature_distill"] is False
    init = gexport.load(r["init_generator"])
    assert type(init).__name__ == "UnetGenerator"
    net = Supernet.load(r["supernet"])
    net.set_config(r["config"])
    with torch.no_grad():
        assert torch.allclose(prune(init, net.teacher_spec(r["config"])).eval()(_x()), net(_x()), atol=1e-5)
