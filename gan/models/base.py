"""Base class of every zoo model: rebuildable from JSON-able constructor arguments.

Physical pruning rebuilds a model of the same class with smaller ``widths`` and copies the kept
slices, so every model must take its per-group widths as a constructor argument.
"""
from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from gan.models.groups import ChannelGroup


class ZooModel(nn.Module):
    """A model that knows its constructor arguments and its prunable channel groups."""

    #: input kind, used to build example inputs: "image" or "latent" (class-conditional G)
    input_kind = "image"

    def _record_arguments(self, frame_locals: dict) -> None:
        """Store the constructor's arguments (call first thing in ``__init__`` with ``locals()``)."""
        params = inspect.signature(type(self).__init__).parameters
        self._arch_kwargs = {k: copy.deepcopy(frame_locals[k]) for k in params if k != "self"}

    def architecture(self) -> dict:
        """JSON-able description from which ``gan.models.build`` rebuilds this exact module."""
        kwargs = copy.deepcopy(self._arch_kwargs)
        kwargs["widths"] = self.widths()
        return {"class": type(self).__name__, "kwargs": kwargs}

    def _set_widths(self, defaults: dict[str, int], widths: dict | None) -> dict[str, int]:
        """Defaults overridden by ``widths`` (unknown group names are an error); stored and returned."""
        unknown = sorted(set(widths or {}) - set(defaults))
        if unknown:
            raise ValueError(f"unknown width keys {unknown} for {type(self).__name__}")
        self._widths = {**defaults, **{k: int(v) for k, v in (widths or {}).items()}}
        return self._widths

    def channel_groups(self) -> list[ChannelGroup]:
        raise NotImplementedError

    def widths(self) -> dict[str, int]:
        return dict(self._widths)

    def example_inputs(self, batch: int = 1, size: int = 64) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shape for profiling, export and tests."""
        return (torch.randn(batch, self.in_channels, size, size),)
