"""The registry of pruning methods behind ``ganprune prune --method NAME`` (``base.PruningMethod``).

Adding a method is one new module here with a ``Method`` subclass, and one line in ``REGISTRY``.
"""
from __future__ import annotations

from agents.methods.base import (Found, Method, MethodOptionError, Placement, PruningMethod, SearchContext,
                                 SearchRequest, SearchSettings)
from agents.methods.cat import Cat
from agents.methods.gan_compression import GanCompression
from agents.methods.marl import Marl, MarlGreedy
from agents.methods.ppcd import Ppcd
from agents.methods.random_search import EvolutionSearch, RandomSearch
from agents.methods.simple import L1, Fastest, Uniform

#: the method `ganprune prune` runs when none is named
DEFAULT = "marl"

REGISTRY: dict[str, PruningMethod] = {m.name: m for m in (
    Marl(),
    MarlGreedy(),
    RandomSearch(),
    EvolutionSearch(),
    Uniform(),
    L1(),
    Cat(),
    GanCompression(),
    Ppcd(),
    Fastest(),
)}


class UnknownMethodError(ValueError):
    """A method name the registry does not have."""


def get(name: str) -> PruningMethod:
    """The registered method ``name`` (one line naming the known ones otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"unknown --method {name!r}; available: {', '.join(REGISTRY)}") from None


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


__all__ = ["DEFAULT", "REGISTRY", "Found", "Method", "MethodOptionError", "Placement", "PruningMethod", "SearchContext",
           "SearchRequest", "SearchSettings", "UnknownMethodError", "get", "names"]
