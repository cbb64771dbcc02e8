"""Typed presets loaded from YAML; an unknown key is an error that names the key."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration.errors import UsageError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GENERATOR_ARCHS = ("resnet", "inception")


@dataclass
class GeneratorConfig:
    """``arch``: "resnet" (pix2pix/CycleGAN ResNet) or "inception" (CAT's inception-residual
    generator, docs/methods.md, "Model zoo": same stem/down/up, IncResBlocks with prunable branches)."""
    ngf: int = 16
    n_blocks: int = 6
    norm: str = "instance"
    arch: str = "resnet"

    def __post_init__(self):
        if self.arch not in GENERATOR_ARCHS:
            raise UsageError(f"generator.arch {self.arch!r} is unknown; choose one of {', '.join(GENERATOR_ARCHS)}")


@dataclass
class DiscriminatorConfig:
    ndf: int = 16
    n_layers: int = 3
    norm: str = "instance"


@dataclass
class MarlPreset:
    """Defaults of ``ganprune prune --method marl`` at this preset (each has a CLI flag)."""
    iterations: int = 5
    episodes_per_iteration: int = 8
    backend_steps: int = 4       # fine-tune steps per candidate inside the backend
    finetune_steps: int = 200    # fine-tune steps of the best pair after the search
    eval_items: int = 8          # held-out items a candidate is scored on


@dataclass
class GanCompressionPreset:
    """Defaults of ``ganprune prune --method gan-compression`` at this preset (search cost, not fine-tune)."""
    supernet_steps: int = 200    # once-for-all supernet training steps (distillation from the teacher)
    population: int = 16         # evolutionary search population
    generations: int = 8


@dataclass
class Preset:
    resolution: int = 64
    dataset: str = "edges2photos"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    marl: MarlPreset = field(default_factory=MarlPreset)
    gan_compression: GanCompressionPreset = field(default_factory=GanCompressionPreset)


def build_dataclass(cls, data, where: str):
    """``cls(**data)`` with nested dataclass fields built the same way (presets and the typed requests
    of ``orchestration.requests``); anything else than a mapping, or an unknown key, is a one-line
    ``UsageError`` naming ``where``, the key and the known keys."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping of {cls.__name__} settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(f"{where}: unknown config key {unknown[0]!r}; known keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        factory = fields[name].default_factory
        default = factory() if factory is not dataclasses.MISSING else None
        nested = dataclasses.is_dataclass(default) and not isinstance(default, type)
        kwargs[name] = build_dataclass(type(default), value, f"{where}.{name}") if nested else value
    return cls(**kwargs)


def presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> Preset:
    """A preset name (tiny, small, paper) or a YAML path → a checked ``Preset``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown preset or config {name_or_path!r}; presets: {', '.join(presets())}")
    return build_dataclass(Preset, yaml.safe_load(path.read_text()) or {}, path.name)
