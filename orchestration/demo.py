"""``make demo``: the embedded default, end to end — the whole product at preset tiny.

1. train (or reuse the cached) tiny teacher on the preset's built-in dataset;
2. MARL-prune it: two PPO agents choose G's and D's per-group widths for the MACs target;
3. fine-tune the best pair with L1 distillation (the default objective); export the pruned generator;
4. evaluate teacher and pruned generator on the test split; print one table and the MLflow command.

Layout of ``out``: ``marl/`` (the prune run: see orchestration/prune.py), ``teacher/`` and ``pruned/``
(the two generator exports side by side), ``spec.json`` (the pair that was fine-tuned), ``demo.json``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from orchestration.config import load_preset
from gan.latency_model import measure_architecture
from gan.profile import model_macs
from gan import data as gdata, export as gexport
from gan.teacher_run import load_teacher_run
from orchestration.prune import print_summary, prune
from orchestration.report import print_table
from orchestration.requests import FinetuneFlags, PruneRequest, SearchFlags
from orchestration.teacher_cache import ensure_teacher
from orchestration.tracking import resolve_tracking_uri
from gan.metrics.evaluate import evaluate_generator


#: the size the demo also times teacher and pruned generator at (the reference pix2pix/CycleGAN crop)
DEPLOY_SIZE = 256


def run_demo(out: Path, macs_target: float = 0.25, preset: str = "tiny", quiet: bool = False,
             teacher: str | None = None, teacher_steps: int | None = None, iterations: int | None = None,
             episodes: int | None = None, finetune_steps: int | None = None, tracking_uri: str | None = None) -> dict:
    def say(msg):
        if not quiet:
            print(msg, flush=True)

    out = Path(out)
    cfg = load_preset(preset)
    say(f"[1/4] teacher: preset {preset} on {cfg.dataset}")
    tdir = Path(teacher) if teacher else ensure_teacher(preset, steps=teacher_steps, quiet=quiet,
                                                        tracking_uri=tracking_uri)
    if out.exists():  # the demo owns its folder: a re-run replaces the previous demo
        shutil.rmtree(out)
    say(f"[2/4] MARL pruning to {macs_target:g} of the teacher's MACs, then fine-tuning (L1 distillation)")
    s = prune(PruneRequest(method="marl", teacher=str(tdir), preset=preset, macs_target=macs_target,
                           out=str(out / "marl"), search=SearchFlags(iterations=iterations, episodes=episodes),
                           finetune=FinetuneFlags(steps=finetune_steps), quiet=quiet, tracking_uri=tracking_uri))
    run = load_teacher_run(tdir)
    shutil.copytree(tdir / run.meta["generator"], out / "teacher")
    shutil.copytree(out / "marl" / "generator", out / "pruned")
    shutil.copy(out / "marl" / "best_spec.json", out / "spec.json")

    say("[3/4] evaluating teacher and pruned generator on the test split")
    root = gdata.resolve_dataset(run.data, size=run.size)
    test = gdata.open_dataset(root, size=run.size, split="test")
    t_model, p_model = run.generator.eval(), gexport.load(out / "pruned").eval()
    fid_t = evaluate_generator(t_model, test, dataset_root=root, max_items=64)
    fid_p = evaluate_generator(p_model, test, teacher=t_model, dataset_root=root, max_items=64)
    keys = [k for k in ("psnr", "ssim", "fid_proxy", "miou", "psnr_vs_teacher") if k in fid_p]
    # 64² layers are overhead-bound: the speed a 4× MACs cut buys shows at the size people deploy at
    deploy = {name: measure_architecture(m.architecture(), DEPLOY_SIZE, "onnxruntime")
              for name, m in (("teacher", t_model), ("pruned", p_model))}
    result = {"out": str(out), "teacher_dir": str(tdir), "target_macs": s["target_macs"], "macs": s["macs"],
              "macs_ratio": s["macs_ratio"], "params": s["params"], "teacher_params": s["teacher_params"],
              "latency_ms": s["latency_ms"], "teacher_latency_ms": s["teacher_latency_ms"],
              "teacher_fidelity": {k: fid_t[k] for k in keys if k in fid_t},
              "pruned_fidelity": {k: fid_p[k] for k in keys}, "mlflow_run_id": s["mlflow_run_id"],
              "search_s": s["search_s"], "finetune_s": s["finetune_s"],
              "deploy_latency": {"size": DEPLOY_SIZE, "runtime": "onnxruntime", "threads": torch.get_num_threads(),
                                 "teacher_ms": deploy["teacher"], "pruned_ms": deploy["pruned"],
                                 "speedup": deploy["teacher"] / deploy["pruned"],
                                 "macs_ratio": model_macs(t_model, DEPLOY_SIZE) / model_macs(p_model, DEPLOY_SIZE)}}
    (out / "demo.json").write_text(json.dumps(result, indent=1, default=float))
    if not quiet:
        say("[4/4] summary")
        print_summary(s)
        print_table(f"fidelity on the {Path(str(run.data)).name} test split (first 64 items)",
                    [{"metric": k, "teacher": f"{fid_t[k]:.3f}" if k in fid_t else "—",
                      "pruned": f"{fid_p[k]:.3f}"} for k in keys], ["metric", "teacher", "pruned"])
        d = result["deploy_latency"]
        print(f"at {DEPLOY_SIZE}² (a deployment size) in ONNX Runtime, {d['threads']} threads: teacher "
              f"{d['teacher_ms']:.2f} ms, pruned {d['pruned_ms']:.2f} ms (×{d['speedup']:.2f} for ×{d['macs_ratio']:.2f} "
              f"fewer MACs)")
        uri = resolve_tracking_uri(tracking_uri)
        print(f"MLflow: ganprune ui --tracking-uri {uri}   (run {s['mlflow_run_id']}, experiment 'prune')")
        print(f"agents' decisions: ganprune inspect {out / 'marl'}")
    return result
