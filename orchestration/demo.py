"""``make demo``: the embedded default, end to end on the built-in dataset.

For now (foundation): prepare the preset's built-in dataset, build a tiny ResNet generator, prune it physically to a
MACs target with L1 saliency and one uniform keep ratio, export both, print MACs / params /
measured CPU latency before and after.  Later issues replace the uniform step with MARL pruning.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from gan import data as gdata
from gan import export as gexport
from gan.models import ResnetGenerator
from gan.pruning.physical import prune
from gan.pruning.targets import resolve_macs_target, spec_macs, uniform_spec
from orchestration.config import load_preset


def run_demo(out: Path, macs_target: float = 0.25, preset: str = "tiny", quiet: bool = False) -> dict:
    from orchestration.commands import print_profile

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    cfg = load_preset(preset)
    size, g = cfg.resolution, cfg.generator
    torch.manual_seed(0)
    path = gdata.prepare(cfg.dataset, size=size)
    ds = gdata.open_dataset(path, size=size, split="test")
    say(f"[1/4] dataset {cfg.dataset} ready at {path} ({len(ds)} test pairs)")

    teacher = ResnetGenerator(ngf=g.ngf, n_blocks=g.n_blocks, norm=g.norm).eval()
    target = resolve_macs_target(teacher, macs_target, size)
    spec, ratio = uniform_spec(teacher, target, size, criterion="l1")
    pruned = prune(teacher, spec).eval()
    say(f"[2/4] pruned ResNet generator (ngf {g.ngf}, {g.n_blocks} blocks) with keep ratio {ratio:.3f}: "
        f"{spec_macs(teacher, spec, size) / 1e6:.2f} M MACs ≤ target {target / 1e6:.2f} M")

    batch = [ds[i] for i in range(min(4, len(ds)))]
    x = torch.stack([b["A"] for b in batch])
    with torch.no_grad():
        samples = [x, teacher(x), pruned(x)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps({"spec": spec, "keep_ratio": ratio}, indent=1))
    gexport.save(teacher, out / "teacher", size=size, samples=samples)
    gexport.save(pruned, out / "pruned", size=size, samples=samples,
                 source={"teacher": str(out / "teacher"), "spec": str(out / "spec.json")})
    say(f"[3/4] exported teacher and pruned generator to {out}")

    before = gexport.profile_export(out / "teacher", size=size, runs=30)
    after = gexport.profile_export(out / "pruned", size=size, runs=30)
    reloaded = gexport.load(out / "pruned")
    with torch.no_grad():
        same = torch.equal(reloaded.eval()(x), samples[2])
    say(f"[4/4] measured at {size}² on {before['torch_latency']['threads']} CPU threads "
        f"(median of 30 runs); reloaded export identical: {same}")
    if not quiet:
        print_profile([("teacher", before), ("pruned", after)], baseline=before)
    return {"out": str(out), "target_macs": target, "keep_ratio": ratio, "teacher": before,
            "pruned": after, "reload_identical": same}
