"""The typed requests of ``ganprune prune`` and ``ganprune benchmark``: built once from CLI flags or
from a JSON/YAML mapping, then passed down whole (issue #14).

Why: settings used to travel as flat keyword lists (33 arguments into ``prune``, renamed on the
way).  A request is one frozen value: ``prune`` writes it to ``<out>/request.json`` and
``ganprune prune --request <out>/request.json`` runs the same thing again; ``benchmark`` derives
each row's request from one template with ``dataclasses.replace``.  Unknown keys are refused in
one line naming the known ones, before any work.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from agents.methods.base import Placement
from orchestration.config import build_dataclass
from orchestration.errors import UsageError
from agents.methods import SearchSettings
from gan.train.distill import DEFAULT_OBJECTIVE


@dataclass(frozen=True)
class SearchFlags:
    """The search budget as asked: ``None`` takes the preset's value (``resolve``)."""

    iterations: int | None = None
    episodes: int | None = None
    backend_steps: int | None = None
    beta: float = 0.5                  # peer-reward weight (docs/methods.md, "MARL search")
    prior: str = "l1"                  # the action prior: a = 0.5 replays the L1 allocation
    peer_observation: bool = True
    evaluations: int | None = None     # random search's candidates
    search_from: str | None = None     # a finished marl run whose search marl/marl-greedy reuse
    backend: str = "local"             # the search backend: local | supernet (docs/methods.md, "Search backends")
    backend_options: dict = field(default_factory=dict)  # its --backend-option settings

    def backend_opts(self):
        """The backend's options dataclass (``envs.backends.options``); a bad key or value is a one-line
        ``UsageError``."""
        from envs.backends.options import BackendOptionError, parse_backend_options

        try:
            return parse_backend_options(self.backend, self.backend_options)
        except BackendOptionError as e:
            raise UsageError(str(e)) from None

    def resolve(self, preset):
        """The ``agents.methods.SearchSettings`` of this budget on ``preset`` (an
        ``orchestration.config.Preset``); the backend's options with the preset's values filled in."""
        m = preset.marl
        pick = (lambda asked, default: default if asked is None else int(asked))
        opts = self.backend_opts()
        eval_items = opts.eval_items if opts.eval_items is not None else m.eval_items
        backend_steps = pick(self.backend_steps, m.backend_steps)
        if self.backend == "supernet":  # scores sliced sub-nets, no fine-tune steps per candidate
            if self.backend_steps:
                raise UsageError(f"--backend-steps {self.backend_steps}: the supernet backend scores sliced "
                                 "sub-nets without fine-tune steps; drop --backend-steps or use --backend local")
            backend_steps = 0
            if opts.train_steps is None:
                opts = dataclasses.replace(opts, train_steps=preset.gan_compression.supernet_steps)
        return SearchSettings(iterations=pick(self.iterations, m.iterations),
                              episodes=pick(self.episodes, m.episodes_per_iteration),
                              backend_steps=backend_steps, eval_items=eval_items,
                              beta=self.beta, prior=self.prior, peer_observation=self.peer_observation,
                              evaluations=self.evaluations, search_from=self.search_from,
                              backend=self.backend, backend_options=dataclasses.replace(opts, eval_items=eval_items))


@dataclass(frozen=True)
class FinetuneFlags:
    """How the found pair is fine-tuned: ``steps`` None takes the preset's, ``objective`` None the
    method's own."""

    steps: int | None = None
    backend: str = "deepspeed"
    objective: str | None = None
    vem: bool = False                  # add VEM's term (docs/methods.md, "VEM")
    export_onnx: bool = True

    def resolved_steps(self, preset) -> int:
        return preset.marl.finetune_steps if self.steps is None else int(self.steps)


@dataclass(frozen=True)
class PruneRequest:
    """One ``ganprune prune``: the method, the teacher, the target and where the run goes."""

    method: str | None = None          # None: agents.methods.DEFAULT
    teacher: str | None = None         # None: train or reuse the preset's cached teacher
    preset: str = "tiny"
    data: str | None = None
    macs_target: float = 0.25
    latency_target: float | None = None  # set: G's budget is predicted latency (fraction ≤ 1 or ms), not MACs
    latency_size: int | None = None      # the deployment size the latency is predicted at (None: teacher's)
    latency_runtime: str = "onnxruntime"
    latency_threads: int | None = None   # None: the run's threads
    macs_cap: float | None = None        # with latency_target: MACs must also stay within this (fraction or count)
    align: int | str = 1                 # round G's widths per group to this channel block ("auto": the CPU's)
    out: str = "runs/marl"
    seed: int = 0
    threads: int | None = None         # None: gan.determinism.default_threads
    options: dict = field(default_factory=dict)  # the method's --method-option settings
    search: SearchFlags = field(default_factory=SearchFlags)
    finetune: FinetuneFlags = field(default_factory=FinetuneFlags)
    placement: Placement = field(default_factory=Placement)
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    track: bool = True
    tracking_uri: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def latency(self):
        """The latency budget (``gan.latency_model.LatencyTarget``), or None: the budget is MACs."""
        if self.latency_target is None:
            return None
        from gan.latency_model import LatencyTarget

        return LatencyTarget(self.latency_target, self.latency_size, self.latency_runtime,
                             self.latency_threads or self.threads, self.macs_cap)

    def deployment(self):
        """Where the export will run (``--latency-size/-runtime/-threads``) as a ``LatencyTarget``: the latency
        budget itself, or under a MACs budget the whole teacher's latency (what ``fastest`` models)."""
        from gan.latency_model import LatencyTarget

        return self.latency() or LatencyTarget(1.0, self.latency_size, self.latency_runtime,
                                               self.latency_threads or self.threads)

    @classmethod
    def from_mapping(cls, d: dict, where: str = "request") -> PruneRequest:
        """A request from a nested mapping (``to_dict``'s shape; sections may be partial)."""
        return build_dataclass(cls, d, where)

    @classmethod
    def from_file(cls, path: str | Path) -> PruneRequest:
        """A request from a JSON or YAML file (e.g. a run's own ``request.json``)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise UsageError(f"--request {path}: cannot read it ({e.strerror}); give a request.json of an "
                             f"earlier run or a YAML file") from None
        import yaml

        try:
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise UsageError(f"--request {path}: not valid JSON/YAML ({str(e).splitlines()[0]})") from None
        return cls.from_mapping(d if d is not None else {}, where=f"--request {path}")


@dataclass(frozen=True)
class TeacherRequest:
    """One ``ganprune train-teacher``: ``preset`` None takes the run's own preset on ``resume`` (its
    checkpoint's widths), else tiny; ``steps``/``ckpt_every``/``batch_size`` None take the preset's and
    the teacher kind's defaults."""

    preset: str | None = "tiny"
    data: str | None = None            # None: the preset's dataset
    out: str = "runs/teacher"
    steps: int | None = None
    backend: str = "deepspeed"
    batch_size: int | None = None
    ckpt_every: int | None = None
    seed: int = 0
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    track: bool = True
    tracking_uri: str | None = None


@dataclass(frozen=True)
class ImportTeacherRequest:
    """One ``ganprune import-teacher`` (docs/import_teacher.md): a reference pix2pix/CycleGAN
    generator file (and optionally its discriminator) made into a teacher run.  ``size`` None: the
    arch's training size (256, unet_128: 128); ``d_steps`` None: 200 D warm-up steps without
    ``discriminator``, none with one."""

    generator: str
    arch: str
    norm: str
    data: str
    out: str
    discriminator: str | None = None
    dropout: bool = False
    d_steps: int | None = None
    ndf: int = 64                      # a warmed-up D's width (the reference's default)
    size: int | None = None
    backend: str = "torch"
    seed: int = 0
    threads: int | None = None
    overwrite: bool = False
    quiet: bool = False


#: fine-tune global batch (split over the ranks of a multi-process run)
DEFAULT_BATCH = 4


@dataclass(frozen=True)
class FinetuneRequest:
    """One ``ganprune finetune``: the teacher pair pruned by the spec at ``spec_path``, fine-tuned from
    the teacher into ``out``.  ``density``/``distill``: overrides of ``DensityConfig``/``DistillConfig``
    fields (knob variants); ``add``: add-on terms summed onto the objective
    (``gan.train.distill.ADD_ONS``); ``init_generator``/``init_discriminator``: exports with the
    teacher's architecture whose weights the pruned pair starts from instead of the teacher's (GAN
    Compression's trained supernet; the teacher stays the distillation target); ``resume``: continue
    from the newest checkpoint in ``out`` (``ckpt_every`` > 0 writes one every that many steps)."""

    teacher_dir: str
    spec_path: str
    out: str
    objective: str = DEFAULT_OBJECTIVE
    add: tuple = ()
    steps: int | None = None           # None: orchestration.finetune.DEFAULT_STEPS
    backend: str = "deepspeed"
    batch_size: int = DEFAULT_BATCH
    lr: float = 2e-4
    lambda_gt: float = 0.0
    density: dict | None = None
    distill: dict | None = None
    init_generator: str | None = None
    init_discriminator: str | None = None
    data: str | None = None            # None: the teacher's dataset
    seed: int = 0
    threads: int | None = None
    export_onnx: bool = True
    ckpt_every: int = 0
    log_every: int | None = None       # history record every N steps (None: 20 records per run)
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class BenchmarkRequest:
    """One ``ganprune benchmark``: ``methods`` × ``seeds``, each row ``row`` with its method, seed and
    run directory set (its teacher, target, budgets and placement are every row's)."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    out: str = "runs/bench"
    teacher_steps: int | None = None   # of the preset's cached teacher
    resume: bool = False
    overwrite: bool = False
    method_options: dict = field(default_factory=dict)  # benchmark method name → its options
    row: PruneRequest = field(default_factory=lambda: PruneRequest(preset="small", quiet=True))
    quiet: bool = False                # the benchmark's own progress lines and table (rows are quiet)
    jobs: int = 1                      # rows run at once, each in a worker process of its own


#: ``ganprune prune``'s flags (argparse dests) → their field in ``PruneRequest`` (dotted: a section)
PLACEMENT_FLAGS = tuple(f.name for f in dataclasses.fields(Placement))
PRUNE_FLAGS = {
    "method": "method", "teacher": "teacher", "preset": "preset", "data": "data", "macs_target": "macs_target",
    "latency_target": "latency_target", "latency_size": "latency_size", "latency_runtime": "latency_runtime",
    "latency_threads": "latency_threads", "macs_cap": "macs_cap", "align": "align",
    "out": "out", "seed": "seed", "threads": "threads", "method_option": "options",
    "iterations": "search.iterations", "episodes": "search.episodes", "backend_steps": "search.backend_steps",
    "peer_beta": "search.beta", "action_prior": "search.prior", "no_peer_observation": "search.peer_observation",
    "evaluations": "search.evaluations", "search_from": "search.search_from",
    "backend": "search.backend", "backend_option": "search.backend_options",
    "finetune_steps": "finetune.steps", "finetune_backend": "finetune.backend", "objective": "finetune.objective",
    "vem": "finetune.vem", **{k: f"placement.{k}" for k in PLACEMENT_FLAGS},
    "resume": "resume", "overwrite": "overwrite", "quiet": "quiet", "tracking_uri": "tracking_uri"}
#: flags whose field holds the opposite truth value
NEGATED = {"no_peer_observation"}


def prune_request(flags: dict, base: PruneRequest | None = None) -> PruneRequest:
    """``base`` (default: ``PruneRequest()``) with the given flags (``PRUNE_FLAGS`` dests → values,
    ``method_option`` already a dict) set on it."""
    nested = base.to_dict() if base is not None else {}
    for dest, value in flags.items():
        *section, name = PRUNE_FLAGS[dest].split(".")
        target = nested
        for part in section:
            target = target.setdefault(part, {})
        target[name] = (not value) if dest in NEGATED else value
    return PruneRequest.from_mapping(nested)
