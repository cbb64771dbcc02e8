"""Reading a state dict that someone else saved (``ganprune import-teacher``), without running it.

Why a module of its own: a released ``.pth`` is a pickle, and unpickling is running code.  A
``torch.save`` file is read with ``torch.load(weights_only=True)`` (torch's restricted unpickler:
tensors, containers and plain values only — a file that names any other callable is refused before
it is called); a safetensors file is read as safetensors.  Every failure is a ``WeightsFileError``:
one line naming the file, the problem and the fix (bad input, exit 2 on the CLI).
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

SAFETENSORS_SUFFIX = ".safetensors"


class WeightsFileError(ValueError):
    """A weights file that cannot be read safely: missing, truncated, not a state dict, or a pickle
    that would run code."""


def _is_safetensors(p: Path) -> bool:
    """The suffix, or the format's header: an 8-byte little-endian length, then a JSON object."""
    if p.suffix == SAFETENSORS_SUFFIX:
        return True
    with open(p, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(p: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsFileError(f"corrupt or truncated safetensors file {p}: {e}; download or save it again") from None


def _corrupt(p: Path, e: BaseException) -> WeightsFileError:
    """A file the reader gave up on, with the first sentence of its reason."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0].rstrip(".")
    return WeightsFileError(f"corrupt or truncated weights file {p} ({first}); download or save it again")


def _read_torch(p: Path) -> object:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" not in text or "GLOBAL" not in text:
            raise _corrupt(p, e) from None
        m = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"global '?([\w.]+)", text)
        what = f" (it names {m.group(1)})" if m else ""
        raise WeightsFileError(f"refusing {p}: its pickle would run code{what}, and ganprune never runs a "
                               "pickle; save only the state dict (torch.save(net.state_dict(), …)) or "
                               "convert it to safetensors") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        raise _corrupt(p, e) from None  # torch's readers fail in these ways on a cut file


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict in ``path`` (a ``torch.save`` file or safetensors).

    A ``{"state_dict": {...}}`` wrapper is unwrapped and a ``module.`` prefix (``nn.DataParallel``)
    dropped; anything else that is not a flat dict of tensors is refused."""
    p = Path(path)
    if not p.is_file():
        raise WeightsFileError(f"no such weights file: {p}; pass the path of a .pth or .safetensors file")
    obj = _read_safetensors(p) if _is_safetensors(p) else _read_torch(p)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise WeightsFileError(f"{p} holds {type(obj).__name__ if obj else 'nothing'}, not a state dict; "
                               "save the network's state_dict()")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFileError(f"{p}: entry {bad[0]!r} is not a tensor; save the network's state_dict()")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)
