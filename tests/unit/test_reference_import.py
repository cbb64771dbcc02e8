"""Importing reference pix2pix / CycleGAN state dicts (gan/models/reference_layout.py,
gan/weights_file.py; docs/import_teacher.md): every layout computes the reference function."""
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from gan.models.reference_layout import (ReferenceLayoutError, import_discriminator, import_generator,
                                         max_abs_difference, reference_forward)
from gan.weights_file import WeightsFileError, read_state_dict
from tests.reference_nets import (Payload, RefNLayerDiscriminator, RefResnetGenerator, RefUnetGenerator,
                                  images, randomize)

GENERATORS = {  # id → (reference net, --arch, --norm, --dropout, size)
    "resnet9-instance": (lambda: RefResnetGenerator(ngf=4, norm="instance", n_blocks=9), "resnet_9blocks",
                         "instance", False, 32),
    "resnet9-instance-dropout": (lambda: RefResnetGenerator(ngf=4, norm="instance", dropout=True, n_blocks=9),
                                 "resnet_9blocks", "instance", True, 32),
    "resnet6-batch-dropout": (lambda: RefResnetGenerator(ngf=4, norm="batch", dropout=True, n_blocks=6),
                              "resnet_6blocks", "batch", True, 32),
    "unet256-batch-dropout": (lambda: RefUnetGenerator(ngf=2, num_downs=8, norm="batch", dropout=True),
                              "unet_256", "batch", True, 256),
    "unet128-instance": (lambda: RefUnetGenerator(ngf=2, num_downs=7, norm="instance"), "unet_128", "instance",
                         False, 128),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_imported_generator_computes_the_reference_function(name):
    make, arch, norm, dropout, size = GENERATORS[name]
    ref = randomize(make())
    state = ref.state_dict()
    imp = import_generator(state, arch, norm, dropout)
    assert imp.info["class"] == ("UnetGenerator" if arch.startswith("unet") else "ResnetGenerator")
    assert not imp.model.training and imp.dropped == []
    x = images(2, 3, size)
    with torch.no_grad():
        want = ref(x.clone())
        got = imp.model(x)
    assert got.shape == want.shape
    assert (got - want).abs().max() < 1e-5
    assert (reference_forward(state, imp.info, x) - want).abs().max() < 1e-5  # the CLI's check function
    assert max_abs_difference(imp, state, x) < 1e-5


@pytest.mark.parametrize("norm,n_layers", [("batch", 3), ("instance", 2)])
def test_imported_discriminator_computes_the_reference_function(norm, n_layers):
    ref = randomize(RefNLayerDiscriminator(input_nc=6, ndf=4, n_layers=n_layers, norm=norm))
    imp = import_discriminator(ref.state_dict(), norm)
    assert imp.info == {"class": "PatchGANDiscriminator", "norm": norm, "input_nc": 6, "ndf": 4,
                        "n_layers": n_layers, "dropped_legacy_keys": 0}
    x = images(2, 6, 64)
    with torch.no_grad():
        assert (imp.model(x) - ref(x.clone())).abs().max() < 1e-5


def test_legacy_instance_norm_statistics_are_dropped():
    """Old releases carry running stats on their InstanceNorms; the reference ignores them on load."""
    legacy = randomize(RefResnetGenerator(ngf=4, norm="instance", n_blocks=6, legacy=True))
    state = legacy.state_dict()
    stats = [k for k in state if k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")]
    assert len(stats) == 3 * (3 + 2 * 6 + 2)  # stem, 2 downs, 2 per block, 2 ups
    imp = import_generator(state, "resnet_6blocks", "instance")
    assert sorted(imp.dropped) == sorted(stats) and imp.info["dropped_legacy_keys"] == len(stats)
    current = RefResnetGenerator(ngf=4, norm="instance", n_blocks=6).eval()  # today's reference module
    current.load_state_dict({k: v for k, v in state.items() if k not in stats})
    x = images(2, 3, 32)
    with torch.no_grad():
        assert (imp.model(x) - current(x.clone())).abs().max() < 1e-5
    legacy_d = randomize(RefNLayerDiscriminator(ndf=4, norm="instance", legacy=True))
    assert import_discriminator(legacy_d.state_dict(), "instance").info["dropped_legacy_keys"] == 9


def test_a_file_that_does_not_fit_names_the_key_both_shapes_and_the_flags_that_fit():
    state = randomize(RefResnetGenerator(ngf=4, norm="instance", n_blocks=6)).state_dict()
    with pytest.raises(ReferenceLayoutError) as e:
        import_generator(state, "resnet_9blocks", "instance", source="G.pth")
    msg = str(e.value)
    assert "G.pth does not fit --arch resnet_9blocks --norm instance" in msg and "model.16.conv_block.1.weight" in msg
    assert "the file fits --arch resnet_6blocks --norm instance; pass those" in msg
    bad = dict(state, **{"model.12.conv_block.1.weight": torch.zeros(16, 8, 3, 3)})
    with pytest.raises(ReferenceLayoutError, match=r"key model\.12\.conv_block\.1\.weight: the file has shape "
                       r"\[16, 8, 3, 3\], resnet_6blocks expects shape \[16, 16, 3, 3\]"):
        import_generator(bad, "resnet_6blocks", "instance")
    # the dropout layout (second conv at conv_block.6) and BatchNorm are told apart
    drop = randomize(RefResnetGenerator(ngf=4, norm="batch", dropout=True, n_blocks=6)).state_dict()
    with pytest.raises(ReferenceLayoutError, match="fits --arch resnet_6blocks --norm batch --dropout"):
        import_generator(drop, "resnet_6blocks", "instance")
    unet = randomize(RefUnetGenerator(ngf=2, num_downs=7)).state_dict()
    with pytest.raises(ReferenceLayoutError, match="fits --arch unet_128 --norm batch"):
        import_generator(unet, "unet_256", "batch")


def test_unknown_keys_are_refused():
    state = randomize(RefResnetGenerator(ngf=4, norm="batch", n_blocks=6)).state_dict()
    state["model.99.weight"] = torch.zeros(3)
    with pytest.raises(ReferenceLayoutError, match=r"1 key\(s\) resnet_6blocks does not have, first "
                       r"model\.99\.weight \(shape \[3\]\)"):
        import_generator(state, "resnet_6blocks", "batch")


# ------------------------------------------------------------------------------- reading files

def test_a_pickle_with_a_code_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    f = tmp_path / "G.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": Payload(marker)}, f)
    assert not marker.exists()
    with pytest.raises(WeightsFileError, match="its pickle would run code") as e:
        read_state_dict(f)
    assert "open" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_truncated_and_odd_files(tmp_path):
    good = randomize(RefNLayerDiscriminator(ndf=4, n_layers=1)).state_dict()
    f = tmp_path / "D.pth"
    torch.save(good, f)
    assert read_state_dict(f).keys() == good.keys()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="corrupt or truncated weights file"):
        read_state_dict(cut)
    st = tmp_path / "D.safetensors"
    save_file(good, str(st))
    assert all(torch.equal(read_state_dict(st)[k], v) for k, v in good.items())
    (tmp_path / "cut.safetensors").write_bytes(st.read_bytes()[:40])
    with pytest.raises(WeightsFileError, match="corrupt or truncated safetensors"):
        read_state_dict(tmp_path / "cut.safetensors")
    wrapped = tmp_path / "wrapped.pth"  # {"state_dict": ...} and DataParallel's module. prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in good.items()}}, wrapped)
    assert read_state_dict(wrapped).keys() == good.keys()
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WeightsFileError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")
    with pytest.raises(WeightsFileError, match="no such weights file"):
        read_state_dict(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------- D warm-up, methods

def test_freeze_generator_steps_d_only():
    from gan.models.patchgan import PatchGANDiscriminator
    from gan.models.unet import UnetGenerator
    from gan.train.builder import build_trainer, train_config

    g, d = UnetGenerator(ngf=2, num_downs=5, norm="batch"), PatchGANDiscriminator(input_nc=6, ndf=4, n_layers=2)
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    d_before = {k: v.clone() for k, v in d.state_dict().items()}
    t = build_trainer("pix2pix", g, d, train_config("pix2pix", steps=3, backend="torch", quiet=True,
                                                    freeze_generator=True, log_every=1))
    x = images(1, 3, 32)
    hist = t.fit([(x, x.flip(-1))])
    assert len(hist) == 3 and {"loss_d", "loss_g", "l1"} <= set(hist[-1])
    assert all(torch.equal(t.generator.state_dict()[k], v) for k, v in g_before.items())  # BN stats too
    assert not t.generator.training
    assert any(not torch.equal(t.discriminator.state_dict()[k], v) for k, v in d_before.items())


def test_methods_declare_the_generators_they_prune(tmp_path):
    from agents.methods import REGISTRY
    from gan.models.conditional import ConditionalGenerator
    from gan.models.resnet import ResnetGenerator
    from gan.models.unet import UnetGenerator
    from gan.teacher_run import TeacherRunError

    unet = SimpleNamespace(generator=UnetGenerator(ngf=2, num_downs=5), dir=tmp_path)
    for name in ("marl", "marl-greedy", "random", "evolution", "uniform", "l1", "fastest", "gan-compression"):
        REGISTRY[name].check_teacher(unet, REGISTRY)
    for name in ("cat", "ppcd"):
        with pytest.raises(TeacherRunError, match=f"^{name} prunes only .*holds a UnetGenerator; use --method "
                           "marl, marl-greedy, random, evolution, uniform, l1, gan-compression or fastest$"):
            REGISTRY[name].check_teacher(unet, REGISTRY)
    # gan-compression takes a U-Net without feature distillation (no residual-trunk taps): an explicit
    # lambda_distill > 0 is refused in one line, 0 is what it runs with anyway
    gc = REGISTRY["gan-compression"]
    with pytest.raises(TeacherRunError, match=r"^--method-option lambda_distill=2: UnetGenerator has no "
                       "residual-trunk taps to distil, gan-compression trains it with lambda_distill 0; drop the option$"):
        gc.check_teacher(unet, REGISTRY, gc.options({"lambda_distill": 2.0}))
    gc.check_teacher(unet, REGISTRY, gc.options({"lambda_distill": 0.0}))
    resnet = SimpleNamespace(generator=ResnetGenerator(ngf=2, n_blocks=1), dir=tmp_path)
    for m in REGISTRY.values():
        m.check_teacher(resnet, REGISTRY)
    gc.check_teacher(resnet, REGISTRY, gc.options({"lambda_distill": 2.0}))
    conditional = SimpleNamespace(generator=ConditionalGenerator(ngf=4, num_classes=2, img_size=32), dir=tmp_path)
    REGISTRY["ppcd"].check_teacher(conditional, REGISTRY)
    with pytest.raises(TeacherRunError):
        REGISTRY["cat"].check_teacher(conditional, REGISTRY)


def test_a_cut_legacy_pickle_is_corrupt_not_code(tmp_path):
    f = tmp_path / "old.pth"
    torch.save({"model.0.weight": torch.zeros(64, 64)}, f, _use_new_zipfile_serialization=False)
    data = f.read_bytes()
    for n in (10, 200, len(data) // 2):
        (tmp_path / "cut.pth").write_bytes(data[:n])
        with pytest.raises(WeightsFileError, match="corrupt or truncated weights file"):
            read_state_dict(tmp_path / "cut.pth")
