"""Fixtures shared by the integration tests."""
import json

import pytest

SIZE = 32


def teacher_and_uniform_spec(tmp, size: int = SIZE):
    """A ResNet(ngf 8, 2 blocks) + PatchGAN(ndf 8) teacher trained 40 steps, and a uniform 25 %-MACs spec."""
    from gan import export as gexport
    from gan.pruning.targets import resolve_macs_target, uniform_spec
    from tests.teachers import tiny_teacher

    tdir = tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=size, steps=40)
    g = gexport.load(tdir / "generator")
    spec, ratio = uniform_spec(g, resolve_macs_target(g, 0.25, size), size, criterion="l1")
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps({"spec": spec, "keep_ratio": ratio}))
    return tdir, spec_path


@pytest.fixture(scope="module")
def teacher_and_spec(tmp_path_factory):
    return teacher_and_uniform_spec(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def prune_env(tmp_path_factory, teacher_and_spec):
    """The module's tmp folder, its own model cache (latency models are measured into it), the tiny
    teacher and an MLflow store: what a module of ``ganprune prune`` runs on that teacher needs."""
    tmp = tmp_path_factory.mktemp("prune_env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANPRUNE_CACHE", str(tmp / "cache"))
        yield {"tmp": tmp, "teacher": teacher_and_spec[0], "uri": f"sqlite:///{tmp / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for the module's tests."""
    import ray

    from agents.cluster import init_ray

    started = init_ray("local", num_cpus=2)  # "local": never a `ray start` cluster another test left running
    yield
    if started:
        ray.shutdown()
