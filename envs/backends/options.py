"""The typed ``--backend-option K=V`` settings of each search backend (docs/methods.md, "Search backends").

``prune --backend local|supernet`` picks the backend the environment scores candidates with; each
backend's options are one frozen dataclass here.  ``parse_backend_options`` types the given values by
the dataclass's field types (a command line gives strings, a request file JSON values) and refuses
unknown keys and bad values in one line that names the known keys, before any work.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from gan.train.distill import DEFAULT_OBJECTIVE, OBJECTIVES

#: the search backends ``prune --backend`` offers (``synthetic`` is a test instrument, not offered)
SEARCH_BACKENDS = ("local", "supernet")


class BackendOptionError(ValueError):
    """An unknown ``--backend`` or ``--backend-option`` key, or a value of the wrong type."""


@dataclass(frozen=True)
class LocalOptions:
    """``--backend local``: weight inheritance + ``--backend-steps`` K fine-tune steps per candidate on
    seeded train items, scored on other seeded train items (the search items)."""

    objective: str = DEFAULT_OBJECTIVE  # the K steps' objective: l1 | density | gka (CAT) | distill (GAN Compression)
    vem: bool = False              # add VEM's term to the K steps (docs/methods.md, "VEM")
    train_items: int = 16          # train-split items the K steps fine-tune on
    batch_size: int = 4            # of the K steps
    eval_items: int | None = None  # search items scored on (None: the preset's marl.eval_items)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise BackendOptionError(f"--backend-option objective={self.objective!r}: choose one of "
                                     f"{', '.join(OBJECTIVES)}")
        _positive(self, "train_items", "batch_size", "eval_items")

    def backend_config(self) -> dict:
        """The ``LocalConfig`` fields these options change (the defaults' problem config stays as it was,
        so earlier runs' searches and checkpoints still match)."""
        default = LocalOptions()
        return {k: getattr(self, k) for k in ("objective", "vem", "train_items", "batch_size")
                if getattr(self, k) != getattr(default, k)}


@dataclass(frozen=True)
class SupernetOptions:
    """``--backend supernet``: a once-for-all supernet (GAN Compression's, ``gan.train.supernet``) trained
    once per teacher and settings (or reused from the cache); a candidate's generator is its first-k
    slice, scored by a forward pass on the search items, no training per candidate."""

    train_steps: int | None = None  # supernet training steps (None: the preset's gan_compression.supernet_steps)
    fractions: tuple | None = None  # width choices per position, fractions of its width (None: 1, 7/8, …, 1/8)
    batch_size: int = 4             # of the supernet training
    lr: float = 2e-4
    lambda_distill: float = 1.0     # GAN Compression's feature-distillation weight
    eval_items: int | None = None   # search items scored on (None: the preset's marl.eval_items)
    cache: bool = True              # reuse/keep the supernet in $GANPRUNE_CACHE/supernets (False: train into --out)
    trainer: str = "deepspeed"      # the supernet training's engine: deepspeed | torch (gan.train.engine)
    density: bool = True            # r_G with the density term, as local (False: −λ_rec·L1 to the teacher only)

    def __post_init__(self):
        _positive(self, "batch_size", "eval_items")
        if self.trainer not in ("deepspeed", "torch"):
            raise BackendOptionError(f"--backend-option trainer={self.trainer!r}: choose deepspeed or torch")
        if self.train_steps is not None and self.train_steps < 0:
            raise BackendOptionError(f"--backend-option train_steps={self.train_steps}: give 0 or more steps")
        if self.lr <= 0:
            raise BackendOptionError(f"--backend-option lr={self.lr}: give a learning rate > 0")
        if self.fractions is not None and (not self.fractions or not all(0 < f <= 1 for f in self.fractions)):
            raise BackendOptionError(f"--backend-option fractions={','.join(map(str, self.fractions))}: give "
                                     "fractions in (0, 1], e.g. fractions=1,0.75,0.5,0.25")


#: backend name → its options dataclass
BACKEND_OPTIONS = {"local": LocalOptions, "supernet": SupernetOptions}


def _positive(opts, *names) -> None:
    for n in names:
        v = getattr(opts, n)
        if v is not None and v < 1:
            raise BackendOptionError(f"--backend-option {n}={v}: give 1 or more")


def _typed(value, kind, key: str, backend: str):
    """``value`` (a string from the command line, or a JSON value) as the field type ``kind``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args and typing.get_origin(kind) is not tuple:  # Optional[X] / X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        kind = args[0]
    bad = BackendOptionError(f"--backend-option {key}={value!r} for --backend {backend}: expected "
                             f"{getattr(kind, '__name__', kind)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if value in (0, 1):
            return bool(value)
        raise bad
    if kind is tuple or typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        try:
            return tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise bad from None
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise bad
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad from None
    if kind is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise bad
    return str(value)


def parse_backend_options(backend: str, options: dict | None):
    """``options`` (key → value) as ``backend``'s options dataclass, each value typed by its field."""
    if backend not in BACKEND_OPTIONS:
        raise BackendOptionError(f"unknown --backend {backend!r}; choose one of {', '.join(SEARCH_BACKENDS)}")
    cls = BACKEND_OPTIONS[backend]
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise BackendOptionError(f"unknown --backend-option {unknown[0]!r} for --backend {backend}; known: "
                                 f"{', '.join(known)}")
    return cls(**{k: _typed(v, hints[k], k, backend) for k, v in (options or {}).items()})


def options_dict(options) -> dict:
    """The options as plain JSON values (what a request file and a benchmark row record)."""
    d = dataclasses.asdict(options)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
