"""PPCD: no separate search; a masked twin of the teacher trains for the fine-tune budget while a
progressive schedule shrinks it to the target, then the dense export is the result
(docs/methods.md, "PPCD")."""
from __future__ import annotations

import dataclasses
import shutil

from agents.baselines.ppcd import KINDS, PPCDConfig
from agents.methods.base import Found, Method, SearchContext, SearchRequest
from agents.baselines.ppcd import ppcd


class Ppcd(Method):
    name = "ppcd"
    objective = None  # its own attention distillation
    Options = PPCDConfig
    kinds = KINDS
    #: ``gan.models.ppcd.from_teacher`` builds masked twins of these two only (docs/methods.md, "PPCD")
    generators = ("ResnetGenerator", "ConditionalGenerator")
    trains_itself = True
    latency_budget = True  # the progressive schedule's cuts are checked against predicted latency as on MACs

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        train_dir = request.out / "ppcd"
        if train_dir.exists():
            shutil.rmtree(train_dir)
        cfg = dataclasses.replace(request.options, onnx=request.export_onnx and request.options.onnx)
        res = ppcd(request.run, request.macs_target, train_dir, steps=request.finetune_steps, seed=request.seed,
                   backend=request.finetune_backend, quiet=request.quiet, config=cfg, latency=request.latency_target)
        ctx.log_params({"target_macs": res["target_macs"], "teacher_macs": res["full_macs"], "ppcd": res["config"]})
        for rec in res.get("sparsity_history", []):  # the progressive schedule, for the MLflow curve
            ctx.log_metrics({k: rec[k] for k in ("sparsity", "target_sparsity", "macs")}, step=rec["step"])
        return Found(generator=None, discriminator=None, target_macs=res["target_macs"],
                     teacher_macs=res["full_macs"], trained=train_dir, finetune_s=res["train_s"],
                     generator_keep={k: len(v) for k, v in res["spec"].items()},
                     extra={"final_sparsity": res["final_sparsity"], "kind": res["kind"]})
