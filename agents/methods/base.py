"""The one interface every pruning method has (issue #14): ``prune`` resolves the request once, asks
the registry (``agents.methods.REGISTRY``) for the method, calls its ``search`` and then fine-tunes,
exports and reports the same way for every method.

What a search needs from the command above it (MLflow, printing, plots, run-dir files) is handed in
as a ``SearchContext`` of callbacks: the agents layer never imports orchestration.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol
from gan.teacher_run import TeacherRunError
from gan.train.distill import DEFAULT_OBJECTIVE


#: the generator classes a teacher run can hold (``gan.models``); the default of ``Method.generators``
#: (which method prunes which: docs/methods.md, "Which generators each method prunes")
ZOO_GENERATORS = ("ResnetGenerator", "InceptionGenerator", "UnetGenerator", "ConditionalGenerator")


class MethodOptionError(ValueError):
    """A ``--method-option`` the method does not have (the message names it and the known ones)."""


@dataclass(frozen=True)
class NoOptions:
    """A method without ``--method-option`` settings."""


def parse_options(cls: type, method: str, options: dict | None):
    """``options`` as an instance of the options dataclass ``cls``; unknown keys are refused in one
    line that names the first one and the known keys."""
    options = dict(options or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MethodOptionError(f"unknown --method-option {unknown[0]!r} for --method {method}; "
                                + (f"known: {', '.join(known)}" if known else "this method takes none"))
    return cls(**options)


@dataclass(frozen=True)
class SearchSettings:
    """The budget of the searches that score candidates with an environment backend (marl, random)."""

    iterations: int
    episodes: int
    backend_steps: int
    eval_items: int
    beta: float = 0.5
    prior: str = "l1"
    peer_observation: bool = True
    evaluations: int | None = None     # random search's candidates (default: what marl scores at most)
    search_from: str | None = None     # a finished marl run whose search marl/marl-greedy reuse
    backend: str = "local"             # the search backend (envs.backends.options.SEARCH_BACKENDS)
    backend_options: Any = None        # its options dataclass (envs.backends.options; None: the defaults)


@dataclass(frozen=True)
class Placement:
    """Where the search and the fine-tune run on a Ray cluster (it never changes what is found)."""

    address: str | None = None
    num_env_runners: int = 0
    cpus_per_env_runner: float = 1
    gpus_per_env_runner: float = 0.0
    backend_workers: int = 0
    cpus_per_backend_worker: float = 1
    gpus_per_backend_worker: float = 0.0
    gpus_per_learner: float = 0.0
    finetune_workers: int = 0


@dataclass(frozen=True)
class SearchRequest:
    """Everything a method's search may use, built once by ``prune`` and passed down whole."""

    run: Any                       # gan.teacher_run.TeacherRun
    teacher: str                   # its directory
    out: Path                      # the prune run's directory
    macs_target: float             # fraction ≤ 1 of the teacher's MACs, or a count
    seed: int
    search: SearchSettings
    placement: Placement
    options: Any                   # the method's options dataclass
    finetune_steps: int = 200
    finetune_backend: str = "deepspeed"
    export_onnx: bool = True
    preset: Any = None             # orchestration.config.Preset (its gan_compression section)
    resume_from: Path | None = None  # the newest search checkpoint of a resumed run
    quiet: bool = False
    latency_target: Any = None     # gan.latency_model.LatencyTarget: G's budget is predicted latency instead
    align: int = 1                 # G's channel block (--align): env-based searches score aligned widths only
    deploy: Any = None             # gan.latency_model.LatencyTarget: where the export runs (size, runtime, threads),
                                   # the latency budget itself or, under a MACs budget, the --latency-* flags


@dataclass
class SearchContext:
    """Callbacks into the command that runs the search (MLflow, printing, plots)."""

    log_params: Callable[[dict], None] = lambda params: None
    log_metrics: Callable[..., None] = lambda metrics, step=None: None
    log_artifact: Callable[..., None] = lambda path, artifact_path=None: None
    log_artifacts: Callable[..., None] = lambda path, artifact_path=None: None
    say: Callable[[str], None] = lambda msg: None
    #: per agent of ``method.agents``, its nested MLflow run: an object with ``log_params(dict)`` and
    #: ``log_metrics(dict, step=None)``
    agent_runs: dict = field(default_factory=dict)
    #: writes the search's plots from its history (``orchestration.plots``)
    plot_history: Callable[[list, Path], None] = lambda history, out: None
    #: writes a JSON file atomically (``orchestration.rundir.write_json``)
    write_json: Callable[[Path, Any], None] = lambda path, obj: Path(path).write_text(json.dumps(obj))


@dataclass
class Found:
    """A search's result: the G and D specs (teacher-indexed channels to keep; ``None`` for D: pruned
    to G's keep ratio; ``{}``: the whole teacher D), what it cost, and optional starting weights.
    A method that trains itself (``trains_itself``) sets ``trained`` to the directory with its
    exported ``generator/`` and ``finetune_s`` to its training time."""

    generator: dict | None
    discriminator: dict | None
    target_macs: float
    teacher_macs: float
    search_s: float = 0.0
    search_evaluations: int = 0
    search_finetune_steps: int = 0
    search_cpu_s: float | None = None
    best: dict | None = None
    extra: dict = field(default_factory=dict)
    backend: dict | None = None
    init_generator: Any = None
    init_discriminator: Any = None
    trained: Path | None = None
    finetune_s: float = 0.0
    generator_keep: dict | None = None

    @property
    def spec(self) -> dict:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def cost(self) -> dict:
        c = {"search_evaluations": self.search_evaluations, "search_finetune_steps": self.search_finetune_steps}
        if self.search_cpu_s is not None:
            c["search_cpu_s"] = self.search_cpu_s
        return c


class PruningMethod(Protocol):
    """One compression method behind ``ganprune prune --method NAME``."""

    name: ClassVar[str]
    #: its fine-tune objective (``gan.train.distill.OBJECTIVES``); None: it trains itself with its own
    objective: ClassVar[str | None]
    #: the dataclass of its ``--method-option`` settings
    Options: ClassVar[type]
    #: teacher kinds it prunes (``gan.teacher_run``)
    kinds: ClassVar[tuple[str, ...]]
    #: teacher generator classes it prunes (class names of ``gan.models``)
    generators: ClassVar[tuple[str, ...]]
    #: it trains and exports its student itself (no separate fine-tune)
    trains_itself: ClassVar[bool]
    #: agents with their own nested MLflow run
    agents: ClassVar[tuple[str, ...]]
    #: it scores candidates with an environment backend: the search settings (iterations, episodes,
    #: backend steps, β, prior) change what it finds
    uses_search_settings: ClassVar[bool]
    #: it runs on Ray env runners / backend workers (the search placement flags serve it)
    uses_search_placement: ClassVar[bool]
    #: the ``SearchSettings`` fields only it takes (e.g. random's ``evaluations``)
    own_settings: ClassVar[tuple[str, ...]]
    #: it budgets predicted latency (``--latency-target``) as well as MACs
    latency_budget: ClassVar[bool]
    #: it reads the deployment's latency model under a MACs budget too (``fastest``): a benchmark measures the
    #: model once before its rows share the cores
    models_latency: ClassVar[bool]

    def check_teacher(self, run, registry: dict | None = None, options=None) -> None: ...

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found: ...


class Method:
    """Defaults for the ``PruningMethod`` attributes; a method subclasses it and sets what differs."""

    name: ClassVar[str] = ""
    objective: ClassVar[str | None] = DEFAULT_OBJECTIVE  # docs/methods.md, "Default fine-tune objective"
    Options: ClassVar[type] = NoOptions
    #: pix2pix and CycleGAN (its G_A and D_A; docs/methods.md, "Unpaired (CycleGAN) teachers")
    kinds: ClassVar[tuple[str, ...]] = ("pix2pix", "cyclegan")
    generators: ClassVar[tuple[str, ...]] = ZOO_GENERATORS
    trains_itself: ClassVar[bool] = False
    agents: ClassVar[tuple[str, ...]] = ()
    uses_search_settings: ClassVar[bool] = False
    uses_search_placement: ClassVar[bool] = False
    own_settings: ClassVar[tuple[str, ...]] = ()
    #: budgets predicted latency (``SearchRequest.latency_target``) as well as MACs
    latency_budget: ClassVar[bool] = False
    models_latency: ClassVar[bool] = False

    def options(self, options: dict | None):
        return parse_options(self.Options, self.name, options)

    def check_teacher(self, run, registry: dict | None = None, options=None) -> None:
        """Refuse (``TeacherRunError``, one line, exit 2) a teacher run whose generator class this method
        cannot prune, before any work (``prune``: before the search; ``benchmark``: before any row);
        ``registry`` (name → method, ``agents.methods.REGISTRY``): the fix names the methods that can;
        ``options`` (the method's parsed ``--method-option`` settings): a method refuses those this
        teacher cannot honour (gan-compression's ``lambda_distill`` on a U-Net)."""
        cls = type(run.generator).__name__
        if cls not in self.generators:
            takers = [n for n, m in (registry or {}).items() if cls in m.generators]
            fix = (f"use --method {', '.join(takers[:-1])} or {takers[-1]}" if len(takers) > 1 else
                   f"use --method {takers[0]}" if takers else "choose another teacher")
            raise TeacherRunError(f"{self.name} prunes only {' and '.join(self.generators)} teachers, {run.dir} "
                                  f"holds a {cls}; {fix}")

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        raise NotImplementedError

