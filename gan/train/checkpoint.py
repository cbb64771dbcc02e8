"""Pickle-free training checkpoints: ``out_dir/checkpoints/step_N/`` written atomically.

Why: a checkpoint must never execute code on load, so weights and optimizer tensors go to safetensors
and every non-tensor part (optimizer hyper-parameters, step, history) to JSON.  A nested state dict is
flattened to ``{path: tensor}`` + a JSON skeleton whose leaves point at those paths; int dict keys and
tuples are tagged so the rebuilt dict equals the original exactly.  The directory is written under a
temporary name and renamed, so a crash never leaves a half checkpoint that looks complete.

Optimizer states are per rank (``optim_{G,D}.rank{r}``): replicated at ZeRO stage 0 (any world size
can resume from rank 0's), this rank's partition at ZeRO 1-3, taken from the ZeRO optimizer's own
``state_dict()`` (fp32 master partition, Adam moments, paddings) with its few Python objects (the loss
scaler, an enum) reduced to JSON values, and given back to its ``load_state_dict`` on resume.
"""
from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
import uuid
from pathlib import Path

import torch

from gan.export import PICKLE_SUFFIXES, _looks_pickled

CKPT_DIR, PREFIX = "checkpoints", "step_"
STATE = "trainer_state.json"


class CheckpointError(ValueError):
    """A missing, corrupt, pickled or unsupported checkpoint: one line naming the file."""


# ----------------------------------------------------------------------- nested state ↔ files

def flatten(obj, tensors: dict | None = None, path: str = "s"):
    """(JSON skeleton, {key: tensor}) of a nested dict/list/tuple state; raises on other objects."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}, tensors
    if isinstance(obj, dict):
        items = [(k, flatten(v, tensors, f"{path}.{k}")[0]) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items), tensors
        if not all(isinstance(k, (str, int)) for k, _ in items):
            raise CheckpointError(f"cannot store key types {sorted({type(k).__name__ for k in obj})} at {path}")
        return {"__items__": [[k, v] for k, v in items]}, tensors
    if isinstance(obj, (list, tuple)):
        seq = [flatten(v, tensors, f"{path}.{i}")[0] for i, v in enumerate(obj)]
        return ({"__tuple__": seq} if isinstance(obj, tuple) else seq), tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise CheckpointError(f"cannot store {type(obj).__name__} at {path} without pickle")


def unflatten(skel, tensors: dict):
    """Inverse of ``flatten``."""
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            return tensors[skel["__tensor__"]]
        if "__items__" in skel:
            return {k: unflatten(v, tensors) for k, v in skel["__items__"]}
        if "__tuple__" in skel:
            return tuple(unflatten(v, tensors) for v in skel["__tuple__"])
        return {k: unflatten(v, tensors) for k, v in skel.items()}
    if isinstance(skel, list):
        return [unflatten(v, tensors) for v in skel]
    return skel


def save_tree(obj, base: Path) -> None:
    """``base.safetensors`` + ``base.json`` for any nested state (an optimizer's ``state_dict()``)."""
    from safetensors.torch import save_file

    skel, tensors = flatten(obj)
    save_file(tensors, f"{base}.safetensors")
    Path(f"{base}.json").write_text(json.dumps(skel))


def load_tree(base: Path):
    skel = read_json(Path(f"{base}.json"))
    return unflatten(skel, read_safetensors(Path(f"{base}.safetensors")))


def read_json(f: Path):
    """A checkpoint's JSON part; a truncated or garbled file is a ``CheckpointError``, not a traceback."""
    try:
        return json.loads(_checked(f).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint file {f}: {e}; {_FIX.format(d=f.parent)}") from None


#: what to do about a damaged checkpoint (runs keep the newest two: the one before is usually fine)
_FIX = "delete {d} to resume from an earlier checkpoint, or start again with --overwrite"


def _checked(f: Path) -> Path:
    if not f.is_file():
        raise CheckpointError(f"{f.parent}: missing {f.name}")
    if f.suffix.lower() in PICKLE_SUFFIXES or _looks_pickled(f):
        raise CheckpointError(f"refusing pickled file {f}: checkpoints are safetensors + JSON only; "
                              + _FIX.format(d=f.parent))
    return f


def read_safetensors(f: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(_checked(f)))
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError: all mean a bad file
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"corrupt checkpoint file {f}: {msg}; {_FIX.format(d=f.parent)}") from None


# ----------------------------------------------------------------------- checkpoint directories

def step_dir(out_dir, step: int) -> Path:
    return Path(out_dir) / CKPT_DIR / f"{PREFIX}{int(step)}"


def complete(out_dir) -> list[Path]:
    """The complete ``step_N`` folders under ``out_dir/checkpoints``, oldest first (temp dirs ignored)."""
    root = Path(out_dir) / CKPT_DIR
    steps = [p for p in root.glob(f"{PREFIX}*") if p.name[len(PREFIX):].isdigit() and (p / STATE).is_file()]
    return sorted(steps, key=lambda p: int(p.name[len(PREFIX):]))


def latest(out_dir) -> Path | None:
    """The newest complete ``step_N`` under ``out_dir/checkpoints``."""
    found = complete(out_dir)
    return found[-1] if found else None


def remove_old(out_dir, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints of ``out_dir`` (after a save)."""
    for old in complete(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resolve(path) -> Path:
    """A checkpoint directory from itself, a run's out_dir (→ latest) or its checkpoints/ folder."""
    p = Path(path)
    if p.is_file():
        _checked(p)
        p = p.parent
    if (p / STATE).is_file():
        return p
    found = latest(p.parent if p.name == CKPT_DIR else p) if p.is_dir() else None
    if found:
        return found
    pickled = sorted(q for q in p.glob("*") if q.suffix.lower() in PICKLE_SUFFIXES) if p.is_dir() else []
    if pickled:
        raise CheckpointError(f"refusing pickled file {pickled[0]}: checkpoints are safetensors + JSON only")
    raise CheckpointError(f"no checkpoint at {p} (expected {STATE} or {CKPT_DIR}/{PREFIX}N/)")


def write_atomic(final: Path, write, rank: int = 0, world_size: int = 1) -> Path:
    """Every rank calls ``write(tmp_dir)`` (rank 0 makes the dir), then rank 0 renames it to ``final``."""
    import torch.distributed as dist

    sync = world_size > 1 and dist.is_initialized()
    tmp = final.parent / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if sync:
        dist.barrier()
    write(tmp)
    if sync:
        dist.barrier()
    if rank == 0:
        if final.exists():  # re-saving the same step (e.g. after a resume): swap, never half-delete
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:6]}"
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)
    if sync:
        dist.barrier()
    return final


# ----------------------------------------------------------------------- engine states (ZeRO 0-3)

_SCALARS = (bool, int, float, str, type(None))
#: parts of a ZeRO optimizer's state_dict that DeepSpeed rebuilds from the model at init (name →
#: fragment_address objects); its own loader never reads them back
_DERIVED = ("param_slice_mappings",)


@contextlib.contextmanager
def _zero3_event(eng):
    """ZeRO-3 partitions every parameter around a checkpoint, as ``DeepSpeedEngine.save_checkpoint`` does."""
    opt = eng.optimizer
    if eng.zero_stage == 3:
        opt.checkpoint_event_prologue()
    try:
        yield
    finally:
        if eng.zero_stage == 3:
            opt.checkpoint_event_epilogue()


def _gathered(eng, modifier_rank=None):
    """ZeRO-3: every rank holds the full parameters inside (``modifier_rank``'s changes are kept)."""
    if eng.zero_stage != 3:
        return contextlib.nullcontext()
    from deepspeed.runtime.zero import GatheredParameters

    return GatheredParameters(list(eng.module.parameters()), modifier_rank=modifier_rank)


def module_state(eng, rank: int = 0) -> dict[str, torch.Tensor] | None:
    """Full CPU weights of ``eng.module`` on rank 0, None on the others (every rank must call: ZeRO-3
    gathers its partitioned parameters)."""
    with _gathered(eng):
        if rank != 0:
            return None
        return {k: v.detach().cpu().contiguous().clone() for k, v in eng.module.state_dict().items()}


def load_module_state(eng, state: dict[str, torch.Tensor]) -> None:
    with _gathered(eng, modifier_rank=0):
        eng.module.load_state_dict(state)


def optimizer_state(eng) -> dict:
    """This rank's optimizer state as a tree ``flatten`` can store.

    Stage 0: the optimizer's ``state_dict()``.  ZeRO 1-3: the ZeRO optimizer's own ``state_dict()`` —
    this rank's partition of the fp32 master weights and of Adam's moments, paddings, version — with
    the loss-scaler object reduced to its scalar fields, enums to their values and the derived
    ``param_slice_mappings`` dropped.
    """
    opt = eng.optimizer
    if not eng.zero_stage:
        return opt.state_dict()
    with _zero3_event(eng):
        sd = opt.state_dict()
    out = {}
    for k, v in sd.items():
        if k in _DERIVED:
            continue
        if k == "loss_scaler":
            v = {a: x for a, x in vars(v).items() if isinstance(x, _SCALARS)}
        elif isinstance(v, enum.Enum):
            v = v.value
        out[k] = v
    return out


def load_optimizer_state(eng, read, rank: int = 0, world_size: int = 1) -> None:
    """Inverse of ``optimizer_state``; ``read(r)`` gives rank r's tree (only this rank's is read unless
    DeepSpeed's elastic ZeRO checkpoints need all).  ZeRO restores the saved fp32 master partition
    (``load_from_fp32_weights``), so bf16/fp16 runs resume without rounding."""
    opt = eng.optimizer
    if not eng.zero_stage:
        opt.load_state_dict(read(0))  # replicated: rank 0's tree serves any world size
        return
    ranks = range(world_size) if getattr(opt, "elastic_checkpoint", False) else [rank]
    trees = {r: read(r) for r in ranks}
    for sd in trees.values():
        scaler = sd.get("loss_scaler")
        if isinstance(scaler, dict):
            for a, x in scaler.items():
                setattr(opt.loss_scaler, a, x)
            sd["loss_scaler"] = opt.loss_scaler
    with _zero3_event(eng):
        opt.load_state_dict([trees.get(r) for r in range(world_size)], load_optimizer_states=True,
                            load_from_fp32_weights=True)
