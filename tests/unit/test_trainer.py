"""pix2pix trainer on the plain-torch backend (DeepSpeed runs are in tests/integration)."""
import math

import pytest
import torch

from gan.data import make_loader
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.train import CheckpointError, NonFiniteLossError, Pix2PixTrainer, TrainConfig, make_engine
from gan.train import checkpoint as ckpt


def _models(seed=0):
    torch.manual_seed(seed)
    return ResnetGenerator(ngf=8, n_blocks=2), PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)


def _pair(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return x, x.flip(-1)  # a learnable, deterministic target


def _trainer(**kw):
    cfg = dict(steps=6, batch_size=2, backend="torch", log_every=1, quiet=True)
    return Pix2PixTrainer(*_models(), TrainConfig(**{**cfg, **kw}))


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, n=4):
        self.x, self.y = _pair(n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"A": self.x[i], "B": self.y[i]}


def test_losses_finite_and_l1_decreases_on_a_fixed_batch():
    t = _trainer(steps=30, gan_loss="lsgan")
    hist = t.fit([_pair()])
    assert [r["step"] for r in hist] == list(range(1, 31))
    assert all(math.isfinite(r[k]) for r in hist for k in ("loss_d", "loss_g", "gan_g", "l1"))
    assert hist[-1]["l1"] < 0.85 * hist[0]["l1"]
    assert t.steps_per_sec > 0


@pytest.mark.parametrize("kind", ["vanilla", "hinge"])
def test_every_gan_loss_kind_trains(kind):
    hist = _trainer(steps=2, gan_loss=kind).fit([_pair()])
    assert len(hist) == 2 and all(math.isfinite(r["loss_d"] + r["loss_g"]) for r in hist)


def test_resume_continues_exactly(tmp_path):
    def loader():  # shuffled, 2 batches per epoch: the resume must also land on the same batches
        return make_loader(_Pairs(4), batch_size=2, shuffle=True, seed=5)

    straight = _trainer(steps=6).fit(loader())
    first = _trainer(steps=3, out_dir=str(tmp_path), ckpt_every=3)
    first.fit(loader())
    saved = tmp_path / "checkpoints" / "step_3"
    assert sorted(p.name for p in saved.iterdir()) == sorted([
        "D.architecture.json", "D.safetensors", "G.architecture.json", "G.safetensors",
        "optim_D.rank0.json", "optim_D.rank0.safetensors", "optim_G.rank0.json",
        "optim_G.rank0.safetensors", "rng.safetensors", "trainer_state.json"])
    second = Pix2PixTrainer(*_models(seed=123), TrainConfig(steps=6, batch_size=2, backend="torch",
                                                            log_every=1, quiet=True))
    assert second.resume(tmp_path) == saved  # a run's out_dir resolves to its latest checkpoint
    resumed = second.fit(loader())
    assert resumed == straight


def test_nan_from_divergence_names_the_step():
    with pytest.raises(NonFiniteLossError, match=r"loss_g=nan at step 1\b") as e:
        _trainer(lr=float("inf")).fit([_pair()])  # D's step makes D inf, so G's loss is NaN
    assert e.value.step == 1 and "no checkpoint" in str(e.value)


def test_nan_from_extra_loss_names_the_last_checkpoint(tmp_path):
    def extra(batch, fake, trainer):
        bad = trainer.step + 1 == 3
        return fake.mean() * 0 + (float("nan") if bad else 0.5), {"extra_stat": torch.tensor(1.0)}

    t = Pix2PixTrainer(*_models(), TrainConfig(steps=5, batch_size=2, backend="torch", log_every=1,
                                               quiet=True, out_dir=str(tmp_path), ckpt_every=2),
                       extra_g_loss=extra)
    with pytest.raises(NonFiniteLossError, match=r"loss_g=nan at step 3.*step_2"):
        t.fit([_pair()])
    assert t.history[0]["loss_extra"] == 0.5 and t.history[0]["extra_stat"] == 1.0


def test_optimizer_tree_roundtrip_and_pickle_refusal(tmp_path):
    t = _trainer(steps=1)
    t.fit([_pair()])
    state = t.g.optimizer.state_dict()
    ckpt.save_tree(state, tmp_path / "opt")
    back = ckpt.load_tree(tmp_path / "opt")
    assert back["param_groups"] == state["param_groups"] and set(back["state"]) == set(state["state"])
    for k, s in state["state"].items():
        assert all(torch.equal(back["state"][k][n], v) for n, v in s.items())
    torch.save({"x": torch.zeros(1)}, tmp_path / "opt.safetensors")
    with pytest.raises(CheckpointError, match="refusing pickled"):
        ckpt.load_tree(tmp_path / "opt")
    with pytest.raises(CheckpointError, match="without pickle"):
        ckpt.flatten({"obj": object()})


def test_resume_refuses_a_pickled_checkpoint(tmp_path):
    t = _trainer(steps=1, out_dir=str(tmp_path))
    t.fit([_pair()])
    d = tmp_path / "checkpoints" / "step_1"
    torch.save(t.generator.state_dict(), d / "G.safetensors")
    with pytest.raises(CheckpointError, match="refusing pickled"):
        _trainer().resume(d)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _trainer().resume(tmp_path / "nothing")


def test_make_engine_checks_its_arguments():
    g, _ = _models()
    with pytest.raises(ValueError, match="unknown backend"):
        make_engine(g, backend="jax")
    with pytest.raises(ValueError, match="no ZeRO"):
        make_engine(g, zero_stage=2, backend="torch")
    with pytest.raises(ValueError, match="zero_stage"):
        make_engine(g, zero_stage=4)
    assert make_engine(g, backend="torch").module is g


def _aux_trainer(steps, seed=0, **kw):
    """A trainer whose G loss also trains a 1×1 mapping of the output (an ``aux_modules`` trainable)."""
    torch.manual_seed(seed)
    mapping = torch.nn.Conv2d(3, 3, 1)

    def extra(batch, fake, trainer):
        return torch.nn.functional.mse_loss(trainer.aux[0](fake), fake.detach().flip(1)), {}

    cfg = TrainConfig(**{**dict(steps=steps, batch_size=2, backend="torch", log_every=1, quiet=True), **kw})
    return Pix2PixTrainer(*_models(), cfg, extra_g_loss=extra, aux_modules=[mapping])


def test_aux_modules_are_trained_and_resume_exactly(tmp_path):
    straight = _aux_trainer(4)
    before = straight.aux[0].weight.detach().clone()
    hist = straight.fit([_pair()])
    assert not torch.equal(before, straight.aux[0].weight)  # the G step also moved the mapping
    first = _aux_trainer(2, out_dir=str(tmp_path), ckpt_every=2)
    first.fit([_pair()])
    assert (tmp_path / "checkpoints" / "step_2" / "AUX.safetensors").is_file()
    second = _aux_trainer(4, seed=9)
    second.resume(tmp_path)
    assert second.fit([_pair()]) == hist
    assert torch.equal(second.aux[0].weight, straight.aux[0].weight)
    plain = _trainer(steps=1, out_dir=str(tmp_path / "plain"))
    plain.fit([_pair()])
    with pytest.raises(CheckpointError, match="no AUX.safetensors"):
        _aux_trainer(4).resume(tmp_path / "plain")


def test_stateful_hook_state_resumes_exactly(tmp_path):
    """A hook with its own trained state (VEM's EBM + optimizer) is checkpointed and restored."""
    from gan.losses.vem import VEMConfig, VEMTerm

    def run(steps, **kw):
        vem = VEMTerm(VEMConfig(c0=2, langevin_steps=2, positive="gt"))
        batch = dict(zip(("A", "B"), _pair()))
        batch["GT"] = batch["B"]
        cfg = TrainConfig(**{**dict(steps=steps, batch_size=2, backend="torch", log_every=1, quiet=True), **kw})
        return Pix2PixTrainer(*_models(), cfg, extra_g_loss=vem, stateful={"vem": vem}), [batch]

    t, data = run(4)
    straight = t.fit(data)
    first, data = run(2, out_dir=str(tmp_path), ckpt_every=2)
    first.fit(data)
    assert (tmp_path / "checkpoints" / "step_2" / "vem.safetensors").is_file()
    second, data = run(4)
    second.resume(tmp_path)
    assert second.fit(data) == straight


def test_a_stale_torch_extensions_build_lock_is_refused_with_the_fix(tmp_path, monkeypatch):
    """A killed DeepSpeed JIT build leaves its lock; later starts would wait on it forever."""
    import os
    import time

    from gan.train.engine import STALE_LOCK_S, StaleBuildLockError, check_build_locks
    from orchestration.errors import input_error_types

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    lock.touch()
    check_build_locks()  # a build in progress: wait for it, as torch does
    old = time.time() - STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    with pytest.raises(StaleBuildLockError, match=f"rm {lock}"):
        check_build_locks()
    assert issubclass(StaleBuildLockError, input_error_types())  # exit 2, one line


def test_the_density_memory_bank_resumes_exactly(tmp_path):
    """neighbors="memory": the bank of recent inputs is checkpointed hook state, so 2 + 2 resumed steps
    draw the same neighbourhoods and end where 4 straight steps do."""
    from gan.losses.density import DensityConfig
    from gan.train.distill import DistillConfig, distill_hooks

    batches = [dict(zip(("A", "B"), _pair(2, seed=s))) for s in range(3)]

    def run(steps, **kw):
        teacher, teacher_d = _models(seed=5)
        g, d = _models()
        hooks = distill_hooks(DistillConfig(objective="density"), teacher, teacher_d,
                              DensityConfig(neighbors="memory", k_neighbors=2, bank_size=4), student=g, size=32)
        assert "density_bank" in hooks.stateful
        cfg = TrainConfig(**{**dict(steps=steps, batch_size=2, backend="torch", log_every=1, quiet=True), **kw})
        return Pix2PixTrainer(g, d, cfg, extra_g_loss=hooks.g, extra_d_loss=hooks.d, stateful=hooks.stateful)

    straight = run(4).fit(batches)
    run(2, out_dir=str(tmp_path), ckpt_every=2).fit(batches)
    assert (tmp_path / "checkpoints" / "step_2" / "density_bank.safetensors").is_file()
    second = run(4)
    second.resume(tmp_path)
    assert second.fit(batches) == straight
    fresh = run(4)
    fresh.stateful["density_bank"].load_state_dict({})  # without the bank the resumed run differs
    fresh.resume(tmp_path)
    fresh.stateful["density_bank"].load_state_dict({})
    assert fresh.fit(batches) != straight
