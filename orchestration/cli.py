"""The ``ganprune`` command line (contract in docs/architecture.md).

Every command: ``--help`` with examples; ``--json`` makes the last stdout line one JSON object;
exit 0 on success, 2 on bad input (one line, no traceback), 1 on an internal failure.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from orchestration import commands
from orchestration.errors import UsageError, input_error_types

class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``ganprune prune: error: …; see ganprune prune --help``),
    exit 2, like every other bad input, instead of a usage block before the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _num_procs(sp) -> None:
    sp.add_argument("--num-procs", type=int, default=1, metavar="N",
                    help="train in N local processes (torchrun; DeepSpeed backend; default 1: in-process)")


def _threads(sp) -> None:
    sp.add_argument("--threads", type=int, metavar="N",
                    help="torch threads for this run (default $OMP_NUM_THREADS, else torch's own count); recorded "
                    "with the run, as are the other process settings (gan/determinism.py)")


def _align_value(text: str):
    from gan.pruning.align import resolve_block  # the one check of --align (a request file's too)

    try:
        resolve_block(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give auto or a channel multiple ≥ 1 (e.g. 16)") from None
    return text if text == "auto" else int(text)


def _align_flag(sp) -> None:
    sp.add_argument("--align", type=_align_value, default=1, metavar="auto|N",
                    help="round the found generator's widths per group to multiples of N channels within the same "
                    "budget (auto: this CPU's kernel block, 16 with AVX-512, 8 with AVX2; default 1: no rounding); "
                    "aligned widths run faster per MAC in ONNX Runtime (docs/latency.md)")


def _backend_flags(sp, dest: str, *names: str) -> None:
    """The search backend of marl, marl-greedy, random and evolution (``--backend`` on prune, ``--search-backend`` on
    benchmark, where ``--finetune-backend`` is the trainer's) and its typed options."""
    sp.add_argument(*names, dest=dest, choices=["local", "supernet"],
                    default="local",
                    help="what the search scores a candidate with (marl, marl-greedy, random, evolution): local (default: "
                    "weight inheritance + --backend-steps fine-tune steps) or supernet (a once-for-all supernet "
                    "trained once per teacher and settings, or reused from $GANPRUNE_CACHE; a candidate is a "
                    "sliced sub-net scored by one forward pass; its training counts as search cost)")
    sp.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a search backend setting, repeatable, typed by the backend's options (local: "
                    "objective=density|l1|gka|distill, vem=true, train_items, batch_size, eval_items; supernet: "
                    "train_steps, fractions=1,0.75,0.5,0.25, batch_size, lr, lambda_distill, eval_items, "
                    "cache=false, trainer=deepspeed|torch, density=false); unknown keys are refused")


def _cluster_flags(sp) -> None:
    """Where a search and its fine-tune run on Ray (prune, benchmark; docs/cluster.md)."""
    sp.add_argument("--finetune-workers", type=int, default=0, metavar="N",
                    help="fine-tune the best pair in N Ray Train workers on the cluster (DeepSpeed; default 0: "
                    "in this process)")
    sp.add_argument("--num-env-runners", type=int, default=0, help="Ray env runners (0: sample in-process)")
    sp.add_argument("--cpus-per-env-runner", type=float, default=1, help="CPUs Ray reserves per env runner "
                    "(fractions allowed, e.g. 0.5 when --backend-workers do the evaluations)")
    sp.add_argument("--backend-workers", type=int, default=0, metavar="M",
                    help="score the episodes on M Ray actors spread over the cluster (default 0: inside the env "
                    "runners)")
    sp.add_argument("--cpus-per-backend-worker", type=float, default=1, help="CPUs Ray reserves per backend worker")
    sp.add_argument("--gpus-per-env-runner", type=float, default=0.0,
                    help="GPUs per env runner (the in-runner evaluations' fine-tune steps use it; default 0)")
    sp.add_argument("--gpus-per-backend-worker", type=float, default=0.0, help="GPUs per backend worker (default 0)")
    sp.add_argument("--gpus-per-learner", type=float, default=0.0, help="GPUs of the PPO learner (0: CPU)")
    sp.add_argument("--address", help="Ray cluster address (auto or ray://host:10001); default: local Ray")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ganprune",
        description="Compress image-to-image GANs by channel pruning (MGGC multi-agent RL + baselines).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              ganprune demo
              ganprune data prepare edges2photos
              ganprune export runs/demo/teacher --spec spec.json --out pruned/
              ganprune profile pruned/ --json"""))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    p.commands = sub.choices  # name → subparser (``_given_flags`` re-reads one)

    def add(name, help_, example, fn):
        sp = sub.add_parser(name, help=help_, description=help_,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  " + example)
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        sp.add_argument("--quiet", action="store_true", help="no progress bars or tables")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("data", "list or prepare built-in datasets; validate a dataset folder",
             "ganprune data prepare edges2photos --size 64", commands.data)
    sp.add_argument("action", choices=["list", "prepare", "check"])
    sp.add_argument("name", nargs="?", help="built-in name (prepare) or folder (check)")
    sp.add_argument("--root", help="cache folder (default $GANPRUNE_DATA or ~/.cache/ganprune/data)")
    sp.add_argument("--size", type=int, default=64, help="image size of a built-in set (default 64)")
    sp.add_argument("--seed", type=int, default=0)

    sp = add("export", "export a model dir, optionally pruned by a spec, as safetensors + ONNX + metrics",
             "ganprune export runs/demo/teacher --spec spec.json --out pruned/", commands.export)
    sp.add_argument("source", help="a directory with architecture.json + generator.safetensors")
    sp.add_argument("--out", required=True, help="output directory")
    sp.add_argument("--spec", help="pruning spec JSON (group → kept channel indices) to apply first")
    sp.add_argument("--size", type=int, help="input size for MACs and latency (default: the source's)")
    sp.add_argument("--format", default="safetensors,onnx", help="comma list of safetensors,onnx")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    sp = add("profile", "MACs, params, torch and ONNX Runtime CPU latency of an export; with --latency-model, "
             "this machine's latency model of its architecture and its error on random pruned specs",
             "ganprune profile runs/demo/teacher --latency-model --size 256 --threads 2", commands.profile)
    sp.add_argument("path", help="an export directory (or a run directory with a generator/ export)")
    sp.add_argument("--size", type=int, help="input size (default: the export's)")
    sp.add_argument("--runs", type=int, default=20, help="timed runs after warm-up (median is reported)")
    sp.add_argument("--latency-model", action="store_true",
                    help="build (or reuse from the cache) the per-layer latency model and print its error on "
                         "--specs random specs, each exported and measured")
    sp.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch"],
                    help="runtime the latency model times (default onnxruntime)")
    sp.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    sp.add_argument("--specs", type=int, default=20, help="random specs the model's error is measured on")
    sp.add_argument("--plot", help="write predicted vs measured latency to this PNG")

    sp = add("evaluate", "fidelity of an exported generator on a dataset split (FID/KID proxy or "
             "Inception, PSNR/SSIM vs ground truth and vs a teacher, mIoU on labels→photo)",
             "ganprune evaluate runs/demo/pruned --data edges2photos --teacher runs/demo/teacher --json",
             commands.evaluate)
    sp.add_argument("path", help="an export directory")
    sp.add_argument("--data", required=True, help="built-in dataset name or dataset folder")
    sp.add_argument("--teacher", help="export directory of the teacher: adds PSNR/SSIM vs its outputs")
    sp.add_argument("--split", default="test", help="dataset split (default test)")
    sp.add_argument("--size", type=int, help="image size (default: the export's)")
    sp.add_argument("--max-items", type=int, help="evaluate only the first N items")
    sp.add_argument("--inception-weights", default=None,
                    help="pytorch-fid Inception weights file for real FID/KID "
                         "(or $GANPRUNE_INCEPTION_WEIGHTS); without it a proxy is reported")

    sp = add("finetune", "fine-tune a pruned (G, D) pair from its teacher (L1-to-teacher distillation, MGGC's "
             "density objective, CAT's or GAN Compression's); PSNR/SSIM vs the teacher before and after",
             "ganprune finetune --teacher runs/teacher --spec spec.json --out runs/ft\n"
             "  ganprune finetune --teacher runs/teacher --spec spec.json --objective density --out runs/ft-density",
             commands.finetune)
    sp.add_argument("--teacher", required=True, help="teacher run directory (with teacher.json)")
    sp.add_argument("--spec", required=True, help="spec JSON: {group: [kept]}, {\"spec\": ...} or "
                    "{\"generator\": ..., \"discriminator\": ...}")
    sp.add_argument("--objective", choices=["l1", "density", "gka", "distill"],
                    help="l1 (L1 to the teacher's output + adversarial; the default: the density term did not earn "
                    "its cost, docs/methods.md), density (MGGC's local density structure), gka (CAT's kernel "
                    "alignment), distill (GAN Compression's feature distillation)")
    sp.add_argument("--add", action="append", default=[], help="add-on terms summed onto the objective: gka, vem (comma-separated or repeated)")
    sp.add_argument("--density-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a knob of the density objective (gan.losses.DensityConfig), e.g. neighbors=jitter "
                    "(jittered copies of each input instead of the default memory bank of other inputs), k_neighbors=8, "
                    "bandwidth_mode=perplexity; unknown keys are refused")
    sp.add_argument("--steps", type=int, help="fine-tuning steps (default 200)")
    sp.add_argument("--backend", choices=["deepspeed", "torch"], default="deepspeed")
    sp.add_argument("--batch-size", type=int, default=4, help="global batch, split over --num-procs or "
                    "--ray-workers (default 4)")
    _num_procs(sp)
    _threads(sp)
    sp.add_argument("--ray-workers", type=int, default=0, metavar="N",
                    help="train in N Ray Train workers (TorchTrainer; one GPU each when the cluster has GPUs; "
                    "DeepSpeed backend; default 0: no Ray)")
    sp.add_argument("--address", help="with --ray-workers: Ray cluster address (auto or ray://host:10001); "
                    "default: local Ray")
    sp.add_argument("--out", required=True, help="output directory")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    sp.add_argument("--ckpt-every", type=int, default=0, metavar="N",
                    help="checkpoint every N steps and at the end, newest two kept (default 0: none)")

    sp = add("demo", "the embedded default, end to end: tiny teacher → two-agent RL pruning → L1 "
             "distillation fine-tune → export → evaluate, logged to MLflow",
             "ganprune demo --out runs/demo", commands.demo)
    sp.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    sp.add_argument("--macs-target", type=float, default=0.25,
                    help="fraction of the teacher's MACs (≤ 1) or absolute MACs (default 0.25)")
    sp.add_argument("--preset", default="tiny", help="tiny (default), small, paper or a YAML path")
    sp.add_argument("--teacher", help="use this teacher run instead of the preset's cached one")
    sp.add_argument("--teacher-steps", type=int, help="steps of the cached teacher (default per preset)")
    sp.add_argument("--iterations", type=int, help="MARL iterations (default per preset)")
    sp.add_argument("--episodes", type=int, help="episodes per iteration (default per preset)")
    sp.add_argument("--finetune-steps", type=int, help="fine-tune steps of the best pair (default per preset)")
    sp.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///<cwd>/mlflow.db)")

    sp = add("train-teacher", "train the teacher the data's layout calls for: pix2pix on paired data, CycleGAN "
             "on unpaired (A/B) data, a class-conditional GAN on class folders; with checkpoints, resume, "
             "sample grids, MLflow tracking and exports of G and D",
             "ganprune train-teacher --preset tiny --data edges2photos --out runs/teacher --json",
             commands.train_teacher)
    sp.add_argument("--preset", default=None, help="tiny (default), small, paper or a YAML path "
                    "(with --resume: the run's own)")
    sp.add_argument("--data", default=None, help="built-in dataset name or folder (default: the preset's)")
    sp.add_argument("--out", default="runs/teacher", help="output directory (default runs/teacher)")
    sp.add_argument("--steps", type=int, help="training steps (default per preset: tiny 2000, small 5000, "
                    "paper 200000; with --resume: the checkpoint's)")
    sp.add_argument("--ckpt-every", type=int, help="checkpoint + sample grid interval (default steps/10)")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sp.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db)")
    sp.add_argument("--backend", choices=["deepspeed", "torch"], default="deepspeed")
    sp.add_argument("--batch-size", type=int, help="global batch, split over --num-procs (default: the kind's "
                    "— pix2pix/CycleGAN 1, conditional 16 — rounded up to a multiple of --num-procs)")
    _num_procs(sp)
    _threads(sp)
    sp.add_argument("--seed", type=int, default=0)

    sp = add("import-teacher", "make a teacher run from a generator trained by the reference pix2pix/CycleGAN "
             "code (its .pth state dict, read without running pickled code); without --discriminator a PatchGAN "
             "is warmed up against the frozen generator", "ganprune import-teacher --generator "
             "latest_net_G.pth --arch unet_256 --norm batch --data edges2photos --out runs/imported --json",
             commands.import_teacher)
    sp.add_argument("--generator", required=True, metavar="G.pth",
                    help="the reference generator's state dict (torch.save .pth, or .safetensors)")
    sp.add_argument("--discriminator", metavar="D.pth", help="the reference NLayerDiscriminator trained with it "
                    "(default: warm one up for --d-steps)")
    sp.add_argument("--arch", required=True, help="the reference --netG: resnet_9blocks, resnet_6blocks, unet_256 "
                    "or unet_128")
    sp.add_argument("--norm", required=True, help="the reference --norm: instance or batch (G and D)")
    sp.add_argument("--dropout", action="store_true", help="the generator was trained with dropout (the "
                    "reference's default; --no_dropout runs: leave it off)")
    sp.add_argument("--data", required=True, help="paired built-in dataset name or folder: the D warm-up's "
                    "train split, val for the check and the metrics")
    sp.add_argument("--out", required=True, help="the teacher run directory to write")
    sp.add_argument("--d-steps", type=int, metavar="N", help="D warm-up steps (default 200 without "
                    "--discriminator, 0 with one)")
    sp.add_argument("--ndf", type=int, default=64, help="width of a warmed-up PatchGAN (default 64, the "
                    "reference's)")
    sp.add_argument("--size", type=int, help="image size (default 256; unet_128: 128)")
    sp.add_argument("--backend", choices=["deepspeed", "torch"], default="torch", help="engine of the D "
                    "warm-up (default torch)")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sp.add_argument("--seed", type=int, default=0)
    _threads(sp)

    sp = add("prune", "search a pruned (G, D) pair with two cooperating RL agents (MGGC) or a baseline, "
             "fine-tune it with the method's objective, export and evaluate; everything logged to MLflow",
             "ganprune prune --method marl --teacher runs/teacher --macs-target 0.1 --out runs/marl\n"
             "  ganprune prune --method marl --backend supernet --backend-option train_steps=500 --preset tiny "
             "--macs-target 0.25 --out runs/marl-supernet --json\n"
             "  ganprune prune --method random --backend-option objective=distill --backend-option vem=true "
             "--out runs/random-distill",
             commands.prune)
    sp.add_argument("--request", metavar="FILE",
                    help="run the request in FILE (an earlier run's request.json, or a YAML/JSON mapping of the "
                    "same shape); flags given on the command line override it")
    sp.add_argument("--method", default="marl",
                    help="marl (default, two RL agents: the best pair seen), marl-greedy (the trained policies' "
                    "deterministic pick), random (random search, the control), evolution (GAN Compression's evolution on "
                    "marl's env and budget; --method-option population=16 levels=9 mutate_prob=0.3), cat, "
                    "gan-compression, ppcd, uniform, l1 or fastest (the widths the latency model at --latency-size "
                    "predicts fastest at the MACs target, channels by L1)")
    sp.add_argument("--evaluations", type=int, metavar="N",
                    help="random, evolution: candidate pairs to score (default: what marl scores at most at the same "
                    "settings, iterations × (episodes + 1))")
    sp.add_argument("--search-from", metavar="RUN",
                    help="marl/marl-greedy: reuse the finished search of this marl run directory when it searched "
                    "the same problem with the same settings")
    sp.add_argument("--objective", help="fine-tune objective: l1, density, gka, distill (default per method: "
                    "cat gka, gan-compression distill, ppcd its own, every other l1)")
    sp.add_argument("--vem", action="store_true", help="add VEM's mutual-information term to the fine-tune")
    sp.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a method-specific setting, repeatable (gan-compression: supernet_steps, population, "
                    "generations, eval_items, lambda_distill; ppcd: lambda_cad, lambda_sparse, prune_frac, ...)")
    sp.add_argument("--teacher", help="teacher run directory (default: train or reuse the preset's teacher)")
    sp.add_argument("--preset", default="tiny", help="tiny (default), small, paper or a YAML path")
    sp.add_argument("--data", help="dataset of the preset's teacher when --teacher is not given")
    sp.add_argument("--macs-target", type=float, default=0.25,
                    help="generator MACs: fraction of the teacher's (0.1) or absolute count (3e9)")
    sp.add_argument("--latency-target", type=float,
                    help="budget predicted latency instead of MACs: fraction of the teacher's (0.3) or ms (12); "
                         "every method but fastest")
    sp.add_argument("--latency-size", type=int, help="image size the latency is predicted at (default: the "
                    "teacher's; e.g. 256 for deployment); also fastest's under a MACs target")
    sp.add_argument("--latency-runtime", default="onnxruntime", choices=["onnxruntime", "torch"],
                    help="runtime of the latency model (default onnxruntime)")
    sp.add_argument("--latency-threads", type=int, help="intra-op threads of the latency model (default --threads)")
    sp.add_argument("--macs-cap", type=float, help="with --latency-target: MACs must also stay within this fraction "
                    "of the teacher's (0.1) or count; the widths then buy the most speed per MAC (docs/latency.md)")
    _align_flag(sp)
    sp.add_argument("--out", default="runs/marl", help="output directory (default runs/marl)")
    sp.add_argument("--iterations", type=int, help="PPO iterations (default per preset)")
    sp.add_argument("--episodes", type=int, help="episodes per iteration (default per preset)")
    sp.add_argument("--peer-beta", type=float, default=0.5, help="weight of the peer's reward (0: no exchange)")
    sp.add_argument("--no-peer-observation", action="store_true",
                    help="hide the peer's decisions and reward from each agent's observation")
    sp.add_argument("--action-prior", choices=["l1", "none"], default="l1",
                    help="l1 (default): actions scale the global-L1 allocation's keep ratios; none: absolute ratios")
    sp.add_argument("--backend-steps", type=int, help="fine-tune steps per candidate inside the local backend")
    _backend_flags(sp, "backend", "--backend", "--search-backend")
    sp.add_argument("--finetune-steps", type=int, help="fine-tune steps of the best pair (default per preset)")
    sp.add_argument("--finetune-backend", choices=["deepspeed", "torch"], default="deepspeed")
    _cluster_flags(sp)
    sp.add_argument("--seed", type=int, default=0)
    _threads(sp)
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sp.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db)")

    sp = add("benchmark", "every method on one teacher at the same MACs target and fine-tune budget: one "
             "markdown + JSON table and a Pareto plot (MACs vs fidelity), in --out and MLflow",
             "ganprune benchmark --preset tiny --methods marl,marl-greedy,random,l1,uniform --seeds 0,1,2 "
             "--macs-target 0.25 --out runs/bench --json\n"
             "  ganprune benchmark --preset tiny --methods marl,random,l1 --search-backend supernet "
             "--iterations 20 --macs-target 0.25 --out runs/bench-supernet --json\n"
             "  ganprune benchmark --preset tiny --data photo2painting --methods marl,l1 --macs-target 0.25 "
             "--out runs/bench-cyclegan --json", commands.benchmark)
    sp.add_argument("--preset", default="small", help="small (default), tiny, paper or a YAML path")
    sp.add_argument("--methods", default="marl,cat,gan-compression,ppcd,uniform,l1",
                    help="comma-separated: marl, marl-greedy, marl-beta0 and marl-beta1 (β = 0, 1), random and evolution (as many "
                    "evaluations as marl), cat, gan-compression, ppcd, uniform, l1, fastest (default: marl,cat,gan-compression,ppcd,uniform,l1)")
    sp.add_argument("--seeds", default=None, help="comma-separated seeds, one row per method × seed (default: "
                    "--seed)")
    sp.add_argument("--macs-target", type=float, default=0.25,
                    help="generator MACs: fraction of the teacher's (0.1) or absolute count (3e9)")
    sp.add_argument("--macs-targets", help="a sweep: comma-separated MACs targets (0.25,0.1,0.04), one benchmark "
                    "each into OUT/macs-<t>/, then OUT/sweep.md and a Pareto plot against measured latency")
    sp.add_argument("--latency-targets", help="a sweep over predicted-latency targets (fractions of the teacher's, "
                    "or ms), into OUT/latency-<t>/; methods that take a latency budget only")
    sp.add_argument("--latency-size", type=int, help="a sweep's deployment size: latency targets are predicted and "
                    "every export is measured at it (default 256); also where fastest models latency")
    sp.add_argument("--latency-runtime", default="onnxruntime", choices=["onnxruntime", "torch"])
    sp.add_argument("--latency-threads", type=int, help="threads of the latency model and measurements")
    sp.add_argument("--macs-cap", type=float, help="with --latency-targets: every row's MACs also stay within this "
                    "fraction of the teacher's (0.1) or count")
    _align_flag(sp)
    sp.add_argument("--teacher", help="teacher run directory (default: train or reuse the preset's teacher)")
    sp.add_argument("--data", help="dataset of the preset's cached teacher when --teacher is not given; unpaired "
                    "data (photo2painting) gives a CycleGAN teacher whose G_A and D_A are pruned")
    sp.add_argument("--teacher-steps", type=int, help="steps of the preset's cached teacher")
    sp.add_argument("--vem", action="store_true", help="add VEM's term to every method's fine-tune")
    sp.add_argument("--finetune-steps", type=int, help="fine-tune steps of every method (default per preset)")
    sp.add_argument("--iterations", type=int, help="MARL iterations (default per preset)")
    sp.add_argument("--episodes", type=int, help="MARL episodes per iteration (default per preset)")
    sp.add_argument("--backend-steps", type=int, help="MARL/random: fine-tune steps per candidate (default per preset)")
    _backend_flags(sp, "search_backend", "--search-backend")
    sp.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    sp.add_argument("--finetune-backend", choices=["deepspeed", "torch"], default="deepspeed")
    _cluster_flags(sp)
    sp.add_argument("--resume", action="store_true",
                    help="keep the rows in --out that finished with the same settings and code, run the rest")
    sp.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sp.add_argument("--seed", type=int, default=0, help="one seed (see --seeds)")
    sp.add_argument("--jobs", type=int, default=1, metavar="N",
                    help="rows run at once on this machine, each in a process of its own (default 1); rows get "
                    "--threads each, default: this machine's threads / N")
    _threads(sp)
    sp.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db)")

    sp = add("inspect", "a pruning run's per-group decisions of each agent (best pair and the trained "
             "policies' deterministic choices), reward curves and plots",
             "ganprune inspect runs/marl", commands.inspect)
    sp.add_argument("run", help="a prune run directory or its MLflow run id")
    sp.add_argument("--tracking-uri", default=None, help="MLflow store to look a run id up in")

    sp = add("ui", "open the MLflow UI over the local store", "ganprune ui --port 5000", commands.ui)
    sp.add_argument("--tracking-uri", default=None, help="default sqlite:///mlflow.db")
    sp.add_argument("--port", type=int, default=5000)

    return p


def _given_flags(sp: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests that ``argv`` (a command's arguments) sets explicitly, defaults aside: flags given on
    the command line override a ``--request`` file even when they equal the parser's default."""
    for action in sp._actions:
        action.default = argparse.SUPPRESS
    given, _ = sp.parse_known_args(argv)
    return set(vars(given))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    if getattr(args, "request", None):
        args.given = _given_flags(parser.commands[args.command], argv[argv.index(args.command) + 1:])
    if getattr(args, "ray_workers", 0) and getattr(args, "num_procs", 1) != 1:
        print(f"ganprune {args.command}: error: --ray-workers and --num-procs are two launchers; pass one of them",
              file=sys.stderr)
        return 2
    if getattr(args, "num_procs", 1) != 1:  # re-run this command under torchrun (orchestration/launch.py)
        from orchestration.launch import relaunch

        return relaunch(args, argv)
    try:
        result = args.fn(args)
    except KeyboardInterrupt:
        print("ganprune: interrupted", file=sys.stderr)
        return 130
    except input_error_types() as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        if isinstance(e, FileNotFoundError) and e.filename:
            message = f"no such file or directory: {e.filename}"
        print(f"ganprune {args.command}: error: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result if result is not None else {}, default=str))
    return 0


def entry() -> int:
    """The ``ganprune`` console script: a fixed string-hash seed first (``gan.determinism.pin_hash_seed``),
    then ``main``."""
    from gan.determinism import pin_hash_seed

    pin_hash_seed()
    return main()


__all__ = ["main", "entry", "UsageError"]

if __name__ == "__main__":
    sys.exit(entry())
