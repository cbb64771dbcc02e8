"""``ganprune benchmark``: every method × seed on one teacher, at one MACs target and one fine-tune budget.

Each method × seed runs through ``ganprune prune`` (orchestration.prune.prune, under its own seeded,
controlled process state) into ``out/<method>/seed<k>/``; every export is then evaluated by the same
protocol (``gan.metrics.evaluate.evaluate_generator`` on the teacher's test split, the same items for
everyone) and profiled the same way.  The searches score on train items only (``gan.data.splits``).
``random`` and ``evolution`` spend, per seed, as many candidate evaluations as that seed's ``marl`` row; ``marl-greedy``
fine-tunes the final policies' deterministic pick of that marl search.  Outputs:

    out/benchmark.md       per-method mean ± std, paired Δ vs l1 / random (mean ± SE), the budget, every row
    out/benchmark.json     the same as JSON: "rows" (one per method × seed) and "summary" (per method)
    out/pareto.png         generator MACs vs fidelity, mean ± std per method
    out/<method>/seed<k>/  each prune run (prune.json, generator/, ...) and row.json (the row + the settings
                           that made it: ``--resume`` keeps a row only when they, and the code, are the same)

``--jobs N`` runs N rows at a time, each in a worker process of its own (random, evolution and marl-greedy
wait for their seed's marl row); a row's numbers do not depend on it, its wall and CPU times do when the rows
share cores (give each row its own: ``--jobs`` × ``--threads`` ≤ the cores).

MLflow: one run in experiment "benchmark" with the table, the plot and one metric set per method (step =
seed); each method's own prune run stays in experiment "prune" (its run id is in the table's JSON).
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from orchestration.errors import UsageError
from agents.methods import REGISTRY, names
from gan import data as gdata, export as gexport
from gan.data.splits import report_split
from gan.determinism import ProcessSettings, controlled, default_threads
from gan.latency_model import latency_budget
from gan.teacher_run import TeacherRunError, load_teacher_run
from orchestration.rundir import clear_run_dir, write_json
from orchestration.teacher_cache import ensure_teacher
from orchestration.tracking import Tracker, check_reachable, resolve_tracking_uri
from gan.metrics.evaluate import evaluate_generator
from orchestration.config import load_preset
from orchestration.prune import check_align, check_method, latest_search_checkpoint, method_of, prune

EXPERIMENT = "benchmark"
DEFAULT_METHODS = ("marl", "cat", "gan-compression", "ppcd", "uniform", "l1")
#: benchmark-only names: a prune method with one setting changed (the ablations)
VARIANTS = {"marl-beta0": ("marl", {"beta": 0.0}), "marl-beta1": ("marl", {"beta": 1.0})}
#: run first within a seed: random and marl-greedy take their budget and search from these rows
FIRST = ("marl", "marl-beta0", "marl-beta1", "marl-greedy")
#: searches on marl's env that get, per seed, the marl row's number of candidate evaluations
BUDGET_MATCHED = ("random", "evolution")
#: the paired differences the summary reports (method − baseline, per seed)
BASELINES = ("l1", "random")
EVAL_ITEMS = 64
#: fid_proxy_teacher: the teacher's own, beside the student's, on unpaired (CycleGAN) data
METRICS = ("psnr_vs_teacher", "ssim_vs_teacher", "psnr", "ssim", "fid_proxy", "fid_proxy_teacher", "miou")
COST = ("search_evaluations", "search_finetune_steps", "search_cpu_s", "finetune_steps", "cpu_s")
#: summarized too (the plot's x axis)
SIZE = ("macs", "params")


def _placement(method: str, placement):
    """The part of ``placement`` (an ``agents.methods.Placement``) that ``prune --method method`` takes."""
    import dataclasses


    m = method_of(method)
    if m.uses_search_placement:
        return placement
    keep = {"address"} | ({"finetune_workers"} if not m.trains_itself else set())
    return type(placement)(**{k: v for k, v in dataclasses.asdict(placement).items() if k in keep})


def base_method(name: str) -> tuple[str, dict]:
    """(prune method, the search flags it changes) of a benchmark method name."""
    return VARIANTS.get(name, (name, {}))


#: what a row's numbers depend on: the packages' code, the presets and the pinned dependencies
SOURCES = ("gan", "envs", "agents", "orchestration", "configs", "pyproject.toml")


def code_version() -> str:
    """A hash of the code that makes a row (``SOURCES``: every .py/.yaml file and pyproject.toml), with
    the git commit it was taken at when there is one: a resumed benchmark keeps only rows the same
    code made, while a commit that changes docs only keeps them."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for src in SOURCES:
        path = root / src
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".py", ".yaml"))
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"src-{h.hexdigest()[:12]}" + (f" (git {head})" if head else "")


def _same_code(a: str | None, b: str | None) -> bool:
    """Two ``code_version`` strings name the same code (the source hash; the commit is informative)."""
    return bool(a) and bool(b) and a.split(" ")[0] == b.split(" ")[0]


def parse_seeds(seeds) -> list[int]:
    items = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    try:
        out = [int(str(x).strip()) for x in items if str(x).strip()]
    except ValueError:
        raise UsageError(f"--seeds {seeds!r}: give whole numbers separated by commas, e.g. --seeds 0,1,2") from None
    if not out or len(set(out)) != len(out):
        raise UsageError(f"--seeds {seeds!r}: give distinct whole numbers, e.g. --seeds 0,1,2")
    return out


def check_latency_methods(methods) -> None:
    """Every benchmark method (variants by their base) takes a latency budget, else one line naming those
    that budget MACs only."""
    macs_only = [m for m in methods if not method_of(base_method(m)[0]).latency_budget]
    if macs_only:
        takers = [n for n, x in REGISTRY.items() if x.latency_budget]
        raise UsageError(f"--latency-targets: {', '.join(macs_only)} budget MACs only; drop them from --methods "
                         f"(latency budgets: {', '.join(takers)})")


def benchmark(request) -> dict:
    """Run ``request.methods`` × ``request.seeds`` (an ``orchestration.requests.BenchmarkRequest``) on
    one teacher and tabulate them; returns {"rows": [...], "summary": {...}, ...}.  Every method ×
    seed runs through ``prune`` with ``request.row`` as its request (method, seed and run directory
    set; its own seeded, controlled process state: the order of the methods does not change a row).
    ``random`` and ``evolution`` get, per seed, the number of candidates the ``marl`` row scored; ``marl-greedy``
    fine-tunes that marl search's final greedy pick.  The row's placement serves the marl rows whole,
    the others only where they use it."""
    from dataclasses import asdict, replace

    from envs.backends.options import options_dict

    base_row, quiet = request.row, request.quiet
    preset, macs_target, vem = base_row.preset, base_row.macs_target, base_row.finetune.vem
    tracking_uri, track = base_row.tracking_uri, base_row.track
    methods = [m.strip() for m in request.methods if m.strip()]
    seeds = parse_seeds(request.seeds)
    options = request.method_options or {}
    if not isinstance(request.jobs, int) or request.jobs < 1:
        raise UsageError(f"--jobs {request.jobs!r}: give how many rows run at once, 1 or more (e.g. --jobs 2 "
                         "on a 2-core machine with --threads 1)")
    if base_row.teacher and base_row.data:
        raise UsageError(f"--data {base_row.data} picks the preset's cached teacher; --teacher {base_row.teacher} "
                         "brings its own data: drop one")
    if not methods or len(set(methods)) != len(methods):
        raise UsageError(f"--methods {','.join(methods) or '(none)'}: name each method once")
    unknown = [m for m in methods if base_method(m)[0] not in names()]
    if unknown:
        raise UsageError(f"unknown --methods {','.join(unknown)}; available: {', '.join([*names(), *VARIANTS])}")
    latency = base_row.latency()  # a bad latency target is refused before any work
    if latency is not None:
        check_latency_methods(methods)
    objectives = {}
    align = 1
    for m in methods:  # every method × option combination is checked before any work
        base, _ = base_method(m)
        try:
            objectives[m] = check_method(base, None, vem, options.get(m))
            align = check_align(method_of(base), base_row.align)
        except UsageError as e:
            raise UsageError(f"--methods {m}: {e}") from None
    pre = load_preset(preset)
    finetune_steps = base_row.finetune.resolved_steps(pre)
    budget = base_row.search.resolve(pre)
    search = {"iterations": budget.iterations, "episodes": budget.episodes, "backend_steps": budget.backend_steps}
    #: the search backend and its resolved options: part of a search row's settings (--resume keys)
    backend = {"backend": budget.backend, "backend_options": options_dict(budget.backend_options)}
    local = {"backend": "local", "backend_options": {}}  # the rows of methods without a search backend
    if track:
        check_reachable(resolve_tracking_uri(tracking_uri))
    out = Path(request.out)
    resume, overwrite = request.resume, request.overwrite
    if not resume and not overwrite and out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; pass --resume to keep its finished rows, --overwrite to "
                         "start again, or choose another --out")
    command = "ganprune benchmark " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "benchmark" else None

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    teacher = base_row.teacher
    tdir = Path(teacher).resolve() if teacher else ensure_teacher(preset, base_row.data, steps=request.teacher_steps,
                                                                  quiet=quiet, tracking_uri=tracking_uri)
    run = load_teacher_run(tdir)  # a bad --teacher is refused before --overwrite empties --out
    for m in methods:  # and a generator class a method cannot prune, before any row runs
        try:
            taker = method_of(base_method(m)[0])
            taker.check_teacher(run, REGISTRY, taker.options(options.get(m)))
        except TeacherRunError as e:
            raise UsageError(f"--methods {m}: {e}") from None
    if latency is not None:  # reachable? (measures the latency model once, before rows share the cores)
        latency_budget(run.generator, latency, run.size, quiet=quiet)
    elif any(method_of(base_method(m)[0]).models_latency for m in methods):  # fastest: the same, for its model
        base_row.deployment().latency_model(run.generator, run.size, quiet)
    if not resume:  # --overwrite: the old results go only now that the teacher is good
        clear_run_dir(out, overwrite, None, inputs=(tdir,))
    out.mkdir(parents=True, exist_ok=True)
    version = code_version()
    tracker = Tracker(EXPERIMENT, run_name=f"{Path(preset).stem}-{macs_target:g}", tracking_uri=tracking_uri,
                      enabled=track, tags={"ganprune.command": "benchmark", "ganprune.out_dir": str(out.resolve())})
    tracker.start()
    status = "FAILED"
    try:
        tracker.log_params({"preset": preset, "methods": ",".join(methods), "macs_target": macs_target,
                            "finetune_steps": finetune_steps, "vem": vem, "teacher": str(tdir),
                            "seeds": ",".join(map(str, seeds)), "code_version": version, **search, **backend})
        order = [m for m in FIRST if m in methods] + [m for m in methods if m not in FIRST]
        pending = [(m, seed) for seed in seeds for m in order]
        done: dict[tuple[str, int], dict] = {}
        total = len(pending)
        jobs, threads = request.jobs, row_threads(base_row.threads, request.jobs)

        def ready(key) -> bool:  # random and marl-greedy take their budget and search from marl's row
            m, seed = key
            return m not in (*BUDGET_MATCHED, "marl-greedy") or "marl" not in methods or ("marl", seed) in done

        def start(key):
            """(settings, the row's request), or None when --resume keeps its earlier row."""
            m, seed = key
            base, extra = base_method(m)
            i = order.index(m) + len(order) * seeds.index(seed) + 1
            kw = {}
            marl_row = done.get(("marl", seed))
            if m in BUDGET_MATCHED:
                kw["evaluations"] = marl_row["search_evaluations"] if marl_row else \
                    search["iterations"] * (search["episodes"] + 1)
            if m == "marl-greedy" and marl_row:
                kw["search_from"] = marl_row["out"]
            settings = {"method": m, "seed": seed, "teacher": str(tdir), "macs_target": macs_target,
                        **({"latency": asdict(latency)} if latency is not None else {}),
                        **({"align": align} if align > 1 else {}),
                        "finetune_steps": finetune_steps, "finetune_backend": base_row.finetune.backend,
                        "vem": vem, "objective": objectives[m], "options": options.get(m) or {},
                        "evaluations": kw.get("evaluations"), "threads": threads, "code_version": version,
                        **({**search, **backend} if method_of(base).uses_search_settings else {}), **extra}
            run_dir = out / m / f"seed{seed}"
            saved = run_dir / "row.json"
            if resume and saved.is_file():  # a resumed benchmark keeps rows made alike
                prev = json.loads(saved.read_text())
                then = prev.get("settings", {})
                differ = sorted(k for k in set(settings) | set(then) if k != "code_version"
                                and then.get(k) != settings.get(k))
                if not _same_code(then.get("code_version"), version):
                    differ.append("code_version")
                if not differ:
                    say(f"[{i}/{total}] {m} seed {seed}: finished before with the same settings, kept")
                    done[key] = prev["row"]
                    return None
                say(f"[{i}/{total}] {m} seed {seed}: earlier run differs in {', '.join(differ)}; running again")
            started = out / m / f"seed{seed}.started.json"
            go_on = resume and not saved.is_file() and _resumable(started, settings, run_dir)
            say(f"[{i}/{total}] {m} seed {seed}" + (": resuming its unfinished run" if go_on else
                                                   " started" if jobs > 1 else ""))
            started.parent.mkdir(parents=True, exist_ok=True)
            write_json(started, settings)
            row_request = replace(base_row, method=base, teacher=str(tdir), out=str(run_dir), seed=seed,
                                  threads=threads, options=options.get(m) or {}, quiet=True, overwrite=not go_on,
                                  resume=go_on, search=replace(base_row.search, **search, **extra, **kw,
                                                               **({} if method_of(base).uses_search_settings
                                                                  else local)),
                                  finetune=replace(base_row.finetune, steps=finetune_steps),
                                  placement=_placement(base, base_row.placement))
            return settings, row_request

        def finish(key, settings, row):
            m, seed = key
            done[key] = row
            write_json(out / m / f"seed{seed}" / "row.json", {"settings": settings, "row": row})
            tracker.log_metrics({f"{m}.{k}": v for k, v in row.items() if isinstance(v, (int, float))
                                 and not isinstance(v, bool)}, step=seed)
            say(f"    {m} seed {seed}: {row['macs'] / 1e6:.2f} M MACs ({row['macs_ratio']:.1%}), PSNR vs teacher "
                f"{row['psnr_vs_teacher']:.2f} dB ({row['split']}), {row['search_evaluations']} evaluations, "
                f"search {row['search_s']:.0f} s, fine-tune {row['finetune_s']:.0f} s")

        _run_rows(pending, ready, start, finish, jobs, tdir)
        rows = [done[(m, seed)] for m in methods for seed in seeds]
        _measure_latency(rows, tdir)
        result = {"preset": preset, "teacher": str(tdir), "macs_target": macs_target, "seeds": seeds,
                  "latency_target": asdict(latency) if latency is not None else None,
                  "finetune_steps": finetune_steps, "vem": vem, "eval_items": EVAL_ITEMS, **search, **backend,
                  "code_version": version, "command": command, "rows": rows, "summary": summarize(rows),
                  "mlflow_run_id": tracker.run_id, "out": str(out)}
        write_json(out / "benchmark.json", result)
        (out / "benchmark.md").write_text(markdown(result))
        pareto_plot(result["summary"], out / "pareto.png", rows)
        for f in ("benchmark.json", "benchmark.md", "pareto.png"):
            tracker.log_artifact(out / f)
        status = "FINISHED"
        say("\n" + markdown(result))
        return result
    finally:
        tracker.end(status)


def _resumable(started: Path, settings: dict, run_dir: Path) -> bool:
    """An unfinished row (killed, or the session ended) goes on from its run's checkpoints (``prune
    --resume``) when it was started with these settings by this code and its search left a checkpoint;
    any other unfinished row starts again."""
    if not started.is_file():
        return False
    then = json.loads(started.read_text())
    same = {k: v for k, v in then.items() if k != "code_version"} == \
        {k: v for k, v in settings.items() if k != "code_version"}
    return same and _same_code(then.get("code_version"), settings["code_version"]) and \
        latest_search_checkpoint(run_dir) is not None


def row_threads(threads: int | None, jobs: int) -> int | None:
    """Torch threads of each row: ``--threads``, else the default when rows run one at a time, else the
    default shared out among the ``jobs`` rows running at once (no row waits for a busy core)."""
    return threads or (None if jobs == 1 else max(1, default_threads() // jobs))


def run_row(method: str, row_request, tdir: str) -> dict:
    """One benchmark row: ``prune`` the row's request, then evaluate its export the benchmark's way."""
    t0 = time.perf_counter()
    s = prune(row_request)
    return _row(method, s, Path(tdir), time.perf_counter() - t0, row_request.threads)


def _run_rows(pending: list, ready, start, finish, jobs: int, tdir: Path, run=run_row) -> None:
    """Run the rows ``pending`` names, in order, each once ``ready(key)``: ``start(key)`` gives (settings,
    request) or None (a kept row), ``finish(key, settings, row)`` records a row.  ``jobs`` 1: one at a time
    in this process; more: ``jobs`` worker processes (spawned, so nothing of this one's state goes with
    them; a worker runs rows one after another as this process would, each under its own seeded,
    controlled settings, so a row does not depend on which worker ran it or what ran before; ``run``, a
    module-level function, makes the row).  A failed
    row stops new starts; the rows already running finish and are saved (``--resume`` keeps them), then
    its error is raised."""
    pending = list(pending)
    if jobs == 1:
        while pending:
            key = next(k for k in pending if ready(k))
            pending.remove(key)
            started = start(key)
            if started:
                finish(key, started[0], run(key[0], started[1], str(tdir)))
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    running, error = {}, None
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        while running or (pending and error is None):
            while error is None and len(running) < jobs:
                key = next((k for k in pending if ready(k)), None)
                if key is None:
                    break
                pending.remove(key)
                started = start(key)
                if started:
                    running[pool.submit(run, key[0], started[1], str(tdir))] = (key, started[0])
            if not running:
                if pending and error is None and not any(ready(k) for k in pending):
                    raise RuntimeError(f"benchmark rows wait on rows that never run: {pending}")
                continue  # every row started was kept: look for the next ready ones
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                key, settings = running.pop(f)
                try:
                    row = f.result()
                except Exception as e:  # noqa: BLE001 - raised below, once the running rows are saved
                    e.add_note(f"benchmark row: {key[0]} seed {key[1]}")
                    error = error or e
                    continue
                finish(key, settings, row)
    if error is not None:
        raise error


def mean_std_se(xs: list[float]) -> dict:
    """n, mean, sample std and standard error of the mean (NaN spreads for one value): the protocol's
    "mean ± SE" (docs/methods.md, "Evaluation protocol"); the benchmarks/ scripts use it too."""
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "std": std, "se": std / math.sqrt(n) if n > 1 else float("nan")}


def summarize(rows: list[dict], baselines=BASELINES) -> dict:
    """Per method: mean ± std over seeds of each metric and cost; and the paired difference to each of
    ``baselines`` (method − baseline, same seed) as mean ± standard error over the seeds both have."""
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["seed"]] = r
    out = {}
    for m, per_seed in by.items():
        stats = {k: mean_std_se([r[k] for r in per_seed.values()])
                 for k in (*METRICS, *COST, *SIZE) if all(k in r and r[k] is not None for r in per_seed.values())}
        diffs = {}
        for b in baselines:
            if b == m or b not in by:
                continue
            common = sorted(set(per_seed) & set(by[b]))
            if common:
                diffs[b] = mean_std_se([per_seed[s]["psnr_vs_teacher"] - by[b][s]["psnr_vs_teacher"] for s in common])
        out[m] = {"seeds": sorted(per_seed), **stats, "psnr_vs_teacher_minus": diffs}
    return out


def _row(method: str, s: dict, tdir: Path, wall_s: float, threads: int | None = None) -> dict:
    """One table row: the export evaluated on the report split (test; the same items for every method,
    under the row's seed and the run's process settings), with the search's cost."""
    run, root, split, test = _report_items(tdir)
    model = gexport.load(Path(s["out"]) / "generator").eval()
    with controlled(s["seed"], ProcessSettings.default(threads)):
        fid = evaluate_generator(model, test, teacher=run.generator.eval(), dataset_root=root, max_items=EVAL_ITEMS)
    return {"method": method, "seed": s["seed"], "split": split, "macs": s["macs"], "macs_ratio": s["macs_ratio"],
            "target_macs": s["target_macs"], **({"latency_budget": s["latency_budget"]} if s.get("latency_budget") else {}),
            **({"align": s["align"]["block"]} if s.get("align") else {}),
            "params": s["params"], "latency_ms": s["latency_ms"], "teacher_latency_ms": s["teacher_latency_ms"],
            **{k: float(fid[k]) for k in METRICS if k in fid},
            **{k: s[k] for k in COST}, "backend_steps": s.get("backend_steps"),
            "search_s": float(s["search_s"]), "finetune_s": float(s["finetune_s"]), "wall_s": round(wall_s, 1),
            "objective": s.get("objective"), "search_backend": (s.get("search_backend") or {}).get("name"),
            "supernet_cached": (s.get("supernet") or {}).get("cached"),
            "resumed": bool(s.get("resumed")), "attempts": s.get("attempts", 1),  # cpu_s: every attempt's
            "prune_run_id": s.get("mlflow_run_id"), "out": s["out"]}


def _report_items(tdir: Path):
    """The teacher run, its dataset root, the report split's name and that split's items."""
    run = load_teacher_run(tdir)
    root = gdata.resolve_dataset(run.data, size=run.size)
    split = report_split(root)
    return run, root, split, gdata.open_dataset(root, size=run.size, split=split)


def teacher_fidelity(tdir: Path, threads: int | None = None) -> dict:
    """The teacher's own fidelity on the items every row is scored on (mIoU, and vs ground truth where the
    set is paired): where a pruned model's mIoU stands against the teacher's."""
    run, root, _, test = _report_items(tdir)
    with controlled(0, ProcessSettings.default(threads)):
        fid = evaluate_generator(run.generator.eval(), test, dataset_root=root, max_items=EVAL_ITEMS)
    return {k: float(fid[k]) for k in ("miou", "psnr", "ssim", "fid_proxy") if k in fid}


def _measure_latency(rows: list[dict], tdir: Path, runs: int = 50) -> None:
    """CPU latency of every export and the teacher, measured back to back in this process once all
    methods have finished (the runs themselves may have shared the CPU with other work)."""
    run = load_teacher_run(tdir)
    teacher_ms = gexport.profile_export(tdir / run.meta["generator"], size=run.size, runs=runs)
    for r in rows:
        prof = gexport.profile_export(Path(r["out"]) / "generator", size=run.size, runs=runs)
        r["latency_ms"] = prof["torch_latency"]["median_ms"]
        r["onnx_latency_ms"] = (prof["onnx_latency"] or {}).get("median_ms")
        r["teacher_latency_ms"] = teacher_ms["torch_latency"]["median_ms"]
        r["speedup"] = r["teacher_latency_ms"] / r["latency_ms"]


def _pm(st: dict | None, digits: int = 2, key: str = "std") -> str:
    if not st:
        return "—"
    if st["n"] < 2:
        return f"{st['mean']:.{digits}f}"
    return f"{st['mean']:.{digits}f} ± {st[key]:.{digits}f}"


def markdown(result: dict) -> str:
    """The benchmark as markdown: per method mean ± std over seeds with the paired differences to l1 and
    random (mean ± standard error), the search budget, then one row per method × seed, and the command."""
    rows, summary = result["rows"], result.get("summary") or summarize(result["rows"])
    split = rows[0].get("split", "test")
    seeds = result.get("seeds", sorted({r["seed"] for r in rows}))
    metrics = [k for k in METRICS if any(k in r for r in rows)]
    lt = result.get("latency_target")
    budget = (f"latency target {lt['value']:g} ({lt['runtime']}, {lt.get('threads') or 'default'} threads, {lt.get('size') or 'teacher'}²"
              f" predicted)" if lt else f"MACs target {result['macs_target']:g}")
    lines = [f"Preset {result['preset']}, {budget}, fine-tune "
             f"{result['finetune_steps']} steps per method{' + VEM' if result.get('vem') else ''}; seeds "
             f"{', '.join(map(str, seeds))}; metrics on the first {result['eval_items']} {split} items; searches "
             f"score on train items only; MARL/random: {result.get('iterations')} iterations × "
             f"{result.get('episodes')} episodes, {result.get('backend', 'local')} backend, "
             f"{result.get('backend_steps')} backend fine-tune steps per "
             f"candidate; CPU latency at batch 1, teacher {rows[0].get('teacher_latency_ms', float('nan')):.2f} ms"
             + (f"; G widths aligned to {rows[0]['align']}-channel blocks (--align)" if rows[0].get("align") else "")
             + ".",
             "", "Per method (mean ± std over seeds; Δ = paired difference per seed, mean ± standard error):", ""]
    unpaired = "fid_proxy_teacher" in metrics  # a CycleGAN teacher: FID-proxy vs real B, the teacher's beside
    teacher_fid = rows[0].get("fid_proxy_teacher", float("nan"))
    head = ["method", "seeds", "PSNR vs teacher (dB)", "Δ vs l1", "Δ vs random", "SSIM vs teacher",
            *(["mIoU"] if "miou" in metrics else []),
            *([f"fid_proxy vs real B (teacher {teacher_fid:.2f})"] if unpaired else []), "search evaluations",
            "search fine-tune steps", "search CPU s", "total CPU s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, st in summary.items():
        d = st.get("psnr_vs_teacher_minus", {})
        cells = [m, str(len(st["seeds"])), _pm(st.get("psnr_vs_teacher")),
                 _pm(d.get("l1"), key="se"), _pm(d.get("random"), key="se"),
                 _pm(st.get("ssim_vs_teacher"), 3), *([_pm(st.get("miou"), 1)] if "miou" in metrics else []),
                 *([_pm(st.get("fid_proxy"))] if unpaired else []), _pm(st.get("search_evaluations"), 0),
                 _pm(st.get("search_finetune_steps"), 0),
                 _pm(st.get("search_cpu_s"), 0), _pm(st.get("cpu_s"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    head = ["method", "seed", "G MACs", "params", "CPU ms (speed-up)", *metrics, "evaluations", "search s",
            "fine-tune s", "objective"]
    lines += ["", "Every row:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], str(r.get("seed", "")), f"{r['macs'] / 1e6:.2f} M ({r['macs_ratio']:.1%})",
                 f"{r['params'] / 1e3:.1f} k", f"{r['latency_ms']:.2f} (×{r.get('speedup', float('nan')):.2f})",
                 *(f"{r[k]:.3f}" if k in r else "—" for k in metrics), str(r.get("search_evaluations", "—")),
                 f"{r['search_s']:.0f}", f"{r['finetune_s']:.0f}", str(r.get("objective") or "—")]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    if result.get("code_version"):
        lines += ["", f"Code: `{result['code_version']}`"]
    return "\n".join(lines) + "\n"


def pareto_plot(summary: dict, path: Path, rows: list[dict] | None = None) -> Path:
    """Left: PSNR to the teacher per method, one dot per seed (same seed, same colour: the comparison
    is paired) and the mean ± std.  Right: generator MACs (x) vs PSNR (y), mean ± std per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m, st in summary.items() if "psnr_vs_teacher" in st]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    seeds = sorted({r["seed"] for r in rows or []})
    for k, seed in enumerate(seeds):
        ys = {r["method"]: r["psnr_vs_teacher"] for r in rows if r["seed"] == seed}
        xs = [i + 0.08 * (k - (len(seeds) - 1) / 2) for i, m in enumerate(methods) if m in ys]
        ax.plot(xs, [ys[m] for m in methods if m in ys], "o", ms=4, alpha=0.8, label=f"seed {seed}")
    for i, m in enumerate(methods):
        st = summary[m]["psnr_vs_teacher"]
        err = st["std"] if st["n"] > 1 else 0.0
        ax.errorbar(i + 0.3, st["mean"], yerr=err, fmt="s", color="black", capsize=3, ms=5)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("PSNR vs teacher (dB, test split)")
    ax.set_title("per seed (dots) and mean ± std (black)")
    ax.grid(alpha=0.3)
    if seeds:
        ax.legend(fontsize=7)
    for m in methods:
        st = summary[m]
        if "macs" not in st:
            continue
        x, y = st["macs"]["mean"] / 1e6, st["psnr_vs_teacher"]["mean"]
        err = st["psnr_vs_teacher"]["std"] if st["psnr_vs_teacher"]["n"] > 1 else None
        bx.errorbar(x, y, yerr=err, fmt="o", capsize=3)
        bx.annotate(m, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    bx.set_xlabel("generator MACs (M)")
    bx.set_title("fidelity vs cost (higher-left is better)")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
