"""Implementations of the CLI commands; each returns the JSON-able result of the command."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from orchestration.errors import UsageError
from orchestration.specs import generator_spec, load_json
from orchestration.report import print_table


def data(args):
    from gan import data as gdata

    if args.action == "list":
        rows = gdata.list_builtin()
        if not args.quiet:
            print_table("built-in datasets", rows, ["name", "layout", "description"])
        return {"datasets": rows}
    if not args.name:
        raise UsageError(f"'ganprune data {args.action}' needs a NAME (see 'ganprune data list')")
    if args.action == "prepare":
        path = gdata.prepare(args.name, root=args.root, size=args.size, seed=args.seed)
    else:
        path = gdata.resolve_dataset(args.name, size=args.size, root=args.root)
    ds = gdata.open_dataset(path, size=args.size, split="train")
    if not args.quiet:
        print(f"{args.name}: {path} ({type(ds).__name__}, {len(ds)} train items)")
    return {"name": args.name, "path": str(path), "layout": type(ds).__name__, "train_items": len(ds)}


def _fresh_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to write into a non-empty directory unless told to: nothing of a user's is lost."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"{out} is not empty; choose another --out or pass --overwrite")
        shutil.rmtree(out)
    return out


def export(args):
    from gan import export as gexport
    from gan.pruning.physical import prune

    model = gexport.load(args.source)
    meta = gexport.read_architecture(args.source)
    size = args.size or meta.get("size") or 64
    source = {"path": str(Path(args.source).resolve())}
    if args.spec:
        try:
            model = prune(model, generator_spec(load_json(args.spec, "spec"))[0])
        except ValueError as e:
            raise UsageError(f"spec {args.spec}: {e}") from e
        source["spec"] = str(Path(args.spec).resolve())
    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    if not formats <= {"safetensors", "onnx"}:
        raise UsageError(f"--format takes safetensors,onnx; got {args.format!r}")
    out = _fresh_out_dir(args.out, args.overwrite)
    gexport.save(model, out, size=size, source=source, onnx="onnx" in formats)
    result = gexport.profile_export(out, size=size, runs=5)
    if not args.quiet:
        print(f"exported to {out}")
        print_profile([("export", result)])
    return {"out": str(out), **result}


def profile(args):
    from gan import export as gexport

    if args.latency_model:
        return profile_latency_model(args)
    result = gexport.profile_export(args.path, size=args.size, runs=args.runs)
    if not args.quiet:
        print_profile([(args.path, result)])
    return result


def profile_latency_model(args) -> dict:
    """``profile --latency-model``: the model (built once per machine, cached) and its error on random specs."""
    from gan import export as gexport
    from gan.latency_model import LatencyModel, model_error

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: give 1 or more intra-op threads")
    if args.specs < 1:
        raise UsageError(f"--specs {args.specs}: give 1 or more random specs to measure the error on")
    model = gexport.load(args.path).eval()
    size = int(args.size or gexport.read_architecture(args.path).get("size") or gexport.DEFAULT_SIZE)
    lm = LatencyModel(model, size, runtime=args.runtime, threads=args.threads, quiet=args.quiet)
    err = model_error(model, lm, n=args.specs, runs=max(3, min(args.runs, 10)), quiet=args.quiet)
    result = {"latency_model": lm.describe(), "teacher_predicted_ms": lm.full, **err}
    if args.plot:
        from orchestration.plots import latency_model_error

        result["plot"] = str(latency_model_error(err["rows"], args.plot, title=f"{args.runtime}, "
                                                 f"{lm.threads} threads, {size}²"))
    if not args.quiet:
        print_table(f"latency model ({args.runtime}, {lm.threads} threads, {size}²): predicted vs measured on "
                    f"{args.specs} random specs",
                    [{"MACs": f"{r['macs_ratio']:.1%}", "predicted ms": f"{r['predicted_ms']:.2f}",
                      "measured ms": f"{r['measured_ms']:.2f}", "error": f"{r['error']:+.1%}"} for r in err["rows"]],
                    ["MACs", "predicted ms", "measured ms", "error"])
        print(f"median |error| {err['median_abs_error']:.1%} (median {err['median_error']:+.1%}, worst "
              f"{err['max_abs_error']:.1%}); model: {lm.describe()['points']} layer timings, α {lm.coef[0]:.2f}, "
              f"β {lm.coef[1]:.3g} ms/M elements, γ {lm.coef[2]:.3g} ms; cache {lm.cache.path}")
    return result


def print_profile(rows: list[tuple[str, dict]], baseline: dict | None = None) -> None:
    """One table of MACs / params / latencies; ratios against ``baseline`` when given."""
    table = []
    for name, r in rows:
        row = {"model": name, "MACs": f"{r['macs'] / 1e6:.2f} M", "params": f"{r['params'] / 1e3:.1f} k",
               "torch ms": f"{r['torch_latency']['median_ms']:.2f}",
               "ORT ms": f"{r['onnx_latency']['median_ms']:.2f}" if r.get("onnx_latency") else "-"}
        if baseline:
            row["MACs ×"] = f"{baseline['macs'] / r['macs']:.2f}"
            row["torch ×"] = f"{baseline['torch_latency']['median_ms'] / r['torch_latency']['median_ms']:.2f}"
            if r.get("onnx_latency") and baseline.get("onnx_latency"):
                row["ORT ×"] = f"{baseline['onnx_latency']['median_ms'] / r['onnx_latency']['median_ms']:.2f}"
        table.append(row)
    print_table(None, table, list(table[0]))


def evaluate(args):
    import os

    from gan import data as gdata
    from gan import export as gexport
    from gan.metrics.evaluate import evaluate_generator

    model = gexport.load(args.path)
    size = int(args.size or gexport.read_architecture(args.path).get("size") or gexport.DEFAULT_SIZE)
    teacher = gexport.load(args.teacher) if args.teacher else None
    root = gdata.resolve_dataset(args.data, size=size)
    dataset = gdata.open_dataset(root, size=size, split=args.split)
    weights = args.inception_weights or os.environ.get("GANPRUNE_INCEPTION_WEIGHTS")
    try:
        result = evaluate_generator(model, dataset, teacher=teacher, dataset_root=root,
                                    max_items=args.max_items, backend="inception" if weights else "proxy",
                                    inception_weights=weights)
    except ValueError as e:
        raise UsageError(str(e)) from e
    result = {"path": str(args.path), "data": args.data, "split": args.split, "size": size, **result}
    if not args.quiet:
        if not weights:
            print("no Inception weights given (--inception-weights): FID/KID are reported as the "
                  "seeded-network proxy fid_proxy/kid_proxy, not comparable with published FIDs")
        print_table(f"fidelity on {args.data}/{args.split}", [
            {"metric": k, "value": f"{v:.4g}" if isinstance(v, float) else v} for k, v in result.items()
            if k not in ("path", "data", "split")], ["metric", "value"])
    return result


def finetune(args):
    from orchestration.finetune import finetune as run_finetune
    from gan.train.distill import DEFAULT_OBJECTIVE
    from orchestration.requests import FinetuneRequest

    add = tuple(a.strip() for item in args.add for a in item.split(",") if a.strip())
    density = _density_options(args.density_option)
    objective = args.objective or DEFAULT_OBJECTIVE
    if density and objective != "density":
        raise UsageError(f"--density-option sets the density objective; drop it or add --objective density "
                         f"(the objective is {objective})")
    request = FinetuneRequest(args.teacher, args.spec, args.out, objective=objective, add=add, steps=args.steps,
                              backend=args.backend, overwrite=args.overwrite, quiet=args.quiet,
                              batch_size=args.batch_size, resume=args.resume, ckpt_every=args.ckpt_every,
                              threads=args.threads, density=density or None)
    if args.ckpt_every < 0:
        raise UsageError(f"--ckpt-every must be ≥ 0, got {args.ckpt_every}")
    if args.ray_workers:
        from orchestration.ray_finetune import finetune_on_ray

        return finetune_on_ray(args.ray_workers, request, address=args.address)
    if args.address:
        raise UsageError("--address names the Ray cluster of --ray-workers; add --ray-workers N or drop it")
    return run_finetune(request)


def train_teacher(args):
    from orchestration.requests import TeacherRequest
    from orchestration.teacher import train_teacher as run_train_teacher

    return run_train_teacher(TeacherRequest(args.preset, data=args.data, out=args.out, steps=args.steps,
                                            resume=args.resume, overwrite=args.overwrite,
                                            tracking_uri=args.tracking_uri, backend=args.backend,
                                            ckpt_every=args.ckpt_every, quiet=args.quiet,
                                            batch_size=args.batch_size, seed=args.seed, threads=args.threads))


def import_teacher(args):
    from orchestration.import_teacher import import_teacher as run_import
    from orchestration.requests import ImportTeacherRequest

    return run_import(ImportTeacherRequest(
        generator=args.generator, arch=args.arch, norm=args.norm, data=args.data, out=args.out,
        discriminator=args.discriminator, dropout=args.dropout, d_steps=args.d_steps, ndf=args.ndf,
        size=args.size, backend=args.backend, seed=args.seed, threads=args.threads, overwrite=args.overwrite,
        quiet=args.quiet))


def demo(args):
    from orchestration.demo import run_demo

    return run_demo(out=Path(args.out), macs_target=args.macs_target, preset=args.preset, quiet=args.quiet,
                    teacher=args.teacher, teacher_steps=args.teacher_steps, iterations=args.iterations,
                    episodes=args.episodes, finetune_steps=args.finetune_steps, tracking_uri=args.tracking_uri)


def _density_options(items) -> dict:
    """``--density-option K=V`` → ``DensityConfig`` overrides, checked now (unknown keys and values refused)."""
    import dataclasses

    from gan.losses.density import DensityConfig

    options = _key_values(items, "--density-option")
    known = [f.name for f in dataclasses.fields(DensityConfig) if f.name != "feature"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"unknown --density-option {unknown[0]!r}; known: {', '.join(known)}")
    try:
        DensityConfig(**options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--density-option: {e}") from None
    return options


def _key_values(items, flag: str, typed: bool = True) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values parsed as JSON where they can be; ``typed``
    False: kept as strings, for options typed by their dataclass's fields)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            example = "supernet_steps=500" if typed else "train_steps=500"
            raise UsageError(f"{flag} {item!r} is not KEY=VALUE; e.g. {flag} {example}")
        try:
            out[key.strip()] = json.loads(value) if typed else value
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _check_placement(placement, finetune_backend: str, methods) -> None:
    """What the Ray placement flags (``cli._cluster_flags``) cannot serve is refused now, not after a
    search."""
    if placement.finetune_workers:
        from agents.cluster import check_ray_address
        from orchestration.ray_finetune import check_workers

        check_workers(placement.finetune_workers, finetune_backend, flag="--finetune-workers",
                      backend_flag="--finetune-backend")
        if list(methods) == ["ppcd"]:
            raise UsageError("--method ppcd trains its masked student in this process; drop --finetune-workers")
        check_ray_address(placement.address)


def given_flags(args, names) -> dict:
    """The flags among ``names`` that the command line set (``cli`` records them in ``args.given``;
    without that record, every one)."""
    given = getattr(args, "given", None)
    return {k: getattr(args, k) for k in names if given is None or k in given}


def prune_request(args):
    """The prune flags as one ``PruneRequest``; with ``--request FILE``, that file's request with the
    flags given on the command line on top."""
    from orchestration.requests import PRUNE_FLAGS, PruneRequest, prune_request as build

    base = PruneRequest.from_file(args.request) if getattr(args, "request", None) else None
    flags = given_flags(args, PRUNE_FLAGS)  # every flag unless --request made cli record the given ones
    if "method_option" in flags:
        flags["method_option"] = {**(base.options if base else {}),
                                  **_key_values(flags["method_option"], "--method-option")}
    if "backend_option" in flags:
        flags["backend_option"] = {**(base.search.backend_options if base else {}),
                                   **_key_values(flags["backend_option"], "--backend-option", typed=False)}
    return build(flags, base)


def prune(args):
    from orchestration.prune import print_summary, prune as run_prune

    request = prune_request(args)
    _check_placement(request.placement, request.finetune.backend, [request.method])
    result = run_prune(request)
    if not args.quiet:
        print_summary(result)
        print(f"inspect: ganprune inspect {result['out']}    MLflow: ganprune ui")
    return {k: v for k, v in result.items() if k != "profile"}


def benchmark(args):
    from orchestration.benchmark import benchmark as run_benchmark, parse_seeds
    from orchestration.requests import (PLACEMENT_FLAGS, BenchmarkRequest, FinetuneFlags, Placement,
                                        PruneRequest, SearchFlags)

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.macs_cap is not None and not args.latency_targets:
        raise UsageError("--macs-cap caps MACs under latency budgets: add --latency-targets, or give the MACs "
                         "budget alone as --macs-target")
    row = PruneRequest(preset=args.preset, teacher=args.teacher, data=args.data, macs_target=args.macs_target,
                       threads=args.threads, align=args.align, macs_cap=args.macs_cap,
                       latency_size=args.latency_size, latency_runtime=args.latency_runtime,
                       latency_threads=args.latency_threads,
                       search=SearchFlags(iterations=args.iterations, episodes=args.episodes,
                                          backend_steps=args.backend_steps, backend=args.search_backend,
                                          backend_options=_key_values(args.backend_option, "--backend-option",
                                                                      typed=False)),
                       finetune=FinetuneFlags(steps=args.finetune_steps, backend=args.finetune_backend, vem=args.vem),
                       placement=Placement(**{k: getattr(args, k) for k in PLACEMENT_FLAGS}), quiet=True,
                       tracking_uri=args.tracking_uri)
    _check_placement(row.placement, args.finetune_backend, methods)
    request = BenchmarkRequest(methods=methods, seeds=tuple(parse_seeds(args.seeds or [args.seed])), out=args.out,
                               teacher_steps=args.teacher_steps, resume=args.resume, overwrite=args.overwrite,
                               row=row, quiet=args.quiet, jobs=args.jobs)
    if args.macs_targets or args.latency_targets:
        from orchestration.sweep import sweep

        return sweep(request, _floats(args.macs_targets, "--macs-targets"),
                     _floats(args.latency_targets, "--latency-targets"), latency_size=args.latency_size,
                     runtime=args.latency_runtime, threads=args.latency_threads)
    return run_benchmark(request)


def _floats(text: str | None, flag: str) -> list[float]:
    try:
        return [float(x) for x in (text or "").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give comma-separated numbers, e.g. 0.25,0.1,0.04") from None


def inspect(args):
    from orchestration.inspect_run import inspect_run

    return inspect_run(args.run, tracking_uri=args.tracking_uri, quiet=args.quiet)


def ui(args):
    import subprocess

    uri = args.tracking_uri or "sqlite:///mlflow.db"
    print(f"MLflow UI on http://127.0.0.1:{args.port} over {uri} (Ctrl-C to stop)", file=sys.stderr)
    return {"rc": subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                                   "--port", str(args.port)])}
