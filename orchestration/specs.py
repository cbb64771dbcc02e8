"""Reading pruning-spec and run JSON files: one parser for every command that takes ``--spec``.

Accepted spec forms: ``{group: [kept]}``, ``{"spec": {group: [kept]}, "keep_ratio": r}`` (what the
demo writes) and ``{"generator": {...}, "discriminator": {...}}``.
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestration.errors import UsageError


def load_json(path, what: str) -> dict:
    """A JSON file, or a one-line UsageError naming ``what`` was expected there."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no {what} at {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {what} {path}: {e}") from None


def generator_spec(raw) -> tuple[dict, dict | None]:
    """(generator spec, discriminator spec or None) from any accepted spec form."""
    if not isinstance(raw, dict):
        raise UsageError("a spec must be a JSON object")
    if "generator" in raw:
        gspec, dspec = raw["generator"], raw.get("discriminator")
    else:
        gspec, dspec = raw.get("spec", raw), None
    if not isinstance(gspec, dict) or not all(isinstance(v, list) for v in gspec.values()):
        raise UsageError("the generator spec must map group name → list of kept channel indices")
    return gspec, dspec
