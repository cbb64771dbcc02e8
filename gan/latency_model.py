"""Predicted CPU latency of any pruned spec: a per-layer lookup table, measured once per machine.

MACs are a poor proxy for speed on a CPU (thin layers run less efficiently, norms and pads cost memory
traffic), so a latency budget needs a model of the runtime itself.  As the once-for-all and HAT latency
tables do (docs/methods.md, "Latency budgets"), every conv / conv-transpose / linear layer of the model is
timed alone, as a one-node ONNX graph in ONNX Runtime (or an eager torch module), over a grid of its input
and output widths.  The widths come from the channel groups (``MacsModel``'s per-layer width formulas), so
the nine blocks of a ResNet share one grid.  A spec's latency is then

    α · Σ_layers LUT(c_in, c_out)  +  β · Σ_layers c_out·H_out·W_out  +  γ

with the LUT interpolated bilinearly (made monotone, so budget searches can bisect), the second term the
norms, activations, pads and adds that ride on each layer's output, and (α, β, γ) ≥ 0 fitted by
non-negative least squares on relative error to a few whole-network measurements ("calibration").  Measurements are cached
under ``$GANPRUNE_CACHE/latency/``, keyed by machine (CPU model, cores), runtime, its version and threads.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from gan.cache import cache_root
from gan.determinism import torch_threads
from gan.models import build
from gan.models.base import ZooModel
from gan.profile import torch_latency
from gan.progress import progress
from gan.pruning.align import align_counts
from gan.pruning.macs import MacsModel
from gan.pruning.physical import pruned_architecture
from gan.pruning.targets import TargetError, resolve_macs_target, uniform_spec

RUNTIMES = ("onnxruntime", "torch")
#: width grid per layer dimension, as fractions of the full width (plus the minimum width): denser where
#: extreme compression lives
GRID = (0.125, 0.25, 0.5, 0.75, 1.0)
ONNX_OPSET = 17
#: a timing is the minimum over this many fresh sessions of each one's median: on a shared VM the same
#: model's per-session median wanders ±15 %, the minimum of three ±4 % (noise only ever adds time)
SESSIONS = 3
#: bump when the calibration specs or terms change: cached calibrations of another version are not reused
CALIBRATION_VERSION = 2


class LatencyModelError(ValueError):
    """A runtime, thread count or spec the latency model cannot serve."""


# ------------------------------------------------------------------------------------ the machine

def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(runtime: str, threads: int) -> dict:
    """What a measurement depends on: CPU model and count, OS/arch, runtime and version, thread count."""
    if runtime not in RUNTIMES:
        raise LatencyModelError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        import onnxruntime

        version = onnxruntime.__version__
    else:
        version = torch.__version__
    key = {"cpu": _cpu_name(), "cores": os.cpu_count(), "arch": platform.machine(), "os": platform.system(),
           "runtime": runtime, "version": version, "threads": int(threads)}
    if runtime == "onnxruntime":
        from gan.export import ORT_SPINNING

        key["spinning"] = ORT_SPINNING  # a session setting that changes the timings (docs/latency.md, "Spinning")
    return key


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


class MeasurementCache:
    """Layer timings and calibrations of one machine × runtime × threads, as one JSON file."""

    def __init__(self, key: dict, root: Path | None = None):
        self.key = key
        self.path = Path(root or cache_root() / "latency") / f"{key['runtime']}-{_digest(key)}.json"
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.points: dict[str, float] = data.get("points", {})
        self.calibrations: dict[str, list[float]] = data.get("calibrations", {})

    def save(self) -> None:
        """Merge with what another process wrote meanwhile, then replace the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            old = json.loads(self.path.read_text())
            self.points = {**old.get("points", {}), **self.points}
            self.calibrations = {**old.get("calibrations", {}), **self.calibrations}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"machine": self.key, "points": self.points,
                                   "calibrations": self.calibrations}, indent=0, sort_keys=True))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------ one layer

@dataclass(frozen=True)
class LayerShape:
    """A layer's static shape: everything its latency depends on except the two widths."""

    op: str                  # conv | depthwise | convT | linear
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()
    spatial: tuple[int, ...] = ()   # input H, W (conv) or rows (linear)

    @classmethod
    def of(cls, m: nn.Module, in_shape: tuple) -> LayerShape:
        if isinstance(m, nn.Linear):
            return cls("linear", spatial=(int(np.prod(in_shape[:-1])),))
        if isinstance(m.padding, str):
            raise LatencyModelError(f"{type(m).__name__} with padding={m.padding!r} is not supported")
        common = dict(kernel=tuple(m.kernel_size), stride=tuple(m.stride), padding=tuple(m.padding),
                      dilation=tuple(m.dilation), spatial=tuple(in_shape[2:]))
        if isinstance(m, nn.ConvTranspose2d):
            return cls("convT", output_padding=tuple(m.output_padding), **common)
        return cls("depthwise" if m.groups > 1 else "conv", **common)

    def key(self, cin: int, cout: int) -> str:
        return f"{self.op}|k{self.kernel}|s{self.stride}|p{self.padding}|d{self.dilation}|o{self.output_padding}|" \
               f"x{self.spatial}|{cin}|{cout}"


def _onnx_layer(shape: LayerShape, cin: int, cout: int, identity: bool = False) -> bytes:
    """A one-node ONNX graph running the layer (or passing its input through, to time the overhead)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    in_dims = [shape.spatial[0], cin] if shape.op == "linear" else [1, cin, *shape.spatial]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = []
    if identity:
        node = helper.make_node("Identity", ["x"], ["y"])
    elif shape.op == "linear":
        inits = [numpy_helper.from_array(rng.standard_normal((cout, cin), np.float32), "w"),
                 numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    else:
        pads = [*shape.padding, *shape.padding]
        if shape.op == "convT":
            w = rng.standard_normal((cin, cout, *shape.kernel), np.float32)
            attrs = dict(output_padding=list(shape.output_padding))
        else:
            groups = cin if shape.op == "depthwise" else 1
            w = rng.standard_normal((cout, cin // groups, *shape.kernel), np.float32)
            attrs = dict(group=groups)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
        node = helper.make_node("ConvTranspose" if shape.op == "convT" else "Conv", ["x", "w", "b"], ["y"],
                                kernel_shape=list(shape.kernel), strides=list(shape.stride), pads=pads,
                                dilations=list(shape.dilation), **attrs)
    graph = helper.make_graph([node], "layer", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


def _torch_layer(shape: LayerShape, cin: int, cout: int) -> tuple[nn.Module, torch.Tensor]:
    if shape.op == "linear":
        return nn.Linear(cin, cout), torch.randn(shape.spatial[0], cin)
    kw = dict(kernel_size=shape.kernel, stride=shape.stride, padding=shape.padding, dilation=shape.dilation)
    if shape.op == "convT":
        m = nn.ConvTranspose2d(cin, cout, output_padding=shape.output_padding, **kw)
    else:
        m = nn.Conv2d(cin, cout, groups=cin if shape.op == "depthwise" else 1, **kw)
    return m, torch.randn(1, cin, *shape.spatial)


def time_layer(shape: LayerShape, cin: int, cout: int, runtime: str, threads: int, runs: int = 5) -> float:
    """Median ms of the layer alone, minus the runtime's own cost of passing the same input through."""
    if cin == 0 or cout == 0:
        return 0.0  # a group pruned to width 0: the layer is not built
    if runtime == "torch":
        m, x = _torch_layer(shape, cin, cout)
        with torch_threads(threads):
            return torch_latency(m, (x,), warmup=2, runs=runs)["median_ms"]
    # numpy, not torch: a torch op here would leave torch's OpenMP workers spinning on the cores ORT times on
    dims = (shape.spatial[0], cin) if shape.op == "linear" else (1, cin, *shape.spatial)
    feed = {"x": np.random.default_rng(0).standard_normal(dims, dtype=np.float32)}
    with_layer, through = (_best_session_ms(_onnx_layer(shape, cin, cout, identity), feed, threads, runs)
                           for identity in (False, True))
    return max(0.0, with_layer - through)


def _best_session_ms(model, feed: dict, threads: int, runs: int, spinning: bool | None = None) -> float:
    """The minimum over ``SESSIONS`` fresh ONNX Runtime sessions of ``model`` (a file or serialized bytes) of
    each one's median ms (``gan.export.onnx_latency``); ``spinning`` None: the project's session setting."""
    from gan.export import ORT_SPINNING, onnx_latency, onnx_session

    spin = ORT_SPINNING if spinning is None else spinning
    return min(onnx_latency(model, feed, warmup=2, runs=runs, session=onnx_session(model, threads, spin))["median_ms"]
               for _ in range(SESSIONS))


# ------------------------------------------------------------------------------------ whole network

def counts_spec(model: ZooModel, counts: dict[str, int]) -> dict[str, list[int]]:
    """First-k channels per group: any spec with these counts has the same dense shapes, so the same latency."""
    return {g.name: list(range(int(counts.get(g.name, g.size)))) for g in model.channel_groups()}


def measure_counts(model: ZooModel, counts: dict[str, int], size: int, runtime: str = "onnxruntime",
                   threads: int | None = None, runs: int = 10) -> float:
    """Measured ms of ``model`` pruned to ``counts`` (``measure_architecture``)."""
    return measure_architecture(pruned_architecture(model, counts_spec(model, counts)), size, runtime, threads, runs)


def measure_architecture(arch: dict, size: int, runtime: str = "onnxruntime", threads: int | None = None,
                         runs: int = 10, spinning: bool | None = None) -> float:
    """Measured ms of a dense architecture at ``size``² (random weights: latency depends on shapes only),
    exported to ONNX and run in ONNX Runtime as a user's export runs, or eager in torch; the minimum over
    ``SESSIONS`` sessions of each one's median (``spinning``: ONNX Runtime's, None for the project's)."""
    threads = int(threads or torch.get_num_threads())
    with torch_threads(threads):
        net = build(arch).eval()
        inputs = net.example_inputs(1, size)
        if runtime == "torch":
            return torch_latency(net, inputs, warmup=3, runs=runs)["median_ms"]
    from gan.export import _input_names, _output_names, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        with torch.inference_mode():
            y = net(*inputs)
        n_out = len(y) if isinstance(y, (tuple, list)) else 1
        names = _input_names(net, len(inputs))
        export_onnx(net, inputs, path, names, _output_names(n_out))
        time.sleep(0.2)  # let torch's OpenMP workers stop spinning before ORT is timed on the same cores
        return _best_session_ms(path, dict(zip(names, inputs)), threads, runs, spinning)


def measure_export(path, size: int, runtime: str = "onnxruntime", threads: int | None = None,
                   runs: int = 10, spinning: bool | None = None) -> float:
    """Measured ms of an export's architecture (``measure_architecture``: its weights do not change latency)."""
    from gan.export import read_architecture

    arch = read_architecture(path)
    return measure_architecture({"class": arch["class"], "kwargs": arch.get("kwargs", {})}, size, runtime, threads,
                                runs, spinning)


def measure_in_rounds(measures: list, rounds: int, desc: str | None = None, quiet: bool = True) -> list[list[float]]:
    """Each of ``measures`` (callables returning ms) once per round, in order, for ``rounds`` rounds: per measure
    its list of timings (``desc``: a progress bar over the rounds). Comparisons are measured so, since this VM
    drifts over minutes (docs/methods.md, "Latency budgets", Measuring)."""
    ms = [[] for _ in measures]
    for _ in progress(range(rounds), desc=desc, quiet=quiet or desc is None):
        for i, measure in enumerate(measures):
            ms[i].append(measure())
    return ms


def random_counts(model: ZooModel, rng: random.Random, low: float = 0.05) -> dict[str, int]:
    """A varied spec: one global keep ratio, then each group scattered around it (×0.5–1.5)."""
    r = rng.uniform(low, 1.0)
    return {g.name: int(min(g.size, max(g.min_keep, 1, round(g.size * r * rng.uniform(0.5, 1.5)))))
            for g in model.channel_groups()}


@dataclass
class _Table:
    cin_grid: np.ndarray
    cout_grid: np.ndarray
    ms: np.ndarray         # len(cin_grid) × len(cout_grid), made monotone in both

    def at(self, cin: float, cout: float) -> float:
        j0, j1, u = _interp(self.cout_grid, cout)
        i0, i1, v = _interp(self.cin_grid, cin)
        top = self.ms[i0, j0] + u * (self.ms[i0, j1] - self.ms[i0, j0])
        bot = self.ms[i1, j0] + u * (self.ms[i1, j1] - self.ms[i1, j0])
        return float(top + v * (bot - top))


@dataclass
class _LayerTable:
    name: str
    calls: int
    cin: object            # gan.pruning.macs._Width or None (depthwise: c_in = c_out)
    cout: object
    out_pixels: int        # H_out·W_out (rows for a linear)
    blocked: bool          # a regular conv: CPU kernels work on channel blocks (see ``BLOCK``)
    aligned: _Table        # blocked: c_in a multiple of ALIGN, widths looked up rounded up to BLOCK
    unaligned: _Table | None = None  # blocked: c_in not a multiple of ALIGN (the slower generic path)

    def ms(self, cin: int, cout: int) -> float:
        if not self.blocked:
            return self.aligned.at(cin, cout)
        cout_b = _block(cout, self.cout, self.aligned.cout_grid[-1])
        if self.unaligned is None or _is_aligned(cin, self.cin):
            return self.aligned.at(_block(cin, self.cin, self.aligned.cin_grid[-1]), cout_b)
        return self.unaligned.at(cin, cout_b)


#: measured on this project's CPU (AVX-512, ONNX Runtime 1.32, a 3×3 conv at 66²): ORT's NCHWc convs pad
#: channels to blocks of 16 (c_in 56 costs what 64 does, 40 what 48 does) and take a slower generic path
#: when c_in is not a multiple of 8 (63 → +26 % over 64; c_out 63 ≈ 64).  Tables are measured at block
#: multiples (fast path) and one channel below them (slow path), so a prediction sees both effects; widths
#: of a varying group are looked up accordingly (a fixed width, like 3 image channels, as it is).
BLOCK, ALIGN = 16, 8


def _varies(width) -> bool:
    return width is not None and bool(width.parts)


def _is_aligned(c: int, width) -> bool:
    return not _varies(width) or c % ALIGN == 0


def _block(c: float, width, full: float) -> float:
    """``c`` rounded up to the channel block, never past the full width (a fixed width, or one below a block,
    stays as it is)."""
    if not _varies(width) or c < BLOCK:
        return c
    return min(full, -(-c // BLOCK) * BLOCK)


def _grid(width, sizes: dict, min_keep: dict, blocked: bool = False) -> np.ndarray:
    full = width.value(sizes)
    low = width.value({g: min_keep[g] for g in sizes})
    pts = {low, full} | {max(low, int(round(full * f))) for f in GRID}
    if blocked:
        pts = {_block(p, width, full) for p in pts}
    return np.asarray(sorted(pts), dtype=np.float64)


def _below(grid: np.ndarray) -> np.ndarray:
    """The slow-path c_in grid: one channel below each aligned grid width (≥ 1)."""
    return np.asarray(sorted({max(1.0, g - 1) for g in grid if g % ALIGN == 0 and g > 1} | {float(grid[0])}))


def _interp(grid: np.ndarray, x: float) -> tuple[int, int, float]:
    if len(grid) == 1:
        return 0, 0, 0.0
    j = int(np.clip(np.searchsorted(grid, x) - 1, 0, len(grid) - 2))
    t = (x - grid[j]) / (grid[j + 1] - grid[j])
    return j, j + 1, float(np.clip(t, 0.0, 1.0))


class LatencyModel:
    """``cost(counts)`` → predicted ms of the pruned model at ``size``² on this machine; the same interface
    as ``MacsModel`` (``sizes``, ``min_keep``, ``full``, ``minimum()``), so the envs' clip and fill, the
    threshold bisections and ``fill_counts`` budget latency as they budget MACs."""

    def __init__(self, model: ZooModel, size: int, runtime: str = "onnxruntime", threads: int | None = None,
                 calibration_specs: int = 8, seed: int = 0, quiet: bool = True, cache_root_dir: Path | None = None):
        self.runtime, self.size = runtime, int(size)
        self.threads = int(threads or torch.get_num_threads())
        self.cache = MeasurementCache(machine_key(runtime, self.threads), cache_root_dir)
        self.mm = MacsModel(model, self.size)
        self.sizes, self.min_keep = self.mm.sizes, self.mm.min_keep
        self.layers = self._tables(quiet)
        self.coef = self._calibrate(model, calibration_specs, seed, quiet)
        self.full = self.cost({})

    # ---------------------------------------------------------------- tables

    def _tables(self, quiet: bool) -> list[_LayerTable]:
        todo, plans = {}, []
        for layer in self.mm.layers:
            m = self.mm.modules[layer.name]
            in_shape, out_shape = self.mm.io_shapes[layer.name]
            shape = LayerShape.of(m, in_shape)
            blocked = shape.op == "conv"
            cout_grid = _grid(layer.cout, self.sizes, self.min_keep, blocked)
            pix = int(np.prod(out_shape[2:])) if shape.op != "linear" else shape.spatial[0]
            if layer.cin is None:  # depthwise: one width, c_in = c_out
                grids = [(cout_grid, None)]
            else:
                cin_grid = _grid(layer.cin, self.sizes, self.min_keep, blocked)
                grids = [(cin_grid, cout_grid)]
                if blocked and _varies(layer.cin):
                    grids.append((_below(cin_grid), cout_grid))
            plans.append((layer, shape, pix, blocked, grids))
            for ci_grid, co_grid in grids:
                for ci in ci_grid:
                    for co in (co_grid if co_grid is not None else [ci]):
                        k = shape.key(int(ci), int(co))
                        if k not in self.cache.points:
                            todo[k] = (shape, int(ci), int(co))
        for k, (shape, ci, co) in progress(todo.items(), desc=f"timing layers ({self.runtime}, {self.threads} threads)",
                                           quiet=quiet or not todo):
            self.cache.points[k] = time_layer(shape, ci, co, self.runtime, self.threads)
        if todo:
            self.cache.save()
        out = []
        for layer, shape, pix, blocked, grids in plans:
            tables = []
            for ci_grid, co_grid in grids:
                if co_grid is None:  # depthwise: a 1 × n table over the one width
                    ms = np.asarray([[self.cache.points[shape.key(int(c), int(c))] for c in ci_grid]])
                    ci_grid, co_grid = np.asarray([0.0]), ci_grid
                else:
                    ms = np.asarray([[self.cache.points[shape.key(int(ci), int(co))] for co in co_grid]
                                     for ci in ci_grid])
                ms = np.maximum.accumulate(np.maximum.accumulate(ms, axis=0), axis=1)  # monotone within a path
                tables.append(_Table(ci_grid, co_grid, ms))
            out.append(_LayerTable(layer.name, self.mm.calls.get(layer.name, 1), layer.cin, layer.cout, pix,
                                   blocked, *tables))
        return out

    def _terms(self, counts: dict[str, int]) -> np.ndarray:
        """(Σ interpolated layer ms, Σ output elements in millions, 1) for a count assignment."""
        c = {**self.sizes, **counts}
        lut = elems = 0.0
        for t in self.layers:
            co = t.cout.value(c)
            if co == 0 or (t.cin is not None and t.cin.value(c) == 0):
                continue
            val = t.aligned.at(0.0, co) if t.cin is None else t.ms(t.cin.value(c), co)
            lut += t.calls * max(0.0, val)
            elems += t.calls * co * t.out_pixels / 1e6
        return np.asarray([lut, elems, 1.0])

    # ---------------------------------------------------------------- calibration

    def calibration_counts(self, model: ZooModel, n: int, seed: int) -> list[dict[str, int]]:
        rng = random.Random(seed)
        uniform = [{g.name: max(g.min_keep, 1, round(g.size * r)) for g in model.channel_groups()}
                   for r in (0.5, 0.25, 0.1)]
        smallest = {g.name: max(g.min_keep, 1) for g in model.channel_groups()}  # anchors γ at the extreme end
        return [{}, smallest, *uniform, *(random_counts(model, rng) for _ in range(max(0, n - 5)))][:max(1, n)]

    def _calibrate(self, model: ZooModel, n: int, seed: int, quiet: bool) -> np.ndarray:
        key = f"v{CALIBRATION_VERSION}|{_digest(model.architecture())}@{self.size}|n{n}|s{seed}"
        if key in self.cache.calibrations:
            return np.asarray(self.cache.calibrations[key])
        specs = self.calibration_counts(model, n, seed)
        X, y = [], []
        for counts in progress(specs, desc="calibrating on whole networks", quiet=quiet):
            X.append(self._terms(counts))
            y.append(measure_counts(model, counts, self.size, self.runtime, self.threads))
        # relative errors (what a budget cares about), plus one prior row pulling α to 1: the in-context
        # table is in real ms, so at sizes where overhead dominates and the terms are collinear α stays ≈ 1
        X, y = np.asarray(X), np.asarray(y)
        A = np.vstack([X / y[:, None], [[1.0, 0.0, 0.0]]])
        coef, _ = nnls(A, np.ones(len(A)))
        self.cache.calibrations[key] = coef.tolist()
        self.cache.save()
        return coef

    # ---------------------------------------------------------------- the MacsModel interface

    def cost(self, counts: dict[str, int]) -> float:
        """Predicted ms of the model pruned to ``counts`` (group → kept channels; missing groups keep all)."""
        return float(self.coef @ self._terms(counts))

    def counts(self, spec) -> dict[str, int]:
        return self.mm.counts(spec)

    def predicted_ms(self, counts: dict[str, int]) -> float:
        return self.cost(counts)

    @property
    def full_ms(self) -> float:
        """The unpruned model's predicted ms (``full`` is the budgeted cost; for a plain latency model the same)."""
        return self.full

    def minimum(self) -> float:
        return self.cost(dict(self.min_keep))

    def describe(self) -> dict:
        return {"runtime": self.runtime, "threads": self.threads, "size": self.size,
                "layers": len(self.layers),
                "points": sum(x.ms.size for t in self.layers for x in (t.aligned, t.unaligned) if x is not None),
                "alpha": float(self.coef[0]), "beta_ms_per_Melem": float(self.coef[1]),
                "gamma_ms": float(self.coef[2]),
                "cache": str(self.cache.path), "machine": self.cache.key}


def model_error(model: ZooModel, lm: LatencyModel, n: int = 20, seed: int = 1000, runs: int = 10,
                quiet: bool = True) -> dict:
    """Predicted vs measured ms on ``n`` random specs (none of them a calibration spec)."""
    rng = random.Random(seed)
    rows = []
    for _ in progress(range(n), desc="random specs: predicted vs measured", quiet=quiet):
        counts = random_counts(model, rng)
        pred = lm.cost(counts)
        meas = measure_counts(model, counts, lm.size, lm.runtime, lm.threads, runs=runs)
        rows.append({"macs_ratio": lm.mm.macs(counts) / lm.mm.full, "predicted_ms": pred, "measured_ms": meas,
                     "error": pred / meas - 1.0})
    errs = np.asarray([r["error"] for r in rows])
    return {"rows": rows, "median_abs_error": float(np.median(np.abs(errs))),
            "median_error": float(np.median(errs)), "max_abs_error": float(np.abs(errs).max())}


def climb_start(model: ZooModel, target_macs: float, size: int) -> dict[str, int]:
    """Where ``fastest_counts`` starts (before alignment): one L1 keep ratio's widths at ``target_macs``."""
    spec, _ = uniform_spec(model, target_macs, size, criterion="l1")
    return MacsModel(model, size).counts(spec)


def fastest_counts(model: ZooModel, latency: LatencyModel, target_macs: float, size: int, block: int,
                   steps: int = 20000, seed: int = 0, spend: float = 0.97,
                   start: dict[str, int] | None = None) -> dict[str, int]:
    """The widths ``latency`` predicts fastest with ``spend``–100 % of ``target_macs`` spent (MACs counted at
    ``size``², the teacher's): a seeded hill climb over multiples of ``block`` from L1's widths aligned to it
    (``start``: ``climb_start``'s, when the caller has them).

    Why: at the same MACs, where the widths sit decides the speed (docs/latency.md, "At 10 % MACs, what can
    the widths buy?"). A start below ``spend`` (alignment can lose MACs on thin models) climbs into the window
    first: candidates compare by (MACs shortfall, predicted ms)."""
    mm = MacsModel(model, size)
    start = start or climb_start(model, target_macs, size)
    best = align_counts(mm, start, target_macs, block) or start

    def score(c):
        return max(0.0, spend * target_macs - mm.cost(c)) / target_macs, latency.cost(c)

    best_score, names, rng = score(best), list(mm.sizes), random.Random(seed)
    for _ in range(steps):
        c = dict(best)
        for _ in range(rng.randint(1, 3)):
            n = rng.choice(names)
            low = block if mm.sizes[n] >= block else mm.min_keep[n]
            c[n] = max(low, mm.min_keep[n], min(mm.sizes[n], c[n] + block * rng.choice([-2, -1, 1, 2])))
        if mm.cost(c) <= target_macs and (s := score(c)) < best_score:
            best, best_score = c, s
    return best


def fastest_measured(model: ZooModel, latency: LatencyModel, target_macs: float, size: int, block: int,
                     climbs: int = 4, rounds: int = 3, seed: int = 0, quiet: bool = True,
                     start: dict[str, int] | None = None) -> tuple[dict, list[dict]]:
    """``fastest_counts`` from ``climbs`` seeds, the distinct results each exported and measured in ``rounds``
    (every candidate once per round, the median kept): the measured fastest, and every candidate's record.

    Why: a search on the model's predictions finds its errors too (a fresh model of the ResNet-9 rated a pick
    at 59 ms that measured 64.5 ms; docs/latency.md, "`--method fastest`"), so the model proposes and a
    measurement of the few proposals decides, as hardware-aware searches verify their finalists."""
    start, cands = start or climb_start(model, target_macs, size), []
    for k in range(climbs):
        c = fastest_counts(model, latency, target_macs, size, block, seed=seed + k, start=start)
        if c not in cands:
            cands.append(c)
    ms = measure_in_rounds([lambda c=c: measure_counts(model, c, latency.size, latency.runtime, latency.threads)
                            for c in cands], rounds, f"measuring {len(cands)} fastest candidates", quiet)
    recs = [{"widths": c, "predicted_ms": latency.cost(c), "measured_ms": float(np.median(m))}
            for c, m in zip(cands, ms)]
    return min(recs, key=lambda r: r["measured_ms"])["widths"], recs


# ------------------------------------------------------------------------------------ budgets

@dataclass(frozen=True)
class LatencyTarget:
    """``prune --latency-target``: a fraction (≤ 1) of the teacher's predicted latency, or milliseconds (> 1),
    at ``size``² (the deployment size; None: the teacher's) in ``runtime`` with ``threads``."""

    value: float
    size: int | None = None
    runtime: str = "onnxruntime"
    threads: int | None = None
    macs_cap: float | None = None  # ``--macs-cap``: MACs must also stay within this fraction (≤ 1) or count

    def __post_init__(self):
        if not self.value > 0:
            raise TargetError(f"latency target {self.value:g} must be positive: give a fraction of the teacher's "
                              "latency (0.3) or milliseconds (12)")
        if self.macs_cap is not None and not self.macs_cap > 0:
            raise TargetError(f"--macs-cap {self.macs_cap:g} must be positive: give a fraction of the teacher's "
                              "MACs (0.1) or a count (3e9)")
        if self.runtime not in RUNTIMES:
            raise TargetError(f"unknown latency runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.threads is not None and self.threads < 1:
            raise TargetError(f"latency threads {self.threads}: give 1 or more")
        if self.size is not None and self.size < 8:
            raise TargetError(f"latency size {self.size}: give the deployment image size (e.g. 256)")

    def latency_model(self, model: ZooModel, default_size: int, quiet: bool = True) -> LatencyModel:
        """This deployment's latency model of ``model`` (``size`` None: ``default_size``, the teacher's)."""
        return LatencyModel(model, self.size or default_size, self.runtime, self.threads, quiet=quiet)


class MacsCappedLatency:
    """A latency budget that also caps MACs (``prune --latency-target T --macs-cap M``).

    Why: the same MACs run at very different speeds depending on where the widths sit (docs/latency.md,
    "Does pruning turn MACs into speed"), and users often have both limits (energy or memory, and a frame
    time). ``cost(counts) = max(predicted ms, target ms × MACs / cap)`` is at most the target ms exactly when
    both hold, so the envs' clip and fill, the one-knob bisections and ``fill_counts`` keep budgeting one
    number, in ms (docs/methods.md, "Latency budgets")."""

    def __init__(self, latency: LatencyModel, macs: MacsModel, cap: float, target_ms: float):
        self.latency, self.macs, self.cap, self.target_ms = latency, macs, float(cap), float(target_ms)
        self.sizes, self.min_keep = latency.sizes, latency.min_keep
        self.runtime, self.threads, self.size = latency.runtime, latency.threads, latency.size
        self.full = self.cost({})

    def cost(self, counts: dict[str, int]) -> float:
        return max(self.latency.cost(counts), self.target_ms * self.macs.cost(counts) / self.cap)

    def counts(self, spec) -> dict[str, int]:
        return self.latency.counts(spec)

    def minimum(self) -> float:
        return self.cost(dict(self.min_keep))

    def predicted_ms(self, counts: dict[str, int]) -> float:
        return self.latency.cost(counts)

    @property
    def full_ms(self) -> float:
        return self.latency.full

    def describe(self) -> dict:
        return {**self.latency.describe(), "macs_cap": self.cap, "macs_cap_fraction": self.cap / self.macs.full}


def latency_budget(model: ZooModel, target: LatencyTarget, default_size: int,
                   quiet: bool = True) -> tuple[LatencyModel | MacsCappedLatency, float]:
    """The latency model (measured once per machine, cached) and the target in predicted ms, checked to be
    reachable: above the minimum widths' latency and at most the full model's. With ``target.macs_cap`` the
    model is wrapped so that the same budget also caps MACs (at the teacher's size, as ``--macs-target``)."""
    cap = None if target.macs_cap is None else resolve_macs_target(model, target.macs_cap, default_size, "--macs-cap")
    lm = target.latency_model(model, default_size, quiet)
    ms = target.value * lm.full if target.value <= 1 else float(target.value)
    floor = lm.minimum()
    if ms > lm.full * (1 + 1e-9):
        raise TargetError(f"latency target {ms:.3g} ms is above the full model's predicted {lm.full:.3g} ms "
                          f"({target.runtime}, {lm.threads} threads, {lm.size}²); give a fraction ≤ 1 or fewer ms")
    if ms < floor:
        raise TargetError(f"latency target {ms:.3g} ms ({ms / lm.full:.1%}) is below the {floor:.3g} ms "
                          f"({floor / lm.full:.1%}) that the minimum channels take ({target.runtime}, {lm.threads} "
                          f"threads, {lm.size}²); raise --latency-target")
    if cap is None:
        return lm, ms
    return MacsCappedLatency(lm, MacsModel(model, default_size), cap, ms), ms
