"""Reading pruning-spec and run JSON files: one parser for every command that takes ``--spec``.

Accepted spec forms: ``{group: [kept]}``, ``{"spec": {group: [kept]}, "keep_ratio": r}`` (what the
demo writes) and ``{"generator": {...}, "discriminator": {...}}``; the parsing itself is
``gan.pruning.pair`` (with ``split_spec``, the (G, D) split).
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
    """(generator spec, discriminator spec or None) from any accepted spec form
    (``gan.pruning.pair.generator_spec``; a malformed spec is a one-line UsageError)."""
    from gan.pruning.pair import SpecError
    from gan.pruning.pair import generator_spec as parse

    try:
        return parse(raw)
    except SpecError as e:
        raise UsageError(str(e)) from None
