"""Pruning specs for a (G, D) pair: parse a spec file's content and split it into a G and a D spec.

Why here: a pruned pair always needs both specs, and deciding D's when only G's is given (the same
overall keep ratio, by saliency) is pruning logic, not command-line logic; every command that prunes
a pair (``finetune``, ``prune``) uses this one definition.

Accepted spec forms: ``{group: [kept]}``, ``{"spec": {group: [kept]}, "keep_ratio": r}`` (what the
demo writes) and ``{"generator": {...}, "discriminator": {...}}``. A malformed spec raises
``SpecError`` (a ValueError; the CLI reports it as bad input, exit 2).
"""
from __future__ import annotations
from gan.pruning.saliency import spec_from_ratios


class SpecError(ValueError):
    """A spec that is not one of the accepted forms or names groups the model does not have."""


def generator_spec(raw) -> tuple[dict, dict | None]:
    """(generator spec, discriminator spec or None) from any accepted spec form."""
    if not isinstance(raw, dict):
        raise SpecError("a spec must be a JSON object")
    if "generator" in raw:
        gspec, dspec = raw["generator"], raw.get("discriminator")
    else:
        gspec, dspec = raw.get("spec", raw), None
    if not isinstance(gspec, dict) or not all(isinstance(v, list) for v in gspec.values()):
        raise SpecError("the generator spec must map group name → list of kept channel indices")
    return gspec, dspec


def split_spec(raw: dict, g, disc, criterion: str = "l1") -> tuple[dict, dict, dict]:
    """(G spec, D spec, how D's spec was made) from any of the accepted spec forms.

    Without a D spec, D is pruned to the same overall keep ratio as G (the spec's ``keep_ratio`` when
    present, else G's kept/total channels over all groups), uniform over D's groups by ``criterion``
    saliency (docs/methods.md, "MARL search": the D budget defaults to the generator's)."""
    gspec, dspec = generator_spec(raw)
    if dspec is not None:
        return gspec, dspec, {"discriminator_spec_source": "given"}
    sizes = {grp.name: grp.size for grp in g.channel_groups()}
    unknown = set(gspec) - set(sizes)
    if unknown:
        raise SpecError(f"spec names unknown generator groups {sorted(unknown)}; "
                        f"{type(g).__name__} has {', '.join(sizes)}")
    ratio = raw.get("keep_ratio") if "spec" in raw else None
    if ratio is None:
        ratio = sum(len(gspec.get(n, range(s))) for n, s in sizes.items()) / sum(sizes.values())
    dspec = spec_from_ratios(disc, {grp.name: float(ratio) for grp in disc.channel_groups()}, criterion)
    return gspec, dspec, {"discriminator_spec_source": "uniform", "discriminator_keep_ratio": float(ratio)}
