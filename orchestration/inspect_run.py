"""``ganprune inspect``: what each agent decided in a pruning run, and how the search went.

Reads the run directory (or finds it from an MLflow run id through the ``ganprune.out_dir`` tag),
loads each policy from the newest checkpoint with ``RLModule.from_checkpoint`` and replays one
episode with their deterministic actions, next to the best pair the search kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestration.errors import UsageError
from orchestration.report import print_table
from orchestration.tracking import check_reachable, resolve_tracking_uri


def resolve_run_dir(run: str, tracking_uri: str | None = None) -> Path:
    p = Path(run)
    if p.is_dir():
        return p
    if p.exists() or "/" in run or len(run) != 32:
        raise UsageError(f"{run} is neither a prune run directory nor an MLflow run id; pass the --out of "
                         "'ganprune prune' or the run id shown in MLflow")

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    import mlflow

    try:
        tags = mlflow.MlflowClient(tracking_uri=uri).get_run(run).data.tags
    except Exception as e:  # noqa: BLE001 - MLflow raises its own types for unknown ids
        raise UsageError(f"MLflow run {run} not found in {uri} ({type(e).__name__}); check --tracking-uri") from e
    out = tags.get("ganprune.out_dir")
    if not out or not Path(out).is_dir():
        raise UsageError(f"MLflow run {run} has no readable run directory (tag ganprune.out_dir = {out!r})")
    return Path(out)


def load_policies(checkpoint: Path) -> dict:
    """Each agent's RLModule from an algorithm checkpoint."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from agents.marl import AGENTS

    return {a: RLModule.from_checkpoint(str(checkpoint.resolve() / "learner_group" / "learner" / "rl_module" / a))
            for a in AGENTS}


def inspect_run(run: str, tracking_uri: str | None = None, quiet: bool = False, replay: bool = True) -> dict:
    from agents.marl import AGENTS, checkpoints, greedy_episode
    from envs.multi_agent import MultiAgentPruningEnv

    d = resolve_run_dir(run, tracking_uri)
    ckpts = checkpoints(d)
    summary = json.loads((d / "prune.json").read_text()) if (d / "prune.json").is_file() else {}
    if not ckpts and summary.get("search_from"):  # marl-greedy that reused a finished marl search
        ckpts = checkpoints(Path(summary["search_from"]))
    if not ckpts:
        if summary.get("method"):
            raise UsageError(f"{d} is a '{summary['method']}' run: it has no agents to inspect; its pick is in "
                             f"{d / 'best_spec.json'} and its numbers in {d / 'prune.json'}")
        raise UsageError(f"{d} has no search checkpoint (checkpoints/iter_N/); is it a 'ganprune prune' run?")
    state = json.loads((ckpts[-1] / "search_state.json").read_text())
    best, history = state["best"], state["history"]
    result = {"run": str(d), "checkpoint": str(ckpts[-1]), "iterations": state["iteration"],
              "best": {a: best[f"{a}_counts"] for a in AGENTS},
              "best_scores": best["own"], "best_iteration": best.get("iteration")}
    policy = None
    if replay:
        env = MultiAgentPruningEnv({**state["problem"], "beta": state["config"]["beta"],
                                    "peer_observation": state["config"]["peer_observation"]})
        policy = greedy_episode(env, load_policies(ckpts[-1]))
        result["policy"] = {a: policy[f"{a}_counts"] for a in AGENTS}
        result["policy_scores"] = policy["own"]
    if summary:
        result["summary"] = {k: summary.get(k) for k in ("macs", "macs_ratio", "params", "latency_ms",
                                                         "teacher_latency_ms", "fidelity", "search_from")}
    result["plots"] = [str(p) for p in (d / "keep_ratios.png", d / "gd_balance.png") if p.is_file()]
    if quiet:
        return result
    for a in AGENTS:
        ratios = best[f"{a}_ratios"]
        sizes = {n: f"{c / ratios[n]:.0f}" if ratios[n] else "?" for n, c in best[f"{a}_counts"].items()}
        rows = []
        for n, c in best[f"{a}_counts"].items():
            row = {"group": n, "width": sizes[n], "best pair keeps": f"{c} ({best[f'{a}_ratios'][n]:.0%})"}
            if policy is not None:
                pc = policy[f"{a}_counts"][n]
                row["policy keeps"] = f"{pc} ({policy[f'{a}_ratios'][n]:.0%})"
            rows.append(row)
        cols = ["group", "width", "best pair keeps"] + (["policy keeps"] if policy else [])
        print_table(f"{a} agent: MACs {best[f'{a}_macs_ratio']:.1%} of the teacher's in the best pair"
                    + (f", {policy[f'{a}_macs_ratio']:.1%} by the policy" if policy else ""), rows, cols)
    rows = [{"iteration": h["iteration"], "G return": f"{h['generator_return']:.3f}",
             "D return": f"{h['discriminator_return']:.3f}", "G own": f"{h['generator_own']:.3f}",
             "D own": f"{h['discriminator_own']:.4f}", "best G own": f"{h['best_generator_own']:.3f}",
             "PSNR vs T": f"{h['psnr_vs_teacher']:.2f}", "G/D balance": f"{h['gd_balance_ratio']:.3f}"}
            for h in history]
    print_table("reward curves (own = agent's score; return = own + β·peer)", rows, list(rows[0]) if rows else [])
    for p in result["plots"]:
        print(f"plot: {p}")
    return result
