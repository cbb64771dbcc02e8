"""Name → class registry, so a model can be rebuilt from ``architecture.json`` without pickle."""
from __future__ import annotations

from gan.models.base import ZooModel

MODELS: dict[str, type[ZooModel]] = {}


def register(cls: type[ZooModel]) -> type[ZooModel]:
    MODELS[cls.__name__] = cls
    return cls


def build(arch: dict) -> ZooModel:
    """Rebuild a model from ``{"class": name, "kwargs": {...}}``."""
    name = arch.get("class")
    if name not in MODELS:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**arch.get("kwargs", {}))


#: tiny instances of every zoo model, for tests, the demo and export round-trips
TINY_EXAMPLES: dict[str, object] = {}


def register_tiny(name: str, factory) -> None:
    """Register a zero-argument factory of a small instance (used by the zoo-wide tests)."""
    TINY_EXAMPLES[name] = factory
