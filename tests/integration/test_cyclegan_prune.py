"""`ganprune prune` on a tiny CycleGAN teacher (issue #16 item 1; docs/methods.md, "Unpaired (CycleGAN)
teachers"): every method prunes G_A (and the marl D agent D_A), the fine-tune runs GAN Compression's
unpaired recipe, the export loads, the MACs land within 2 % of the target, and the fidelity is
FID-proxy against real B images beside the teacher's plus PSNR/SSIM vs the teacher (no mIoU, no
ground truth).  A method that cannot prune the teacher's G_A refuses at once in one line.

The teacher: ResNet ngf 12 × 2 blocks with affine norms at 32² (ngf 12: fine enough channel steps that
uniform's one keep ratio and CAT's unfilled threshold also land within 2 % at 30 %)."""
import json
import time

import pytest

from gan import export as gexport
from orchestration.cli import main
from tests.integration.test_bad_input import fails

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = 0.3
SEARCH = ["--iterations", "1", "--episodes", "2", "--backend-steps", "1"]
#: method → its fast settings
METHODS = {
    "marl": SEARCH,
    "random": ["--evaluations", "3", "--backend-steps", "1"],
    "evolution": ["--evaluations", "3", "--backend-steps", "1"],
    "cat": [],
    "gan-compression": ["--method-option", "supernet_steps=10", "--method-option", "population=4",
                        "--method-option", "generations=2"],
    "uniform": [],
    "l1": [],
    "ppcd": [],
}
#: methods that fine-tune with the teacher's whole D_A
WHOLE_D = ("cat", "gan-compression")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.teachers import tiny_cyclegan_teacher

    tmp = tmp_path_factory.mktemp("cyclegan_prune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANPRUNE_CACHE", str(tmp / "cache"))
        teacher = tiny_cyclegan_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=20, ngf=12)
        yield {"tmp": tmp, "teacher": teacher, "uri": f"sqlite:///{tmp / 'mlflow.db'}"}


def _prune(env, method, *extra, name=None):
    out = env["tmp"] / (name or method)
    assert main(["prune", "--method", method, "--teacher", str(env["teacher"]), "--macs-target", str(TARGET),
                 "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", env["uri"], "--quiet", *map(str, extra)]) == 0
    s = json.loads((out / "prune.json").read_text())
    assert s["method"] == method and s["macs"] <= s["target_macs"]
    assert abs(s["macs"] / s["target_macs"] - 1) <= 0.02, s["macs"] / s["target_macs"]
    g = gexport.load(out / "generator")
    assert type(g).__name__ == "ResnetGenerator" and sum(p.numel() for p in g.parameters()) == s["params"]
    f = s["fidelity"]
    assert {"fid_proxy", "fid_proxy_teacher", "psnr_vs_teacher", "ssim_vs_teacher"} <= set(f)
    assert "psnr" not in f and "miou" not in f
    if method != "ppcd":  # trains itself; the others fine-tune the pair through `finetune`
        ft = json.loads((out / "finetune" / "finetune.json").read_text())
        assert ft["kind"] == "cyclegan"
        # CAT and GAN Compression keep the teacher's whole D_A (docs/methods.md, "CAT", "GAN Compression"),
        # the others fine-tune a pruned D_A along
        assert bool(ft["discriminator_spec"]) == (method not in WHOLE_D)
        d = gexport.load(out / "discriminator")
        assert d.architecture()["kwargs"]["input_nc"] == 3  # unconditional: judges B images alone
    return s, out


@pytest.mark.parametrize("method", [m for m in METHODS if m != "marl"])
def test_every_method_prunes_g_a(env, method):
    _prune(env, method, *METHODS[method])


def test_marl_prunes_g_a_and_d_a_and_marl_greedy_reuses_its_search(env):
    s, out = _prune(env, "marl", *METHODS["marl"])
    assert s["search_evaluations"] >= 1 and s["discriminator_keep"]
    best = json.loads((out / "best_spec.json").read_text())
    d_groups = {g.name for g in gexport.load(env["teacher"] / "discriminator").channel_groups()}
    assert set(best["discriminator"]) == d_groups  # the D agent's own spec of D_A
    g, _ = _prune(env, "marl-greedy", *METHODS["marl"], "--search-from", out)
    assert g["macs"] <= g["target_macs"]


def test_marl_on_the_supernet_backend(env):
    s, _ = _prune(env, "marl", *SEARCH[:4], "--backend", "supernet", "--backend-option", "train_steps=4",
                  "--backend-option", "trainer=torch", name="marl-supernet")
    assert s["search_backend"]["name"] == "supernet"


def test_a_method_that_cannot_prune_the_g_a_refuses_at_once(env, capsys):
    from tests.teachers import tiny_cyclegan_teacher

    inception = tiny_cyclegan_teacher(env["tmp"] / "inception", data_root=env["tmp"] / "data", size=32, steps=1,
                                      arch="inception")
    for method in ("gan-compression", "ppcd"):
        out = env["tmp"] / f"refused-{method}"
        t0 = time.perf_counter()
        msg = fails(capsys, "prune", "--method", method, "--teacher", inception, "--out", out,
                    "--tracking-uri", env["uri"])
        assert f"{method} prunes only ResnetGenerator" in msg and "InceptionGenerator" in msg
        assert "use --method" in msg and not out.exists() and time.perf_counter() - t0 < 20
