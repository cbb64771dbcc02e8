"""A CycleGAN teacher's G_A and D_A as a pruning pair (docs/methods.md, "Unpaired (CycleGAN) teachers"):
the teacher run loads as an unpaired view, the fine-tune's D is unconditional and learns real domain-B
images vs the student's outputs while the student distils G_T(x), the search backends score r_D on
real B images, and the metrics put the teacher's fid_proxy beside the student's."""
import pytest
import torch
import torch.nn.functional as F

from gan.models import ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.pruning.physical import prune
from gan.pruning.saliency import spec_from_ratios
from gan.train.builder import build_trainer
from gan.train.distill import DistillConfig, TeacherTargets, distill_hooks
from gan.train.pix2pix import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _half(m):
    return spec_from_ratios(m, {g.name: 0.5 for g in m.channel_groups()}, "l1")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from gan.teacher_run import load_teacher_run
    from tests.teachers import tiny_cyclegan_teacher

    tmp = tmp_path_factory.mktemp("unpaired")
    return load_teacher_run(tiny_cyclegan_teacher(tmp / "teacher", data_root=tmp / "data", steps=4))


@pytest.mark.parametrize("objective", ["density", "l1"])
def test_the_unconditional_d_learns_real_b_and_the_student_distils_the_teacher(objective):
    torch.manual_seed(0)
    tg = ResnetGenerator(ngf=8, n_blocks=2).eval()
    td = PatchGANDiscriminator(input_nc=3, ndf=8, n_layers=2, norm="instance").eval()
    sg, sd = prune(tg, _half(tg)), prune(td, _half(td))
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    batch = next(iter(TeacherTargets([{"A": a, "B": b}], tg, paired=False)))
    assert set(batch) == {"A", "B", "real"} and torch.equal(batch["real"], b)  # no ground truth
    assert torch.equal(batch["B"], tg(a).detach())  # the pseudo pair (x, G_T(x))
    cfg = TrainConfig(steps=1, batch_size=2, lambda_l1=10.0, backend="torch", quiet=True, conditional_d=False)
    trainer = build_trainer("pix2pix", sg, sd, cfg, distill_hooks(DistillConfig(objective), tg, td))
    seen = []
    trainer.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        student_out = trainer.generator(a)
    rec = trainer.train_step(batch)
    assert all(x.shape[1] == 3 for x in seen)  # unconditional: images alone, never input|output
    assert torch.equal(seen[0], b)  # the D step's real images are the real domain-B ones
    assert torch.allclose(seen[1], student_out, atol=1e-6)  # its fakes the student's outputs
    assert rec["l1"] == pytest.approx(float(F.l1_loss(student_out, batch["B"])), rel=1e-5)  # L1 to G_T(x)
    if objective == "density":
        assert "gan_nb_d" in rec and "density" in rec


def test_a_cyclegan_run_is_g_a_and_d_a_on_unpaired_data(run):
    assert run.kind == "cyclegan" and not run.paired
    assert run.discriminator.architecture()["kwargs"]["input_nc"] == 3  # D_A judges B images alone
    assert run.meta["generator_B"] == "generator_B"


def test_the_search_backends_score_r_d_on_real_b_images(run):
    from envs.backends.local import LocalBackend, LocalConfig
    from envs.backends.supernet import SupernetBackend, SupernetConfig

    local = LocalBackend.from_teacher_run(run, LocalConfig(finetune_steps=1, train_items=4, eval_items=4,
                                                           batch_size=2))
    assert not local.paired and local.y.shape == local.x.shape
    with torch.no_grad():
        assert torch.equal(local.d_teacher_real, run.discriminator.eval()(local.y))  # real B, no concat
    g_spec, d_spec = _half(run.generator), _half(run.discriminator)
    s = local.evaluate(g_spec, d_spec)
    assert s.generator < 0 and s.discriminator <= 0 and s.metrics["finetune_steps"] == 1
    sn = SupernetBackend.from_teacher_run(run, SupernetConfig(eval_items=4, train_items=4))
    assert not sn.paired
    t = sn.evaluate(g_spec, d_spec)
    assert t.generator < 0 and t.metrics["d_loss"] == pytest.approx(t.metrics["d_loss"])  # finite


def test_fid_proxy_against_real_b_beside_the_teachers(run):
    from gan import data as gdata
    from gan.metrics.evaluate import evaluate_generator

    test = gdata.open_dataset(run.data, size=run.size, split="test")
    real_b = test.domain_b(8)
    assert len(real_b) == 8 and len({p for p in test.paths_b[:8]}) == 8  # each B image once
    student = prune(run.generator, _half(run.generator)).eval()
    r = evaluate_generator(student, test, teacher=run.generator.eval(), max_items=8)
    assert {"fid_proxy", "kid_proxy", "fid_proxy_teacher", "kid_proxy_teacher", "psnr_vs_teacher",
            "ssim_vs_teacher"} <= set(r)
    assert "psnr" not in r and "miou" not in r  # no ground truth, no label maps
    same = evaluate_generator(run.generator.eval(), test, teacher=run.generator.eval(), max_items=8)
    assert same["fid_proxy"] == pytest.approx(same["fid_proxy_teacher"])


def test_an_l1_to_ground_truth_is_refused_for_an_unpaired_teacher(run, tmp_path):
    import json

    from orchestration.errors import UsageError
    from orchestration.finetune import check_inputs
    from orchestration.requests import FinetuneRequest

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"spec": _half(run.generator)}))
    check_inputs(FinetuneRequest(str(run.dir), str(spec), str(tmp_path / "ok"), backend="torch"))
    for kw in ({"lambda_gt": 1.0}, {"distill": {"lambda_gt": 0.5}}):
        with pytest.raises(UsageError, match="no ground truth"):
            check_inputs(FinetuneRequest(str(run.dir), str(spec), str(tmp_path / "ft"), backend="torch", **kw))
    assert not (tmp_path / "ft").exists()
