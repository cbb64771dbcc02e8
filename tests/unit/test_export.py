"""Export round trips for every zoo model: safetensors reload is exact, ONNX matches torch, bad files
are refused with one-line messages, and nothing is ever unpickled."""
import json
import pickle
import struct

import pytest
import torch

from gan import export as E
from gan.models import TINY_EXAMPLES
from gan.profile import count_params, model_macs

SIZE = 32


def _json(obj):
    return json.loads(json.dumps(obj))


def _tuple(y):
    return y if isinstance(y, tuple) else (y,)


@pytest.fixture(scope="module", params=sorted(TINY_EXAMPLES))
def exported(request, tmp_path_factory):
    """Each tiny model saved once (with samples), shared by the tests below."""
    torch.manual_seed(0)
    model = TINY_EXAMPLES[request.param]().eval()
    x = model.example_inputs(2, SIZE)
    with torch.no_grad():
        y = _tuple(model(*x))
    samples = [t for t in (*x, *y) if t.is_floating_point() and t.dim() == 4]
    out = E.save(model, tmp_path_factory.mktemp(request.param), size=SIZE, latency_runs=2,
                 samples=samples or None, metrics={"fidelity": 0.5}, source={"run": request.param})
    return request.param, model, out


def test_round_trip_is_exact(exported):
    _, model, out = exported
    loaded = E.load(out)
    assert type(loaded) is type(model) and not loaded.training
    assert _json(loaded.architecture()) == _json(model.architecture())  # tuples come back as lists
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype and torch.equal(w, v), k
    x = model.example_inputs(3, SIZE)
    with torch.no_grad():
        for a, b in zip(_tuple(model(*x)), _tuple(loaded(*x))):
            assert torch.equal(a, b)


def test_onnx_matches_torch_at_other_batch_and_size(exported):
    _, model, out = exported
    info = E.read_architecture(out)
    sess = E.onnx_session(out / E.ONNX)
    x = E.example_inputs(model, 2 * SIZE, batch=3, seed=7)  # dynamic batch and H, W
    got = sess.run(None, E._feed(sess, dict(zip([s["name"] for s in info["inputs"]], x))))
    with torch.no_grad():
        ref = _tuple(model(*x))
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert g.shape == tuple(r.shape)
        assert abs(torch.from_numpy(g) - r).max() <= 1e-4 * max(1.0, r.abs().max().item())


def test_sessions_turn_worker_spinning_off_unless_asked(exported):
    """The project times (and recommends) sessions whose idle workers sleep (gan.export.ORT_SPINNING)."""
    _, _, out = exported
    entry = "session.intra_op.allow_spinning"
    assert E.onnx_session(out / E.ONNX, 1).get_session_options().get_session_config_entry(entry) == "0"
    assert E.onnx_session(out / E.ONNX, 1, spinning=True).get_session_options().get_session_config_entry(entry) == "1"


def test_architecture_and_metrics_json(exported):
    name, model, out = exported
    assert {"architecture.json", "generator.safetensors", "generator.onnx", "metrics.json"} <= {
        p.name for p in out.iterdir()}
    info = json.loads((out / "architecture.json").read_text())
    arch = _json(model.architecture())
    assert info["format"] == "ganprune-export" and info["format_version"] == E.FORMAT_VERSION
    assert info["class"] == arch["class"] and info["kwargs"] == arch["kwargs"]
    assert info["widths"] == _json(model.widths())
    assert info["size"] == SIZE and info["macs"] == model_macs(model, SIZE) > 0
    assert info["params"] == count_params(model)
    x = model.example_inputs(1, SIZE)
    assert [(s["shape"], s["dtype"]) for s in info["inputs"]] == [
        (list(t.shape), str(t.dtype).removeprefix("torch.")) for t in x]
    assert info["source"] == {"run": name} and info["software"]["torch"] == torch.__version__

    m = json.loads((out / "metrics.json").read_text())
    assert m["macs"] == info["macs"] and m["params"] == info["params"] and m["fidelity"] == 0.5
    assert m["onnx_exporter"] in ("torchscript", "dynamo") and m["onnx_opset"] >= 17
    assert 0 <= m["onnx_max_abs_diff"] <= 1e-4 * 10
    for key in ("torch_latency", "onnx_latency"):
        assert m[key]["median_ms"] > 0 and m[key]["threads"] == torch.get_num_threads()
    assert m["onnx_latency"]["intra_op_threads"] == torch.get_num_threads()


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    model = TINY_EXAMPLES["resnet"]().eval()
    return model, E.save(model, tmp_path_factory.mktemp("resnet"), size=SIZE, latency_runs=2)


def test_profile_export(resnet_export):
    model, out = resnet_export
    p = E.profile_export(out, runs=2)
    assert p["size"] == SIZE and p["macs"] == model_macs(model, SIZE) and p["params"] == count_params(model)
    assert p["onnx_latency"]["median_ms"] > 0 and p["torch_latency"]["threads"] == torch.get_num_threads()
    p64 = E.profile_export(out / "architecture.json", size=64, runs=1)  # any file of the export works
    assert p64["macs"] == 4 * p["macs"] and p64["onnx_latency"]["median_ms"] > 0


def test_save_leaves_model_alone_and_safetensors_only(tmp_path):
    model = TINY_EXAMPLES["resnet_batchnorm"]().train()
    out = E.save(model, tmp_path / "e", onnx=False, latency_runs=1)
    assert model.training
    assert not (out / "generator.onnx").exists()
    assert json.loads((out / "metrics.json").read_text())["onnx_latency"] is None
    assert E.profile_export(out, runs=1)["onnx_latency"] is None
    with pytest.raises(E.ExportError, match="clash"):
        E.save(model, tmp_path / "f", onnx=False, latency_runs=1, metrics={"macs": 1})


def test_load_never_unpickles(resnet_export, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("unpickling during load")

    for mod, fn in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(mod, fn, boom)
    E.load(resnet_export[1])


def test_onnx_mismatch_is_an_error(resnet_export, tmp_path):
    model, out = resnet_export
    path = tmp_path / "g.onnx"
    path.write_bytes((out / "generator.onnx").read_bytes())
    with pytest.raises(E.OnnxExportFailure, match="differs from torch") as e:
        E.verify_onnx(model, path, ["x"], SIZE, atol=0.0)
    assert "\n" not in str(e.value) and not path.exists()


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _refused(path, match):
    with pytest.raises(E.ExportError, match=match) as e:
        E.load(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_refuses_pickles(resnet_export, tmp_path):
    model, out = resnet_export
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    torch.save(model.state_dict(), ckpt / "model.pth")
    msg = _refused(ckpt / "model.pth", "refusing pickled checkpoint")
    assert "safetensors + architecture.json only" in msg and "ganprune export" in msg
    _refused(ckpt, r"refusing pickled checkpoint .*model\.pth")  # a directory holding one
    # a pickle renamed to generator.safetensors inside a real export
    fake = _copy(out, tmp_path / "fake")
    torch.save(model.state_dict(), fake / "generator.safetensors")
    _refused(fake, "refusing pickled checkpoint")
    raw = tmp_path / "raw.weights"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    _refused(raw, "refusing pickled checkpoint")


def test_refuses_bad_exports(resnet_export, tmp_path):
    _, out = resnet_export
    _refused(tmp_path / "nowhere", "no such export")
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", "missing architecture.json")

    trunc = _copy(out, tmp_path / "trunc")
    data = (trunc / "generator.safetensors").read_bytes()
    (trunc / "generator.safetensors").write_bytes(data[: len(data) // 2])
    _refused(trunc, "corrupt or truncated")
    garbage = _copy(out, tmp_path / "garbage")
    (garbage / "generator.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"nonsense")
    _refused(garbage, "corrupt or truncated")
    (garbage / "generator.safetensors").unlink()
    _refused(garbage, "missing generator.safetensors")

    def with_arch(name, edit):
        d = _copy(out, tmp_path / name)
        info = json.loads((d / "architecture.json").read_text())
        edit(info)
        (d / "architecture.json").write_text(json.dumps(info))
        return d

    _refused(with_arch("unknown", lambda i: i.update({"class": "NoSuchGenerator"})),
             "unknown model class 'NoSuchGenerator'")
    _refused(with_arch("shape", lambda i: i["kwargs"]["widths"].update({"res": 7})),
             r"does not match architecture.json: .* has shape")
    _refused(with_arch("kwargs", lambda i: i["kwargs"].update({"bogus": 1})), "cannot build")
    bad = _copy(out, tmp_path / "badjson")
    (bad / "architecture.json").write_text("{not json")
    _refused(bad, "cannot read")


def test_save_image_grid(tmp_path):
    from PIL import Image

    rows = [torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16), torch.rand(2, 6, 8, 8)]
    path = E.save_image_grid(rows, tmp_path / "g.png")
    img = Image.open(path)
    assert img.size == (2 + 2 * 18, 2 + 3 * 18) and img.mode == "RGB"
    # a (C,H,W) image is a row of one; [-1, 1] maps to 0..255
    E.save_image_grid([torch.full((3, 4, 4), -1.0), torch.ones(3, 4, 4)], tmp_path / "h.png")
    px = Image.open(tmp_path / "h.png").load()
    assert px[2, 2] == (0, 0, 0) and px[2, 8] == (255, 255, 255)
