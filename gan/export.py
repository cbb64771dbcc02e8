"""Export a zoo model as ``architecture.json`` + ``generator.safetensors`` (+ ONNX, metrics, samples).

Why this format: a pruned model is a *different architecture*, so we ship the constructor arguments
as JSON and the dense weights as raw tensors.  Loading rebuilds the class from the registry and never
unpickles anything (no code runs on load).  The ONNX graph is checked against torch once, at export,
so a deployed ``generator.onnx`` is known to compute the same function.
"""
from __future__ import annotations

import copy
import datetime
import inspect
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from gan.profile import count_params, measure_latency, model_macs, torch_latency
from gan.models import MODELS, build

FORMAT, FORMAT_VERSION = "ganprune-export", 1
ARCH, WEIGHTS, ONNX, METRICS, SAMPLES = (
    "architecture.json", "generator.safetensors", "generator.onnx", "metrics.json", "samples.png")
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"}
DEFAULT_SIZE = 64
ONNX_OPSET = 17
ONNX_ATOL = 1e-4  # scaled by max(1, max|torch output|): PatchGAN logits are not bounded like tanh
# ONNX Runtime's idle intra-op workers busy-wait by default. On the 2-core reference machine, with spinning off the
# ResNet-9 teacher ran 4-7 % faster (two runs) and its pruned models as fast, single sessions of a pruned model
# were steady (58-64 ms) where with spinning they were bimodal (57-61 or 67-75 ms), and no cores are burnt
# between runs beside the user's other work (docs/latency.md, "Spinning").
ORT_SPINNING = False


class ExportError(ValueError):
    """A bad or unreadable export (the user's input, not our bug): one line naming the file and the fix."""


class OnnxExportFailure(RuntimeError):
    """The ONNX graph could not be made or disagrees with torch: our failure (exit 1), not bad input."""


# ----------------------------------------------------------------------------------------- save

def save(model, out_dir, *, size: int | None = None, metrics: dict | None = None,
         source: dict | None = None, onnx: bool | str = True, samples=None,
         latency_runs: int = 10) -> Path:
    """Write the export directory; ``onnx`` may also name the exporter ("torchscript" / "dynamo")."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = int(size or DEFAULT_SIZE)
    model = copy.deepcopy(model).cpu().eval()  # the caller's module keeps its device and mode
    inputs = example_inputs(model, size)
    with torch.inference_mode():
        outputs = _as_tuple(model(*inputs))
    in_names, out_names = _input_names(model, len(inputs)), _output_names(len(outputs))

    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})

    arch = model.architecture()
    macs, params = model_macs(model, size), count_params(model)
    info = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": arch["class"],
            "kwargs": arch["kwargs"], "widths": model.widths(), "size": size, "macs": macs,
            "params": params, "inputs": _spec(in_names, inputs), "outputs": _spec(out_names, outputs),
            "source": dict(source or {}), "created": _now(), "software": _versions()}
    _write_json(out / ARCH, info)

    result = {"size": size, "macs": macs, "params": params,
              "torch_latency": torch_latency(model, inputs, runs=latency_runs), "onnx_latency": None}
    if onnx:
        path = out / ONNX
        exporter = export_onnx(model, inputs, path, in_names, out_names,
                               exporter=onnx if isinstance(onnx, str) else "auto")
        diff = verify_onnx(model, path, in_names, size)
        result.update(onnx_exporter=exporter, onnx_opset=_opset(path), onnx_max_abs_diff=diff,
                      onnx_latency=onnx_latency(path, dict(zip(in_names, inputs)), runs=latency_runs))
    clash = set(metrics or {}) & set(result)
    if clash:
        raise ExportError(f"metrics {sorted(clash)} clash with the measured ones; rename them")
    _write_json(out / METRICS, {**result, **(metrics or {})})
    if samples is not None:
        save_image_grid(samples, out / SAMPLES)
    return out


def example_inputs(model, size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The model's example inputs drawn from a fixed seed (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tuple(model.example_inputs(batch, size))


def _as_tuple(y):
    if isinstance(y, torch.Tensor):
        return (y,)
    if isinstance(y, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in y):
        return tuple(y)
    raise ExportError(f"cannot export a model returning {type(y).__name__}; return a tensor or a tuple")


def _input_names(model, n: int) -> list[str]:
    params = [p.name for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return params[:n] if len(params) >= n else [f"input_{i}" for i in range(n)]


def _output_names(n: int) -> list[str]:
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def _spec(names, tensors) -> list[dict]:
    return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in zip(names, tensors)]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    for pkg in ("ganprune", "safetensors", "onnx", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _write_json(path: Path, obj) -> None:
    def default(o):
        if hasattr(o, "item"):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON-serializable")

    path.write_text(json.dumps(obj, indent=1, default=default) + "\n")


# ----------------------------------------------------------------------------------------- ONNX

def _dynamic_axes(names, tensors) -> dict:
    """Batch is dynamic everywhere; H and W too for image tensors, so one graph serves every size."""
    return {n: {0: "batch", **({2: f"{n}_h", 3: f"{n}_w"} if t.dim() == 4 else {})}
            for n, t in zip(names, tensors)}


def export_onnx(model, inputs, path, in_names, out_names, exporter: str = "auto") -> str:
    """Write ``path`` and return the exporter used.

    "auto" tries the TorchScript exporter first: in torch 2.13 it is 10–20× faster than the dynamo one on
    our models and exact on InstanceNorm / ReflectionPad / ConvTranspose2d, while the dynamo exporter's
    graph optimizer emitted an invalid graph for CycleGANPair (so it runs here with ``optimize=False``).
    The dynamo exporter is the fallback for when the deprecated TorchScript path fails or is removed.
    """
    with torch.inference_mode():
        outputs = _as_tuple(model(*inputs))
    axes = {**_dynamic_axes(in_names, inputs), **_dynamic_axes(out_names, outputs)}
    kinds = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for kind in kinds:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecation + tracer chatter, not actionable here
                if kind == "torchscript":
                    torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
                                      input_names=in_names, output_names=out_names, dynamic_axes=axes)
                elif kind == "dynamo":
                    prog = torch.onnx.export(model, inputs, dynamo=True, optimize=False, verbose=False,
                                             opset_version=max(ONNX_OPSET, 18), input_names=in_names,
                                             output_names=out_names, dynamic_axes=axes)
                    prog.save(str(path))
                else:
                    raise ExportError(f"unknown ONNX exporter {kind!r}; use torchscript or dynamo")
            return kind
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - try the next exporter, report all
            errors.append(f"{kind}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
    raise OnnxExportFailure(f"ONNX export of {type(model).__name__} failed ({'; '.join(errors)}); "
                      "export with onnx=False / --format safetensors")


def verify_onnx(model, path, in_names, size: int, atol: float = ONNX_ATOL) -> float:
    """Max |ORT − torch| over all outputs at batch 1 and 2 (checks the dynamic batch axis too).

    Raises OnnxExportFailure (and removes ``path``) when it exceeds ``atol · max(1, max|torch|)``.
    """
    sess, worst = onnx_session(path), 0.0
    for batch, seed in ((1, 0), (2, 1)):
        inputs = example_inputs(model, size, batch, seed)
        with torch.inference_mode():
            ref = _as_tuple(model(*inputs))
        got = sess.run(None, _feed(sess, dict(zip(in_names, inputs))))
        for i, (r, g) in enumerate(zip(ref, got)):
            r = r.numpy()
            if r.shape != g.shape:
                Path(path).unlink(missing_ok=True)
                raise OnnxExportFailure(f"ONNX output {i} has shape {g.shape}, torch {r.shape} (batch {batch})")
            diff = float(np.abs(r - g).max()) if r.size else 0.0
            tol = atol * max(1.0, float(np.abs(r).max()) if r.size else 0.0)
            if not diff <= tol:
                Path(path).unlink(missing_ok=True)
                raise OnnxExportFailure(f"ONNX Runtime output {i} differs from torch by {diff:.3g} > {tol:.1g} "
                                  f"(batch {batch}, {size}²); generator.onnx removed")
            worst = max(worst, diff)
    return worst


def _opset(path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def onnx_session(path, threads: int | None = None, spinning: bool = ORT_SPINNING):
    """ORT CPU session of a file (or serialized model bytes); intra-op threads = ``torch.get_num_threads()``
    so latencies compare with torch; ``spinning``: whether idle intra-op workers busy-wait for the next
    parallel section (ORT's default; off here, see ``ORT_SPINNING``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    src = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def _feed(sess, inputs) -> dict:
    """Inputs (name → tensor, or a positional sequence) as the session's numpy feed."""
    names = [i.name for i in sess.get_inputs()]
    if not isinstance(inputs, Mapping):
        inputs = list(inputs)
        if len(inputs) != len(names):
            raise ExportError(f"the ONNX graph takes {len(names)} inputs {names}, got {len(inputs)}")
        inputs = dict(zip(names, inputs))
    arr = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
           for k, v in inputs.items()}
    missing = [n for n in names if n not in arr]
    if missing:
        raise ExportError(f"no value for ONNX inputs {missing}")
    return {n: arr[n] for n in names}  # inputs the exporter pruned as unused are dropped


def onnx_latency(onnx_path, inputs, warmup: int = 3, runs: int = 10, session=None) -> dict:
    """Median ORT CPU latency (ms) of one run on ``inputs``; records the session's thread counts."""
    sess = session or onnx_session(onnx_path)
    feed = _feed(sess, inputs)
    res = measure_latency(lambda: sess.run(None, feed), warmup, runs)
    opts = sess.get_session_options()
    res.update(threads=opts.intra_op_num_threads, intra_op_threads=opts.intra_op_num_threads,
               inter_op_threads=opts.inter_op_num_threads, provider=sess.get_providers()[0])
    return res


# ----------------------------------------------------------------------------------------- load

def _pickle_message(p: Path) -> str:
    return (f"refusing pickled checkpoint {p}: ganprune loads safetensors + architecture.json only; "
            "re-export with `ganprune export`")


def _looks_pickled(p: Path) -> bool:
    """torch.save zip archives and raw pickles (a safetensors file starts with a u64 then ``{``)."""
    with open(p, "rb") as f:
        head = f.read(9)
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"
                                          and head[8:9] != b"{")


def export_dir(path) -> Path:
    """The export directory behind ``path`` (the directory or one of its files); refuses pickles."""
    p = Path(path)
    if not p.exists():
        raise ExportError(f"no such export: {p}")
    if p.is_file():
        if p.suffix.lower() in PICKLE_SUFFIXES or _looks_pickled(p):
            raise ExportError(_pickle_message(p))
        if p.name in (ARCH, WEIGHTS, ONNX, METRICS):
            return p.parent
        raise ExportError(f"{p} is not an export: expected a directory with {ARCH} + {WEIGHTS}")
    if not (p / ARCH).is_file() and (p / "generator" / ARCH).is_file():
        return p / "generator"  # a run directory (teacher, prune, finetune): its generator export
    if not (p / ARCH).is_file():
        pickled = sorted(q for q in p.iterdir() if q.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise ExportError(_pickle_message(pickled[0]))
        raise ExportError(f"{p}: missing {ARCH}; not a ganprune export (write one with `ganprune export`)")
    return p


def read_architecture(path) -> dict:
    """The parsed ``architecture.json`` of an export (checked for the keys ``load`` needs)."""
    f = export_dir(path) / ARCH
    try:
        info = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"cannot read {f}: {e}") from None
    if not isinstance(info, dict) or "class" not in info or not isinstance(info.get("kwargs", {}), dict):
        raise ExportError(f"{f}: not a ganprune architecture (needs 'class' and 'kwargs')")
    if int(info.get("format_version", 1)) > FORMAT_VERSION:
        raise ExportError(f"{f}: format version {info['format_version']} is newer than this ganprune's "
                          f"{FORMAT_VERSION}; upgrade ganprune")
    return info


def _read_weights(f: Path) -> dict[str, torch.Tensor]:
    if not f.is_file():
        raise ExportError(f"{f.parent}: missing {WEIGHTS}")
    if _looks_pickled(f):
        raise ExportError(_pickle_message(f))
    from safetensors.torch import load_file

    try:
        return load_file(str(f))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"corrupt or truncated {f}: {msg}; re-export it") from None


def load(path):
    """Rebuild the model from ``architecture.json`` + ``generator.safetensors`` (eval mode, CPU)."""
    d = export_dir(path)
    info = read_architecture(d)
    state = _read_weights(d / WEIGHTS)
    name = info["class"]
    if name not in MODELS:
        raise ExportError(f"{d / ARCH}: unknown model class {name!r}; known: {', '.join(sorted(MODELS))}")
    try:
        model = build({"class": name, "kwargs": info.get("kwargs", {})})
    except (TypeError, ValueError) as e:
        raise ExportError(f"{d / ARCH}: cannot build {name}: {e}") from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ExportError(f"{d / WEIGHTS} does not match {ARCH}: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]} ({len(missing)}/{len(unexpected)} tensors)")
    for k, t in expected.items():
        if tuple(state[k].shape) != tuple(t.shape):
            raise ExportError(f"{d / WEIGHTS} does not match {ARCH}: {k} has shape "
                              f"{tuple(state[k].shape)}, the architecture needs {tuple(t.shape)}")
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------------------- profile

def profile_export(path, size: int | None = None, runs: int = 10) -> dict:
    """MACs, params, torch and ORT CPU latency (batch 1) of an export, at its own size by default."""
    d = export_dir(path)
    info, model = read_architecture(d), load(d)
    size = int(size or info.get("size") or DEFAULT_SIZE)
    inputs = example_inputs(model, size)
    names = [s["name"] for s in info.get("inputs", [])] or _input_names(model, len(inputs))
    res = {"path": str(d), "class": info["class"], "size": size, "macs": model_macs(model, size),
           "params": count_params(model), "torch_latency": torch_latency(model, inputs, runs=runs),
           "onnx_latency": None}
    if (d / ONNX).is_file():
        res["onnx_latency"] = onnx_latency(d / ONNX, dict(zip(names, inputs)), runs=runs)
    return res


# ----------------------------------------------------------------------------------------- samples

def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C,H,W) in [-1, 1] → (H,W,3) uint8; 1 channel → gray, > 3 channels → the first three."""
    img = img.detach().float().cpu()
    if img.dim() == 2:
        img = img[None]
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_image_grid(rows: Sequence, path, pad: int = 2) -> Path:
    """One grid row per entry of ``rows`` (a (B,C,H,W) batch, a (C,H,W) image or a list of images),
    e.g. ``[input, teacher(input), pruned(input)]``; values in [-1, 1]; cells resized to the largest."""
    from PIL import Image

    grid = []
    for row in rows:
        if isinstance(row, torch.Tensor) and row.dim() <= 3:
            row = [row]
        grid.append([_to_uint8(img) for img in row])
    if not grid or not any(grid):
        raise ValueError("save_image_grid needs at least one image")
    h = max(a.shape[0] for r in grid for a in r)
    w = max(a.shape[1] for r in grid for a in r)
    ncol = max(len(r) for r in grid)
    canvas = Image.new("RGB", (pad + ncol * (w + pad), pad + len(grid) * (h + pad)), (255, 255, 255))
    for i, r in enumerate(grid):
        for j, a in enumerate(r):
            cell = Image.fromarray(a)
            if cell.size != (w, h):
                cell = cell.resize((w, h), Image.NEAREST)
            canvas.paste(cell, (pad + j * (w + pad), pad + i * (h + pad)))
    path = Path(path)
    canvas.save(path)
    return path
